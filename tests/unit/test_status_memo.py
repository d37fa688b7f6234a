"""report_key (controller/status.py): what a memo of job reports may be keyed by. Where the
report left the status unchanged, the same key gives an unchanged status, the same phase and
the same Events at any other time stamp; any input that changes changes the key."""

from __future__ import annotations

import random
from dataclasses import fields, replace
from typing import Any

import pytest

from gpualloc.controller.pods import build_pod
from gpualloc.controller.status import Outcome, job_report, report_key, status_changed

pytestmark = pytest.mark.unit
Obj = dict[str, Any]


def _job(status: Obj | None = None) -> Obj:
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "LLMTrainingJob",
        "metadata": {
            "name": "llama",
            "namespace": "research",
            "uid": "u-1",
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": {"workers": 2, "gpusPerWorker": 8, "template": {"spec": {"containers": []}}},
        "status": status or {},
    }


def _pods(rng: random.Random) -> list[Obj]:
    pods = []
    for replica in range(rng.randint(0, 2)):
        pod = build_pod(_job(), replica, 8, 2)
        pod["metadata"]["uid"] = f"p{replica}"
        pod["metadata"]["resourceVersion"] = str(rng.randint(1, 3))
        if rng.random() < 0.6:
            pod["spec"]["schedulingGates"] = []
            pod["spec"]["nodeName"] = rng.choice(["n1", "n2"])
        pod["status"] = {"phase": rng.choice(["Pending", "Running", "Running", "Failed"])}
        pods.append(pod)
    return pods


OUTCOMES = [
    Outcome(),
    Outcome(unscheduled="needs 8 GPUs on one node"),
    Outcome(unscheduled="preempted; waits to be placed again"),
    Outcome(placed={0: ("n1", 8), 1: ("n2", 8)}),
    Outcome(evicted="preempted for research/urgent"),
    Outcome(lost=True),
    Outcome(restarts=1),
    Outcome(write_error="409"),
]


def test_an_unchanged_status_stays_unchanged_at_any_stamp() -> None:
    rng = random.Random(5)
    unchanged = 0
    for _ in range(3000):
        # the job's status as an earlier round wrote it
        earlier = job_report(_job(), _pods(rng), rng.choice(OUTCOMES), 2, "2026-01-01T00:00:00Z")
        job, pods, outcome = _job(earlier.status), _pods(rng), rng.choice(OUTCOMES)
        first = job_report(job, pods, outcome, 2, "2026-01-01T00:01:00Z")
        if status_changed(job["status"], first.status):
            continue
        unchanged += 1
        later = job_report(job, pods, outcome, 2, "2026-01-02T00:00:00Z")
        assert not status_changed(job["status"], later.status)
        assert later.status["phase"] == first.status["phase"] and later.events == first.events
    assert unchanged > 200


def test_every_input_is_in_the_key() -> None:
    rng = random.Random(6)
    pods = _pods(random.Random(1)) or _pods(rng)
    outcome = Outcome(placed={0: ("n1", 8)}, unscheduled="x")
    key = report_key(_job(), pods, outcome, 2)
    assert key is not None and key == report_key(_job(), pods, Outcome(**vars(outcome)), 2)
    changed = {
        "placed": {0: ("n2", 8)},
        "unscheduled": "y",
        "evicted": "e",
        "span": "s",
        "lost": True,
        "invalid": "i",
        "conflict": "c",
        "restarts": 2,
        "gang_failed": True,
        "finished": True,
        "write_error": "w",
        "events": (("Normal", "R", "m"),),
    }
    assert set(changed) | {"moved"} == {f.name for f in fields(Outcome)}
    for name, value in changed.items():
        assert report_key(_job(), pods, replace(outcome, **{name: value}), 2) != key, name
    assert report_key(_job(), pods, outcome, 3) != key
    newer = _job()
    newer["metadata"]["resourceVersion"] = "8"
    assert report_key(newer, pods, outcome, 2) != key


def test_a_changed_pod_changes_the_key() -> None:
    pod = build_pod(_job(), 0, 8, 2)
    pod["metadata"].update(uid="p0", resourceVersion="1")
    key = report_key(_job(), [pod], Outcome(), 2)
    pod["metadata"]["resourceVersion"] = "2"
    assert key is not None and report_key(_job(), [pod], Outcome(), 2) != key


def test_no_key_without_versions_or_for_a_move() -> None:
    bare = _job()
    del bare["metadata"]["resourceVersion"]
    assert report_key(bare, [], Outcome(), 2) is None
    assert report_key(_job(), [], Outcome(moved=True, evicted="moved"), 2) is None
