"""Planned defragmentation: moves of movable jobs in the same CP-SAT plan, literal cases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpualloc.model import Defragmentation, Job, JobKind, Node, Plan, Policy, RunningPod, Snapshot
from gpualloc.solver.planner import plan

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
HOUR = 3600.0
POLICY = Policy(time_limit_seconds=5.0)


def _node(name: str) -> Node:
    return Node(name, "H100", 8, 81920, 64000, 512000)


def _job(key: str, workers: int, gpus: int, **kw: object) -> Job:
    return Job(key, JobKind.TRAINING, 0, workers, workers, gpus, created=NOW - 9 * HOUR, **kw)  # type: ignore[arg-type]


def _pod(key: str, node: str, gpus: int, started: float, replica: int = 0) -> RunningPod:
    return RunningPod(f"{key}-{replica}", node, gpus, job=key, replica=replica, started=started)


def _plan(nodes: int, jobs: list[Job], pods: list[RunningPod], policy: Policy = POLICY) -> Plan:
    cluster = tuple(_node(f"n{i}") for i in range(1, nodes + 1))
    return plan(Snapshot(cluster, tuple(pods), tuple(jobs), now=NOW), policy)


def _nodes_of(result: Plan, key: str) -> list[str]:
    return sorted(p.node for p in result.placements if p.job == key)


# n1: movable m (4 GPUs); n2: fixed f (4 GPUs). A gang of 1 x 8 fits only on a whole node.
M = _job("t/m", 1, 4, movable=True)
F = _job("t/f", 1, 4)
G = _job("u/g", 1, 8)
PODS = [_pod("t/m", "n1", 4, NOW - HOUR), _pod("t/f", "n2", 4, NOW - HOUR)]


def test_a_movable_job_is_moved_so_a_gang_fits() -> None:
    result = _plan(2, [M, F, G], PODS)
    assert _nodes_of(result, "u/g") == ["n1"]
    assert _nodes_of(result, "t/m") == ["n2"]  # re-placed in the same plan
    (move,) = result.evictions
    assert (move.job, move.moved_to, move.for_jobs) == ("t/m", ("n2",), ("u/g",))
    assert result.moves_status == "OPTIMAL"
    assert "u/g" not in {u.job for u in result.unscheduled}


def test_non_movable_work_is_never_moved() -> None:
    result = _plan(2, [replace(M, movable=False), F, G], PODS)
    assert not result.evictions
    assert _nodes_of(result, "t/m") == ["n1"]
    assert "u/g" in {u.job for u in result.unscheduled}


def test_no_move_without_a_placement_it_pays_for() -> None:
    # nothing waits: nothing moves (a move would only cost work)
    assert not _plan(2, [M, F], PODS).evictions
    # a gang that fits as is: placed, nothing moved
    small = _job("u/s", 1, 4)
    result = _plan(2, [M, F, small], PODS)
    assert not result.evictions and len(_nodes_of(result, "u/s")) == 1
    # a gang no move can place (2 whole nodes, only one can be freed): nothing moves
    result = _plan(2, [M, F, _job("u/big", 2, 8)], PODS)
    assert not result.evictions


def test_the_move_losing_the_least_work_is_chosen() -> None:
    # n1: a (4 GPUs, 2 h), n2: b (4 GPUs, 1 h), n3: fixed f (4 GPUs). Freeing n1 or n2 for a
    # whole-node gang means moving a or b to n3: b has run for less, so it loses less.
    a = _job("t/a", 1, 4, movable=True)
    b = _job("t/b", 1, 4, movable=True)
    pods = [
        _pod("t/a", "n1", 4, NOW - 2 * HOUR),
        _pod("t/b", "n2", 4, NOW - HOUR),
        _pod("t/f", "n3", 4, NOW - HOUR),
    ]
    result = _plan(3, [a, b, F, G], pods)
    assert [e.job for e in result.evictions] == ["t/b"] and result.moves_status == "OPTIMAL"
    # a checkpoints every 30 min (last one 5 min ago: 20 GPU-min lost) and b never: move a
    a_ckpt = replace(a, checkpoint_seconds=1800)
    pods[0] = _pod("t/a", "n1", 4, NOW - 2 * HOUR - 300)
    result = _plan(3, [a_ckpt, b, F, G], pods)
    assert [e.job for e in result.evictions] == ["t/a"]
    assert _nodes_of(result, "t/a") == ["n3"] and _nodes_of(result, "u/g") == ["n1"]


def test_fewest_pods_among_equal_lost_work() -> None:
    # n1: one 4-GPU pod of w1; n2: two 2-GPU pods of w2 (same GPU-hours lost); n3: f (4).
    # Either move frees a whole node; w1 moves one pod, w2 two.
    w1 = _job("t/w1", 1, 4, movable=True)
    w2 = _job("t/w2", 2, 2, movable=True)
    pods = [
        _pod("t/w1", "n1", 4, NOW - HOUR),
        _pod("t/w2", "n2", 2, NOW - HOUR, 0),
        _pod("t/w2", "n2", 2, NOW - HOUR, 1),
        _pod("t/f", "n3", 4, NOW - HOUR),
    ]
    result = _plan(3, [w1, w2, F, G], pods)
    assert [e.job for e in result.evictions] == ["t/w1"]


def test_cooldown_min_runtime_and_the_per_round_cap() -> None:
    recently = replace(M, moved_at=NOW - 600)  # cooldown 1800 s
    assert not _plan(2, [recently, F, G], PODS).evictions
    young = [_pod("t/m", "n1", 4, NOW - 60), PODS[1]]  # minRuntime 300 s
    assert not _plan(2, [M, F, G], young).evictions
    capped = replace(POLICY, defragmentation=Defragmentation(max_moves_per_round=0))
    assert not _plan(2, [M, F, G], PODS, capped).evictions
    off = replace(POLICY, defragmentation=Defragmentation(enabled=False))
    assert not _plan(2, [M, F, G], PODS, off).evictions


def test_a_higher_priority_movable_job_may_move_for_a_lower_one() -> None:
    # moving keeps its GPUs (it is re-placed at once), so the plan is strictly better
    result = _plan(2, [replace(M, priority=100), F, G], PODS)
    assert [e.job for e in result.evictions] == ["t/m"]
    assert _nodes_of(result, "t/m") == ["n2"]
