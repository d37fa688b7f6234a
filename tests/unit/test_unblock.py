"""What would let a waiting job run now: literal cases with hand-worked answers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpualloc.model import Job, JobKind, Node, NodeRequirements, Policy, RunningPod, Snapshot
from gpualloc.solver.unblock import Unblock, Victim, unblock

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
HOUR = 3600.0
POLICY = Policy(time_limit_seconds=2.0)


def _node(name: str, product: str = "H100") -> Node:
    return Node(name, product, 8, 81920, 64000, 512000)


def _running(key: str, node: str, gpus: int, started: float) -> RunningPod:
    return RunningPod(f"{key}-0", node, gpus, job=key, replica=0, started=started)


def _job(key: str, workers: int, gpus: int, **kw: object) -> Job:
    return Job(key, JobKind.TRAINING, 0, workers, workers, gpus, **kw)  # type: ignore[arg-type]


# n1: A holds 4 of 8 GPUs (started 1 h ago, estimate 8 GPU-h: done in 1 more hour);
# n2: B holds 6 of 8 (started 2 h ago, no estimate). Free: 4 on n1, 2 on n2.
NODES = (_node("n1"), _node("n2"))
A = _job("t/a", 1, 4, preemptible=True, estimated_gpu_hours=8.0)
B = _job("t/b", 1, 6)
PODS = (_running("t/a", "n1", 4, NOW - HOUR), _running("t/b", "n2", 6, NOW - 2 * HOUR))


def _ask(waiting: Job) -> Unblock:
    snapshot = Snapshot(nodes=NODES, pods=PODS, jobs=(A, B, waiting))
    return unblock(snapshot, POLICY, waiting.key, NOW, budget_seconds=30)


def test_gang_blocked_by_fragments() -> None:
    # 2 workers x 4 GPUs: only n1 has 4 free. Evicting A (4 GPUs) frees n1 whole; evicting
    # B (6 GPUs) would also do: the fewest GPUs is A, and the solver proves it.
    answer = _ask(_job("u/w", 2, 4))
    assert answer.evict == (Victim("t/a", 4, pytest.approx(4.0), True),)
    assert answer.evict_status == "OPTIMAL"
    # 1 x 4 fits on n1; 8 x 1, 4 x 2 and 1 x 8 do not fit in 4 + 2 free GPUs
    assert answer.alternatives == ("with 1 worker instead of 2",)
    assert answer.free_at == NOW + HOUR  # A's estimate runs out
    message = answer.message()
    assert "t/a (4 GPUs, 4.0 GPU-h lost)" in message and "proven fewest GPUs" in message
    assert answer.complete


def test_non_preemptible_victim_is_named_so() -> None:
    # 1 worker x 8: evicting A frees n1 (4 GPUs taken); the only other way takes B's 6
    answer = _ask(_job("u/w", 1, 8))
    assert [v.job for v in answer.evict] == ["t/a"]
    # and a split into 2 x 4 does not fit, 4 x 2 does not (2 + 1), 8 x 1 does not (6)
    assert answer.alternatives == ()
    b_only = Snapshot(nodes=NODES, pods=PODS[1:], jobs=(B, _job("u/w", 2, 8)))
    answer = unblock(b_only, POLICY, "u/w", NOW, budget_seconds=30)
    assert answer.evict == (Victim("t/b", 6, pytest.approx(12.0), False),)
    assert "not preemptible" in answer.message()


def test_fits_now_says_it_waits_for_others() -> None:
    answer = _ask(_job("u/w", 1, 4))
    assert answer.fits_now
    assert "waits only for jobs ahead" in answer.message()


def test_product_nobody_has_suggests_one_that_fits() -> None:
    b200 = _job("u/w", 1, 2, requirements=NodeRequirements(products=("B200",)))
    answer = _ask(b200)
    assert answer.never is not None and "B200" in answer.never
    assert answer.alternatives == ("on H100",)


def test_budget_exhausted_is_reported_incomplete() -> None:
    snapshot = Snapshot(nodes=NODES, pods=PODS, jobs=(A, B, _job("u/w", 2, 4)))
    answer = unblock(snapshot, POLICY, "u/w", NOW, budget_seconds=0)
    assert not answer.complete
    assert answer.evict == ()


def test_a_node_claiming_a_billion_gpus_costs_nothing() -> None:
    """A hostile Node object (allocatable 1e9 GPUs) must not make the answer enumerate GPU
    counts up to it: run with a 2 GiB address-space limit, it answers at once."""
    import subprocess
    import sys

    code = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from gpualloc.model import Job, JobKind, Node, NodeRequirements, Policy, Snapshot
from gpualloc.solver.unblock import unblock
huge = Node("huge", "GB200", 10**9, 81920, 64000, 512000)
nodes = (huge, Node("n1", "H100", 8, 81920, 64000, 512000))
job = Job("u/w", JobKind.TRAINING, 0, 3, 3, 8, requirements=NodeRequirements(("H100",)))
answer = unblock(Snapshot(nodes, (), (job,), now=1.0), Policy(), "u/w", 1.0, 10)
print(answer.alternatives)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    # 3 x 8 of H100 do not fit one H100 node; 1 x 8 does, and so does all of it on GB200
    assert "with 1 worker instead of 3" in run.stdout and "on GB200" in run.stdout


def test_a_gang_that_fits_no_rack_is_not_told_free_gpus_are_enough() -> None:
    from gpualloc.model import TopologyRequest

    rack = "topology.kubernetes.io/rack"
    nodes = tuple(
        Node(f"n{i}", "H100", 8, 81920, 64000, 512000, labels={rack: f"r{i}"}) for i in (1, 2)
    )
    gang = _job("u/w", 2, 8, topology=TopologyRequest(required=rack))
    policy = Policy(time_limit_seconds=2.0, topology_levels=(rack,))
    answer = unblock(Snapshot(nodes, (), (gang,), now=NOW), policy, "u/w", NOW, 30)
    # 16 free GPUs, but one per rack: it fits only as 1 worker (or spread, which it forbids)
    assert not answer.fits_now
    assert answer.alternatives == ("with 1 worker instead of 2",)


def test_a_gang_that_fits_only_by_moving_a_job_is_told_so() -> None:
    # n1: A (movable, 4 GPUs), n2: B (6), n3: C (4). 1 x 8 fits once A moves to n3: that is
    # an answer to give ("moved or evicted"), not "free GPUs are enough"
    nodes = (*NODES, _node("n3"))
    c = _job("t/c", 1, 4)
    pods = (*PODS, _running("t/c", "n3", 4, NOW - HOUR))
    jobs = (replace(A, movable=True), B, c, _job("u/w", 1, 8))
    answer = unblock(Snapshot(nodes, pods, jobs, now=NOW), POLICY, "u/w", NOW, 30)
    assert not answer.fits_now
    assert [v.job for v in answer.evict] == ["t/a"]
