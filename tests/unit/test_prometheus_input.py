"""The pure parts of the Prometheus input: response parsing, DCGM series -> unhealthy GPUs per
node, demand -> replicas, the policy condition."""

from __future__ import annotations

import json

import pytest

from gpualloc.controller.prometheus_input import (
    autoscaled,
    condition,
    desired_replicas,
    unhealthy_by_node,
)
from gpualloc.metrics.prometheus import PrometheusError, Sample, parse_response


def _dcgm(host: str, gpu: int, value: float = 79) -> Sample:
    return Sample({"Hostname": host, "gpu": str(gpu), "UUID": f"GPU-{host}-{gpu}"}, value)


def test_unhealthy_gpus_are_counted_per_node_once_per_gpu() -> None:
    samples = [_dcgm("a", 0), _dcgm("a", 0, 48), _dcgm("a", 5), _dcgm("b", 1)]
    assert unhealthy_by_node(samples, ["a", "b", "c"]) == {"a": 2, "b": 1}


def test_zero_series_unknown_hosts_and_node_label_fallback() -> None:
    samples = [
        _dcgm("a", 0, 0),  # a `bool` query: 0 means healthy
        _dcgm("not-a-node", 0),
        Sample({"node": "b", "gpu": "2"}, 1),
    ]
    assert unhealthy_by_node(samples, ["a", "b"]) == {"b": 1}


@pytest.mark.parametrize(
    ("demand", "target", "lo", "hi", "want"),
    [
        (50, 20, 1, 4, 3),  # ceil(2.5)
        (40, 20, 1, 4, 2),  # exact: no extra replica
        (40.0000000001, 20, 1, 4, 2),  # float noise from rate()
        (500, 20, 1, 4, 4),  # clamped to max
        (0, 20, 1, 4, 1),  # clamped to min
        (0, 20, 0, None, 0),  # scale to zero allowed by minReplicas 0
        (1000, 20, 1, None, 50),  # no max
    ],
)
def test_desired_replicas(demand: float, target: float, lo: int, hi: int | None, want: int) -> None:
    assert desired_replicas(demand, target, lo, hi) == want


def test_autoscaled_jobs_only() -> None:
    jobs = [
        {"kind": "LLMTrainingJob", "metadata": {"name": "t", "namespace": "n"}, "spec": {}},
        {"kind": "LLMInferenceJob", "metadata": {"name": "plain", "namespace": "n"}, "spec": {}},
        {
            "kind": "LLMInferenceJob",
            "metadata": {"name": "chat", "namespace": "n"},
            "spec": {
                "minReplicas": 2,
                "maxReplicas": 6,
                "autoscaling": {"query": "sum(x)", "targetPerReplica": 10},
            },
        },
    ]
    assert autoscaled(jobs) == [("n/chat", "sum(x)", 10.0, 2, 6)]


def test_parse_vector_scalar_and_errors() -> None:
    vector = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"Hostname": "a"}, "value": [1, "3"]},
                {"metric": {"Hostname": "b"}, "value": [1, "NaN"]},
            ],
        },
    }
    assert parse_response(json.dumps(vector).encode()) == [Sample({"Hostname": "a"}, 3.0)]
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1, "2.5"]}}
    assert parse_response(json.dumps(scalar).encode()) == [Sample({}, 2.5)]
    with pytest.raises(PrometheusError) as err:
        parse_response(b"<html>")
    assert err.value.reason == "BadResponse"
    with pytest.raises(PrometheusError) as err:
        parse_response(json.dumps({"status": "error", "error": "parse error"}).encode())
    assert err.value.reason == "QueryFailed"


def test_condition_keeps_other_types_and_transition_time() -> None:
    other = {"type": "Other", "status": "True"}
    first = condition([other], False, "Unreachable", "down", 3, "2025-01-01T00:00:00Z")
    assert first[0] == other
    assert first[1]["status"] == "False" and first[1]["observedGeneration"] == 3
    again = condition(first, False, "Unreachable", "still down", 3, "2025-01-01T00:05:00Z")
    assert again[1]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    back = condition(again, True, "QueriesAnswered", "ok", 3, "2025-01-01T00:09:00Z")
    assert back[1]["lastTransitionTime"] == "2025-01-01T00:09:00Z"
    assert condition([], None, "NotConfigured", "", 1, "t")[0]["status"] == "Unknown"
