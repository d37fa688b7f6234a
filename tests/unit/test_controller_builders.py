"""Pure builders of the controller: pods, placement patch, job status and events."""

from __future__ import annotations

from typing import Any

from gpualloc.controller.pods import build_pod, build_service, is_gated, placement_patch
from gpualloc.controller.status import Outcome, job_report, status_changed
from gpualloc.k8s.convert import committed_node, pod_from_k8s

JOB: dict[str, Any] = {
    "apiVersion": "gpualloc.io/v1alpha1",
    "kind": "LLMTrainingJob",
    "metadata": {"name": "llama", "namespace": "research", "uid": "u-1", "generation": 2},
    "spec": {
        "workers": 2,
        "gpusPerWorker": 8,
        "template": {
            "metadata": {"labels": {"team": "nlp"}},
            "spec": {
                "containers": [
                    {
                        "name": "t",
                        "image": "x",
                        "env": [{"name": "RANK", "value": "stale"}],
                        "resources": {"requests": {"cpu": "4"}},
                    }
                ]
            },
        },
    },
}


def _apply(pod: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """A tiny JSON-patch applier for the ops placement_patch emits (add/replace by path)."""
    for op in ops:
        parts = op["path"].strip("/").split("/")
        target: Any = pod
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last = parts[-1]
        if isinstance(target, list):
            target[int(last)] = op["value"]
        else:
            target[last] = op["value"]
    return pod


def test_worker_pod_is_gated_labelled_owned_and_wired_for_rendezvous() -> None:
    pod = build_pod(JOB, 1, 8, 2)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "llama-worker-1"
    assert meta["labels"] == {
        "team": "nlp",
        "gpualloc.io/job": "llama",
        "gpualloc.io/kind": "LLMTrainingJob",
        "gpualloc.io/replica": "1",
    }
    assert meta["ownerReferences"][0]["uid"] == "u-1"
    assert is_gated(pod)
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["requests"] == {"cpu": "4", "nvidia.com/gpu": "8"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "WORLD_SIZE": "2",
        "RANK": "1",
        "MASTER_PORT": "29500",
        "MASTER_ADDR": "llama-worker-0.llama.research.svc",
    }
    assert spec["hostname"] == "llama-worker-1" and spec["subdomain"] == "llama"
    # the job's own template is not modified
    assert "schedulingGates" not in JOB["spec"]["template"]["spec"]


def test_headless_service_selects_the_workers() -> None:
    svc = build_service(JOB)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"]["gpualloc.io/job"] == "llama"


def test_placement_patch_pins_and_ungates_in_one_request() -> None:
    pod = build_pod(JOB, 0, 8, 2)
    pod["spec"]["schedulingGates"].insert(0, {"name": "other.io/gate"})
    patched = _apply(pod, placement_patch(pod, "node-7"))
    assert patched["spec"]["schedulingGates"] == [{"name": "other.io/gate"}]
    # gpualloc's decision reserves the node even while another gate still holds the pod
    assert committed_node(patched) == "node-7"
    placed = pod_from_k8s(patched)
    assert placed is not None and placed.node == "node-7" and placed.job == "research/llama"


def test_placement_patch_narrows_existing_affinity_terms() -> None:
    job = {
        **JOB,
        "spec": {
            **JOB["spec"],
            "template": {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {"key": "zone", "operator": "In", "values": ["a"]}
                                        ]
                                    },
                                    {
                                        "matchExpressions": [
                                            {"key": "zone", "operator": "In", "values": ["b"]}
                                        ]
                                    },
                                ]
                            }
                        }
                    }
                }
            },
        },
    }
    pod = build_pod(job, 0, 8, 1)
    ops = placement_patch(pod, "n1")
    assert [op["path"] for op in ops[:2]] == [
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
        f"/nodeSelectorTerms/{i}/matchFields"
        for i in (0, 1)
    ]
    for op in ops[:2]:
        assert op["value"] == [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]


def _pod(replica: int, node: str | None, phase: str, gated: bool = False) -> dict[str, Any]:
    pod = build_pod(JOB, replica, 8, 2)
    if not gated:
        pod["spec"]["schedulingGates"] = []
        pod["spec"]["nodeName"] = node
    pod["status"] = {"phase": phase}
    return pod


def test_status_unschedulable_with_reason_and_event() -> None:
    report = job_report(
        JOB,
        [_pod(0, None, "Pending", True), _pod(1, None, "Pending", True)],
        Outcome(unscheduled="needs 2 workers x 8 GPUs; only 1 node has 8 free"),
        2,
        "2026-01-01T00:00:00Z",
    )
    assert report.status["phase"] == "Unschedulable"
    assert report.status["observedGeneration"] == 2
    assert report.events == [
        ("Warning", "Unschedulable", "needs 2 workers x 8 GPUs; only 1 node has 8 free")
    ]


def test_status_allocated_then_running() -> None:
    placed = Outcome(placed={0: ("n1", 8), 1: ("n2", 8)})
    gated = [_pod(0, None, "Pending", True), _pod(1, None, "Pending", True)]
    report = job_report(JOB, gated, placed, 2, "t0")
    assert report.status["phase"] == "Allocated"
    assert report.status["nodes"] == "n1,n2" and report.status["gpus"] == 16
    assert report.events[0][1] == "Allocated"
    job = {**JOB, "status": report.status}
    running = job_report(
        job, [_pod(0, "n1", "Running"), _pod(1, "n2", "Running")], Outcome(), 2, "t1"
    )
    assert running.status["phase"] == "Running"
    assert running.events == []  # no event for Allocated -> Running
    ready = next(c for c in running.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["lastTransitionTime"] == "t1"
    assert status_changed(report.status, running.status)
    assert not status_changed(running.status, {**running.status})


def test_status_preempted_then_rescheduled() -> None:
    running = {**JOB, "status": {"phase": "Running", "allocation": [{"replica": 0}]}}
    report = job_report(running, [], Outcome(evicted="preempted for research/urgent"), 2, "t")
    assert report.status["phase"] == "Preempted"
    assert ("Warning", "Preempted", "preempted for research/urgent") in report.events
    again = job_report(
        {**JOB, "status": report.status},
        [_pod(0, None, "Pending", True)],
        Outcome(placed={0: ("n3", 8), 1: ("n4", 8)}),
        2,
        "t2",
    )
    assert again.events[0][1] == "Rescheduled"


def test_finished_training() -> None:
    done = job_report(
        JOB, [_pod(0, "n1", "Succeeded"), _pod(1, "n2", "Succeeded")], Outcome(), 2, "t"
    )
    assert done.status["phase"] == "Succeeded" and done.status["gpus"] == 0
    failed = job_report(JOB, [_pod(0, "n1", "Failed"), _pod(1, "n2", "Running")], Outcome(), 2, "t")
    assert failed.status["phase"] == "Failed"
