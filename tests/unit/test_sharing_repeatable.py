"""gpualloc's openb runs are repeatable: CP-SAT's budget per batch is deterministic time,
so the same seed gives the same placements on a quiet or a loaded machine."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from gpualloc.model.devices import DevicePlacement, GpuNode, PodRequest
from gpualloc.sim.openb import replay, sample_trace
from gpualloc.sim.policies import GpuallocBatch, make_policy
from gpualloc.solver.devices.devicestate import DeviceState
from gpualloc.solver.devices.sharing import BatchOptions, _Model
from gpualloc.solver.lexicographic import Objective, solve_lexicographic
from tests.unit.test_simulator import gpu_node, pod

pytestmark = pytest.mark.unit


class _Recorder(GpuallocBatch):
    """gpualloc's planner, keeping every plan it returns."""

    def __init__(self, inner: GpuallocBatch) -> None:
        super().__init__(inner.workload, inner.options, inner.demand)
        self.plans: list[list[DevicePlacement | None]] = []

    def plan_batch(
        self, state: DeviceState, pods: Sequence[PodRequest]
    ) -> list[DevicePlacement | None]:
        plan = super().plan_batch(state, pods)
        self.plans.append(plan)
        return plan


def _small_list(seed: int) -> tuple[list[GpuNode], list[PodRequest]]:
    rng = random.Random(seed)
    nodes = [
        gpu_node(f"n{i:02d}", rng.choice([2, 4, 8]), rng.choice("AB"), rng.choice([32_000, 96_000]))
        for i in range(24)
    ]
    pods = [
        pod("w1", cpu=4000),
        pod("w2", 2, cpu=8000),
        pod("w4", 4, cpu=16_000),
        pod("w8", 8, cpu=32_000),
        pod("s3", 1, 300, cpu=2000),
        pod("s5", 1, 500, cpu=3000, spec=("A",)),
        pod("c", 0, cpu=6000),
    ]
    return nodes, pods


def _run(seed: int, options: BatchOptions) -> list[list[DevicePlacement | None]]:
    nodes, pod_list = _small_list(seed)
    arrivals, ordered = sample_trace(pod_list, nodes, 1.2, seed)
    inner = make_policy("gpualloc", pod_list, DeviceState(ordered), options)
    assert isinstance(inner, GpuallocBatch)
    planner = _Recorder(inner)
    replay(ordered, arrivals, planner, batch=8)
    return planner.plans


@pytest.mark.parametrize("seed", [42, 43])
def test_the_same_seed_places_every_pod_the_same_way_twice(seed: int) -> None:
    # a budget small enough to stop some searches before they prove optimality: with a
    # wall-clock limit, where they stop (and so the plan) would follow the machine's load
    options = BatchOptions(deterministic_time=0.002, time_limit_seconds=30.0)
    first = _run(seed, options)
    assert sum(1 for plan in first for spot in plan if spot is not None) > 30
    assert _run(seed, options) == first


def test_the_wall_clock_cap_does_not_change_the_plans() -> None:
    # the cap is only a safety net far above the deterministic budget
    loose = _run(44, BatchOptions(time_limit_seconds=60.0))
    assert _run(44, BatchOptions(time_limit_seconds=1.0)) == loose


def test_terms_too_wide_to_fold_are_maximized_in_stages_in_order() -> None:
    # spans whose product passes 2**50 cannot share one exact weighted sum: the first term
    # is maximized, fixed, then the second, from the first stage's solution
    model = _Model()
    a, b, c = model.new_bool(), model.new_bool(), model.new_bool()
    model.add(a + b <= 1)
    model.add(b + c <= 1)
    model.add_hint(b, 1)
    wide = 2**30
    options = BatchOptions()
    solver, stages = solve_lexicographic(
        model,
        [Objective("a", a, wide), Objective("c-2a", c - 2 * a, wide)],
        time_limit=options.time_limit_seconds,
        relative_gap=0.0,
        num_workers=options.num_workers,
        deterministic_time=options.deterministic_time,
    )
    assert solver is not None and len(stages) == 2
    assert [solver.value(v) for v in (a, b, c)] == [1, 0, 1]
