"""The planner skips CP-SAT only where greedy best-fit is the plan CP-SAT would return: same
replicas for every job, no eviction, and as good in every objective (solver/shortcut.py)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest

from gpualloc.model import Placement, Policy, RunningPod, Snapshot
from gpualloc.solver import plan
from gpualloc.solver.baselines import plan_greedy
from gpualloc.solver.capacity import usage_by_node
from gpualloc.solver.cpsat import AllocationModel, Solution
from gpualloc.solver.decode import decode
from gpualloc.solver.instance import build_instance
from gpualloc.solver.shortcut import greedy_is_optimal
from tests.unit.builders import gang, inference, node, running, snap

pytestmark = pytest.mark.unit
POLICY = Policy(time_limit_seconds=10, num_workers=1)


def _new(s: Snapshot, placements: Sequence[Placement]) -> list[tuple[str, str, int]]:
    held = {(p.job, p.node, p.replica) for p in s.pods}
    return [(p.job, p.node, p.gpus) for p in placements if (p.job, p.node, p.replica) not in held]


def _figures(s: Snapshot, new: list[tuple[str, str, int]]) -> tuple[object, ...]:
    """What CP-SAT's objectives see: new replicas per job, empty nodes used, best-fit sum."""
    usage = usage_by_node(s.pods)
    free = {n.name: n.gpus - (usage[n.name].gpus if n.name in usage else 0) for n in s.nodes}
    per_job = Counter(job for job, _, _ in new)
    empty_used = len({n for _, n, _ in new if n not in usage})
    fit = sum(g * (8 - free[n]) for _, n, g in new)
    return dict(per_job), empty_used, fit


def _by_cpsat(s: Snapshot) -> tuple[tuple[object, ...], set[int]]:
    """CP-SAT's plan, as the planner made it before the shortcut: figures, evicted jobs."""
    inst = build_instance(s, POLICY)
    sol = AllocationModel(inst, POLICY).solve()
    placements, _ = decode(inst, sol)
    return _figures(s, _new(s, placements)), sol.evicted


def _proven(s: Snapshot) -> Solution | None:
    inst = build_instance(s, POLICY)
    return greedy_is_optimal(inst, plan_greedy(s, "best-fit", explain=False, inst=inst), POLICY)


def _random_cluster(rng: random.Random) -> Snapshot:
    nodes = [node(f"n{i}") for i in range(rng.randint(2, 5))]
    pods: list[RunningPod] = []
    jobs = []
    for i, n in enumerate(nodes):
        used = rng.choice([0, 0, 2, 4, 6, 7, 8])
        if used:
            name = f"r{i}"
            jobs.append(inference(name, 1, used, preemptible=rng.random() < 0.5, created=-1))
            pods.append(running(name, n.name, used))
    for i in range(rng.randint(1, 6)):
        size = rng.choice([1, 2, 4, 8])
        workers = 2 if size == 8 and rng.random() < 0.2 else 1
        priority = rng.choice([0, 0, 0, 5])
        jobs.append(gang(f"j{i}", workers, size, priority=priority, created=rng.randint(0, 99)))
    return snap(nodes, jobs, pods)


def test_where_the_shortcut_applies_cpsat_returns_an_equal_plan() -> None:
    rng = random.Random(7)
    proven = 0
    for _ in range(300):
        s = _random_cluster(rng)
        if _proven(s) is None:
            continue
        proven += 1
        cpsat, evicted = _by_cpsat(s)
        assert not evicted
        greedy = plan_greedy(s, "best-fit", explain=False)
        assert _figures(s, _new(s, greedy.placements)) == cpsat, s
        # and the planner's own plan is greedy's, with CP-SAT's headline figures
        p = plan(s, POLICY)
        assert _figures(s, _new(s, p.placements)) == cpsat
        assert p.status == "OPTIMAL" and p.objective == p.bound and not p.evictions
    assert proven >= 40  # the property was exercised, not skipped


def test_nothing_fits_the_plan_is_empty_without_cpsat() -> None:
    s = snap(
        [node("n0"), node("n1")],
        [inference("a", 1, 6), inference("b", 1, 7), gang("wait", 1, 8, created=5)],
        [running("a", "n0", 6), running("b", "n1", 7)],
    )
    assert _proven(s) is not None
    p = plan(s, POLICY)
    assert _new(s, p.placements) == [] and p.objective == 13 and p.status == "OPTIMAL"
    (why,) = p.unscheduled
    assert why.job == "ns/wait" and "8" in why.reason


def test_a_higher_priority_job_that_needs_an_eviction_goes_to_cpsat() -> None:
    s = snap(
        [node("n0")],
        [inference("low", 1, 8, preemptible=True), gang("high", 1, 8, priority=9)],
        [running("low", "n0", 8)],
    )
    assert _proven(s) is None
    p = plan(s, POLICY)
    assert [e.job for e in p.evictions] == ["ns/low"]


def test_greedy_leaving_a_fitting_job_out_goes_to_cpsat() -> None:
    # 4 GPUs free: greedy (oldest first) places the 3-GPU job, then neither 2-GPU one fits;
    # CP-SAT places both 2-GPU jobs (4 GPUs)
    s = snap(
        [node("n0")],
        [
            inference("r", 1, 4),
            gang("three", 1, 3, created=1),
            gang("two-a", 1, 2, created=2),
            gang("two-b", 1, 2, created=3),
        ],
        [running("r", "n0", 4)],
    )
    assert _proven(s) is None
    assert {job for job, _, _ in _new(s, plan(s, POLICY).placements)} == {"ns/two-a", "ns/two-b"}
