"""GPUQueues in the decide step: which queue a job runs in, refusals, waiting reasons, the
queue's status, reclaim as writes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gpualloc.controller.decide import Decision, decide
from gpualloc.controller.state import ClusterState, DeletePod, PatchQueueStatus
from gpualloc.model import Queue
from gpualloc.solver.queues import choose_queue
from tests.unit.test_decide import NOW, created, gang, node, pod_of, status
from tests.unit.test_queues import q

pytestmark = pytest.mark.unit
Obj = dict[str, Any]
H100 = "NVIDIA-H100-80GB-HBM3"


def gpu_queue(name: str, namespaces: list[str], nominal: int = 8, **spec: Any) -> Obj:
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "GPUQueue",
        "metadata": {"name": name, "generation": 1},
        "spec": {"namespaces": namespaces, "quota": [{"product": H100, "nominal": nominal}]} | spec,
    }


def run(
    nodes: list[Obj],
    jobs: list[Obj],
    queues: list[Obj],
    pods: list[Obj] = (),  # type: ignore[assignment]
    policy: Obj | None = None,
) -> Decision:
    state = ClusterState(
        nodes=tuple(nodes),
        pods=tuple(pods),
        jobs=tuple(jobs),
        policy=policy,
        now=NOW,
        queues=tuple(queues),
    )
    return decide(state)


def queue_status(d: Decision, name: str) -> Obj:
    found = [w.status for w in d.writes if isinstance(w, PatchQueueStatus) and w.name == name]
    assert found, f"no status written for queue {name}"
    return found[-1]


def test_the_one_queue_listing_the_namespace_is_used_and_reported() -> None:
    d = run(
        [node("a"), node("b")], [gang("llama", 2, 8, preemptible=True)], [gpu_queue("team", ["ns"])]
    )
    assert sorted(created(d, placed=True).values()) == ["a", "b"]
    s = queue_status(d, "team")
    assert s["usage"] == {H100: 16} and s["nominal"] == {H100: 8} and s["borrowed"] == {H100: 8}
    assert s["gpus"] == "16/8" and s["borrowedGPUs"] == 8 and s["admittedJobs"] == 1
    assert s["fairShare"] == 8.0 and s["conditions"][0]["status"] == "True"
    assert d.snapshot.jobs[0].queue == "team"


def test_a_job_above_max_priority_is_refused() -> None:
    d = run(
        [node("a")],
        [gang("vip", 1, 8, priority=2**31 - 1)],
        [gpu_queue("team", ["ns"], maxPriority=100)],
    )
    s = status(d, "vip")
    assert s["phase"] == "Failed"
    assert "spec.priority: 2147483647 is above the maxPriority 100 of queue team" in s["message"]
    assert d.refused and not created(d)


def test_a_queue_that_does_not_list_the_namespace_is_refused() -> None:
    d = run(
        [node("a")],
        [gang("x", 1, 8, queue="other")],
        [gpu_queue("team", ["ns"]), gpu_queue("other", ["prod"])],
    )
    s = status(d, "x")
    assert s["phase"] == "Failed"
    assert "spec.queue: queue other does not list namespace ns" in s["message"]


def test_a_namespace_no_queue_lists_waits_or_takes_the_default_queue() -> None:
    queues = [gpu_queue("team", ["prod"]), gpu_queue("shared", [])]
    d = run([node("a")], [gang("x", 1, 8)], queues)
    s = status(d, "x")
    assert s["phase"] == "Unschedulable"
    assert "no GPUQueue lists namespace ns and AllocationPolicy spec.defaultQueue" in s["message"]
    policy = {"metadata": {"name": "default"}, "spec": {"defaultQueue": "shared"}}
    d = run([node("a")], [gang("x", 1, 8)], queues, policy=policy)
    assert created(d, placed=True) == {"x-worker-0": "a"}
    assert queue_status(d, "shared")["admittedJobs"] == 1


def test_an_invalid_queue_is_reported_and_its_jobs_wait() -> None:
    d = run([node("a")], [gang("x", 1, 8)], [gpu_queue("team", ["ns"], parent="nowhere")])
    cond = queue_status(d, "team")["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "Invalid")
    assert "spec.parent nowhere does not exist" in cond["message"]
    assert "queue team cannot be used" in status(d, "x")["message"]
    assert any("GPUQueue team cannot be used" in n for n in d.notes)


def test_reclaim_evicts_the_borrower_through_the_eviction_api() -> None:
    borrower = gang("b2", 1, 8, preemptible=True)
    borrower["metadata"]["namespace"] = "b"
    owner = gang("a1", 1, 8)
    keeper = gang("b1", 1, 8, preemptible=True)
    keeper["metadata"]["namespace"] = "b"
    pods = [pod_of(keeper, 0, "n0"), pod_of(borrower, 0, "n1")]
    pods[1]["status"]["startTime"] = "2026-01-02T00:00:00Z"  # started last: the victim
    queues = [gpu_queue("a", ["ns"]), gpu_queue("b", ["b"])]
    d = run([node("n0"), node("n1")], [keeper, borrower, owner], queues, pods)
    evicted = [w for w in d.writes if isinstance(w, DeletePod)]
    assert [(w.name, w.evict) for w in evicted] == [("b2-worker-0", True)]
    assert "reclaimed by queue a" in status(d, "b2")["message"]
    # a1 waits for the victim to terminate, then goes to n1
    assert "once the preempted pods there have terminated" in status(d, "a1")["message"]


def test_a_job_awaiting_its_reclaim_counts_in_its_queue_so_no_second_reclaim_is_made() -> None:
    borrower = gang("b2", 1, 8, preemptible=True)
    borrower["metadata"]["namespace"] = "b"
    keeper = gang("b1", 1, 8, preemptible=True)
    keeper["metadata"]["namespace"] = "b"
    owner, second = gang("a1", 1, 8), gang("a2", 1, 8)
    pods = [pod_of(keeper, 0, "n0"), pod_of(borrower, 0, "n1")]
    pods[1]["status"]["startTime"] = "2026-01-02T00:00:00Z"
    # b borrows all 16 GPUs: queue c's idle 8 and queue a's 8
    queues = [gpu_queue("a", ["ns"]), gpu_queue("b", ["b"], 0), gpu_queue("c", ["c"])]
    first = run([node("n0"), node("n1")], [keeper, borrower, owner], queues, pods)
    assert [w.name for w in first.writes if isinstance(w, DeletePod)] == ["b2-worker-0"]
    # next round: b2 still terminating, a2 arrives; a1 holds queue a's 8 nominal GPUs already
    pods[1]["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:20Z"
    state = ClusterState(
        nodes=(node("n0"), node("n1")),
        pods=(*pods, pod_of(owner, 0)),
        jobs=(keeper, borrower, owner, second),
        now=NOW + 5,
        queues=tuple(queues),
    )
    then = decide(state, first.plan)
    assert not [w for w in then.writes if isinstance(w, DeletePod)]  # b1 keeps running
    assert "still terminating" in status(then, "a1")["message"]
    assert "queue a" in status(then, "a2")["message"]


def test_no_queues_no_queue_writes() -> None:
    d = run([node("a")], [gang("x", 1, 8)], [])
    assert not [w for w in d.writes if isinstance(w, PatchQueueStatus)]
    assert d.snapshot.queues == () and d.snapshot.jobs[0].queue is None


@pytest.mark.parametrize(
    ("namespace", "requested", "priority", "default", "expected"),
    [
        ("ns", None, 0, None, ("team", None, None)),
        ("ns", "team", 100, None, ("team", None, None)),
        ("ns", "team", 101, None, (None, "above the maxPriority 100 of queue team", None)),
        ("ns", "prod", 0, None, (None, "queue prod does not list namespace ns", None)),
        ("ns", "nope", 0, None, (None, None, "queue nope (spec.queue) does not exist")),
        ("free", None, 0, None, (None, None, "no GPUQueue lists namespace free")),
        ("free", None, 0, "prod", ("prod", None, None)),
        ("free", "prod", 0, "prod", ("prod", None, None)),
        ("both", None, 0, None, (None, None, "listed by queues prod, team: set spec.queue")),
        ("sub", None, 500, None, (None, "maxPriority 100 of queue team (a parent of child)", None)),
    ],
)
def test_choose_queue(
    namespace: str,
    requested: str | None,
    priority: int,
    default: str | None,
    expected: tuple[str | None, str | None, str | None],
) -> None:
    queues = [
        replace(q("team", max_priority=100), namespaces=("ns", "both")),
        replace(q("prod"), namespaces=("prod", "both")),
        Queue("child", ("sub",), parent="team"),
    ]
    choice = choose_queue(namespace, requested, priority, queues, default)
    queue, refused, waiting = expected
    assert choice.queue == queue
    assert (choice.refused is None) == (refused is None)
    assert (refused or "") in (choice.refused or "")
    assert (choice.waiting is None) == (waiting is None)
    assert (waiting or "") in (choice.waiting or "")
