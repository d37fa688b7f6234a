"""GPU-model scarcity in gpualloc's batch planner: capacity held for restricted pods, the
charge for taking it, and the guarantee against FGD from the same state."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gpualloc.model.devices import DevicePlacement, PodRequest
from gpualloc.solver.devices.device_policies import FGD
from gpualloc.solver.devices.devicestate import DeviceState
from gpualloc.solver.devices.fragmentation import typical_workload
from gpualloc.solver.devices.scarcity import (
    model_demand,
    reserve_penalty,
    reserved_milli,
    whole_node_holds,
)
from gpualloc.solver.devices.sharing import BatchOptions, _greedy, _placed, plan_batch
from tests.unit.test_simulator import gpu_node, pod


def test_restricted_classes_and_their_share_of_the_gpu_demand() -> None:
    pods = [pod("any", 2), pod("b", 1, spec=("B",)), pod("b2", 1, 500, spec=("B",))]
    pods += [pod("ab", 1, spec=("A", "B")), pod("cpu", 0)]
    demand = model_demand(pods, ("A", "B"))
    # A|B allows every model: not restricted; B-only pods ask 1500 of 4500 milli
    assert demand.allowed.tolist() == [[False, True]]
    assert demand.share.tolist() == [1500 / 4500]


def test_each_model_holds_its_classes_share_of_the_free_capacity() -> None:
    state = DeviceState([gpu_node("a", 8, model="A"), gpu_node("b", 2, model="B")])
    demand = model_demand([pod("any", 4), pod("b", 1, spec=("B",))], ("A", "B"))
    # 10 free GPUs, B-only pods are 1/5 of the demand: B holds 2 GPUs
    assert reserved_milli(state, demand).tolist() == [0.0, 2000.0]
    # so a pod that could go anywhere is charged for a B GPU, not for an A GPU ...
    penalty = reserve_penalty(state, demand, pod("x"))
    assert penalty is not None and penalty.tolist() == [0.0, 1000.0]
    # ... and CPU-only pods are never charged
    assert reserve_penalty(state, demand, pod("c", 0)) is None


def test_a_flexible_share_keeps_off_the_gpu_a_restricted_share_needs() -> None:
    # node b (model B) has half a GPU free: FGD puts the next flexible half GPU there (it
    # fills the device and keeps A's whole GPUs whole); then the B-only half GPU finds no
    # room. B-only pods ask 2/9 of the demand, so B's half GPU is held for them: taking it
    # costs the flexible share 500 milli of F, more than breaking a GPU on A.
    state = DeviceState([gpu_node("a", 2, model="A"), gpu_node("b", 1, model="B")])
    state.place(pod("old", 1, 500), DevicePlacement(1, (0,)))
    pod_list = [pod("w")] * 3 + [pod("s", 1, 500)] + [pod("bs", 1, 500, spec=("B",))] * 2
    workload = typical_workload(pod_list, state.models, cpu_pods=True)
    batch = [pod("flex", 1, 500), pod("picky", 1, 500, spec=("B",))]
    fgd_plan, _ = _greedy(state, batch, FGD(workload, integer_score=True))
    assert fgd_plan == [DevicePlacement(1, (0,)), None]
    demand = model_demand(pod_list, state.models)
    plan = plan_batch(state, batch, workload, demand=demand)
    assert plan == [DevicePlacement(0, (0,)), DevicePlacement(1, (0,))]


def _random_case(seed: int) -> tuple[DeviceState, list[PodRequest], list[PodRequest]]:
    rng = random.Random(seed)
    nodes = [
        gpu_node(f"n{i}", rng.choice([1, 2, 4, 8]), rng.choice("ABC"), rng.choice([8000, 32000]))
        for i in range(8)
    ]
    shapes = [
        pod("w1", cpu=3000),
        pod("w2", 2, cpu=5000),
        pod("s3", 1, 300, cpu=2000, spec=("A",)),
        pod("s7", 1, 700, cpu=2000),
        pod("wb", 1, cpu=2000, spec=("B", "C")),
        pod("c", 0, cpu=4000),
    ]
    state = DeviceState(nodes)
    for p in [rng.choice(shapes) for _ in range(rng.randint(5, 25))]:  # a used cluster
        spot = FGD(typical_workload(shapes, state.models)).choose(state, p)
        if spot is not None:
            state.place(p, spot)
    return state, shapes, [rng.choice(shapes) for _ in range(8)]


@pytest.mark.parametrize("seed", range(8))
def test_the_charged_pass_reuses_the_plain_ones_work_exactly(seed: int) -> None:
    state, shapes, batch = _random_case(seed)
    workload = typical_workload(shapes, state.models, cpu_pods=True)
    demand = model_demand(shapes, state.models)
    fgd = FGD(workload, integer_score=True)
    plain = _greedy(state, batch, fgd)
    fresh = _greedy(state, batch, fgd, demand)
    reused = _greedy(state, batch, fgd, demand, reuse=plain)
    assert reused[0] == fresh[0]
    for a, b in zip(reused[1], fresh[1], strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a.rows.tolist() == b.rows.tolist()
            assert np.array_equal(a.growth, b.growth)


@pytest.mark.parametrize("seed", range(8))
def test_a_batch_never_places_less_than_fgd_from_the_same_state(seed: int) -> None:
    state, shapes, batch = _random_case(seed)
    workload = typical_workload(shapes, state.models, cpu_pods=True)
    # whole nodes held too, for the 2-GPU pods, as if the target workload left them out
    singles = [p for p in shapes if p.num_gpu < 2]
    holds = whole_node_holds(shapes, state, typical_workload(singles, state.models))
    assert holds.shapes
    demand = model_demand(shapes, state.models, holds)
    plan = plan_batch(state, batch, workload, BatchOptions(time_limit_seconds=1.0), demand)
    trial = state.copy()
    for p, spot in zip(batch, plan, strict=True):
        if spot is not None:
            trial.place(p, spot)  # raises if the plan overcommits anything
    fgd_plan, _ = _greedy(state, batch, FGD(workload, integer_score=True))
    assert _placed(batch, plan) >= _placed(batch, fgd_plan)


@pytest.mark.parametrize("seed", range(4))
def test_free_milli_per_model_follows_every_placement(seed: int) -> None:
    # the reserve reads each model's free milli once per pod planned, best-fit each node's:
    # the state keeps both up to date instead of summing every device, copies their own
    state, _, batch = _random_case(seed)
    fork = state.copy()
    for p in batch:
        spot = FGD(typical_workload(batch, fork.models)).choose(fork, p)
        if spot is not None:
            fork.place(p, spot)
    for s in (state, fork):
        per_node = np.clip(s.gpu_left, 0, None).sum(axis=1)
        assert s.free_gpu_milli().tolist() == per_node.tolist()
        free = np.bincount(s.model, weights=per_node, minlength=len(s.models))
        assert s.model_free.tolist() == free.tolist()
    assert fork.model_free.sum() < state.model_free.sum()


def _big_and_small_cluster() -> tuple[DeviceState, list[PodRequest]]:
    # one node with the CPUs a 120-CPU 8-GPU pod needs, one without; the pod list's target
    # workload (95% of its pods) is whole single GPUs, so FGD's F does not see 8-GPU pods
    state = DeviceState([gpu_node("a-big", 8, "G3", 128_000), gpu_node("b", 8, "G2", 96_000)])
    pod_list = [pod(f"w{i}", cpu=4000) for i in range(60)]
    pod_list += [pod("e", 8, cpu=64_000), pod("big", 8, cpu=120_000)]
    return state, pod_list


def test_whole_node_classes_are_multi_gpu_pods_outside_the_target_workload() -> None:
    state, pod_list = _big_and_small_cluster()
    holds = whole_node_holds(pod_list, state, typical_workload(pod_list, state.models, 95))
    # one class per set of nodes that can hold its pods: 64-CPU pods fit both, 120-CPU one
    assert holds.gpus.tolist() == [8, 8]
    assert sorted(holds.nodes.tolist()) == [[True, False], [True, True]]
    assert holds.share.tolist() == [8000 / 76_000, 8000 / 76_000]
    assert model_demand(pod_list, state.models).restricted is False
    assert model_demand(pod_list, state.models, holds).restricted is True


def test_a_share_keeps_off_the_only_node_a_big_pod_fits() -> None:
    state, pod_list = _big_and_small_cluster()
    workload = typical_workload(pod_list, state.models, cpu_pods=True)
    share, big = pod("s", 1, 500), pod("big", 8, cpu=120_000)
    # FGD: a half GPU breaks a GPU on either node alike, so it goes to the first, a-big,
    # and the 120-CPU pod that comes next fits nowhere
    assert FGD(workload, integer_score=True).choose(state, share) == DevicePlacement(0, (0,))
    demand = model_demand(pod_list, state.models, whole_node_holds(pod_list, state, workload))
    # a-big is held whole for the 120-CPU class (2/19 of the demand, 16 GPUs free): the
    # share is charged for breaking it, goes to b, and the big pod then fits a-big
    spot = plan_batch(state, [share], workload, demand=demand)[0]
    assert spot is not None and spot.node == 1
    state.place(share, spot)
    assert plan_batch(state, [big], workload, demand=demand)[0] == DevicePlacement(
        0, tuple(range(8))
    )
    # the big pod is not charged for its own class's hold, only for the 64-CPU class's
    # (a-big is the last node that can take one of those): its share of the 15.5 free
    # GPUs, 8/76 x 15,500 milli, less than one node
    penalty = reserve_penalty(state, demand, big)
    assert penalty is not None
    assert penalty.tolist() == pytest.approx([8000 / 76_000 * 15_500, 0.0])
