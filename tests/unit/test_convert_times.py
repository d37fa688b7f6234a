"""Times read from Kubernetes objects: one RFC 3339 reader, and what a bad value costs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from gpualloc.k8s.convert import created_at, job_from_k8s, pod_from_k8s, rfc3339_seconds

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "stamp", ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00.000Z"]
)
def test_rfc3339_is_read(stamp: str) -> None:
    assert rfc3339_seconds(stamp) == JAN_1


@pytest.mark.parametrize("bad", [None, "", "yesterday", 5, ["2026-01-01T00:00:00Z"]])
def test_not_a_time_is_none(bad: Any) -> None:
    assert rfc3339_seconds(bad) is None


def test_a_yaml_file_reads_the_same_as_the_api() -> None:
    """`gpualloc plan` reads kubectl's YAML, where an unquoted time loads as a datetime."""
    doc = yaml.safe_load("metadata:\n  creationTimestamp: 2026-01-01T00:00:00Z\n")
    assert isinstance(doc["metadata"]["creationTimestamp"], datetime)
    assert created_at(doc) == created_at(
        {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    )
    assert created_at(doc) == JAN_1


def _pod(start: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "a"},
        "spec": {"nodeName": "n1", "containers": []},
        "status": {"phase": "Running", "startTime": start},
    }


def test_a_pod_without_a_readable_start_counts_as_unknown() -> None:
    started = pod_from_k8s(_pod("2026-01-01T00:00:00Z"))
    assert started is not None and started.started == JAN_1
    unreadable = pod_from_k8s(_pod("soon"))
    assert unreadable is not None and unreadable.started == 0.0


def _moved_job(moved: Any) -> dict[str, Any]:
    return {
        "kind": "LLMTrainingJob",
        "metadata": {"name": "sft", "namespace": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"workers": 1, "gpusPerWorker": 1, "movable": True},
        "status": {"lastMovedTime": moved},
    }


def test_a_bad_last_move_only_forgets_the_cooldown() -> None:
    assert job_from_k8s(_moved_job("2026-01-01T00:00:00Z")).moved_at == JAN_1
    assert job_from_k8s(_moved_job("not a time")).moved_at == 0.0
    assert job_from_k8s(_moved_job("not a time")).created == JAN_1
