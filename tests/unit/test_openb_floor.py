"""The proven floor (`solver/devices/bound.py`): an upper bound on the GPU milli any policy
can place, with nodes, GPU models, CPU and memory."""

from __future__ import annotations

import random

import pytest

from gpualloc.model.devices import GpuNode
from gpualloc.solver.devices.bound import allocation_upper_bound
from gpualloc.solver.devices.device_policies import FGD, BestFit, FirstFit
from gpualloc.solver.devices.devicestate import DeviceState
from gpualloc.solver.devices.fragmentation import typical_workload
from tests.unit.test_simulator import _allocated, gpu_node, pod


def test_restricted_pods_are_bounded_by_their_models_capacity() -> None:
    nodes = [gpu_node("a", gpus=8, model="A"), gpu_node("b", gpus=2, model="B")]
    picky = [pod(f"p{i}", spec=("B",)) for i in range(5)]
    assert allocation_upper_bound(picky, nodes) == 2000  # only B's two GPUs
    assert allocation_upper_bound([pod(f"p{i}") for i in range(5)], nodes) == 5000


def test_cpu_of_a_node_type_bounds_what_it_holds() -> None:
    # two 8-GPU nodes with 16 cores each; 1-GPU pods of 8 cores: 4 fit, not 16
    nodes = [gpu_node("a", gpus=8, cpu=16_000), gpu_node("b", gpus=8, cpu=16_000)]
    hungry = [pod(f"p{i}", cpu=8_000) for i in range(16)]
    assert allocation_upper_bound(hungry, nodes) == 4000


def test_a_multi_gpu_pod_needs_a_node_with_enough_gpus() -> None:
    nodes = [gpu_node(f"n{i}", gpus=4) for i in range(4)]  # 16 GPUs, none on one node of 8
    assert allocation_upper_bound([pod("big", 8)], nodes) == 0
    # two 3-GPU pods never share a 4-GPU node
    assert allocation_upper_bound([pod(f"t{i}", 3) for i in range(6)], nodes) == 12_000


@pytest.mark.parametrize("seed", range(8))
def test_no_policy_places_more_than_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    nodes: list[GpuNode] = [
        GpuNode(
            f"n{i}",
            rng.choice(["A", "B"]),
            rng.choice([1, 2, 4, 8]),
            rng.choice([8_000, 16_000, 64_000]),
            rng.choice([32_000, 256_000]),
        )
        for i in range(6)
    ]
    shapes = [
        pod("w1", cpu=4_000),
        pod("w2", 2, cpu=12_000),
        pod("w8", 8, cpu=32_000),
        pod("s3", 1, 300, cpu=2_000, spec=("A",)),
        pod("s8", 1, 810, cpu=3_000),
        pod("s5", 1, 500, cpu=6_000, spec=("B",)),
        pod("c", 0, cpu=8_000),
    ]
    pods = [rng.choice(shapes) for _ in range(40)]
    bound = allocation_upper_bound(pods, nodes)
    workload = typical_workload(shapes, ("A", "B"), cpu_pods=True)
    for policy in (FGD(workload, integer_score=True), BestFit(), FirstFit()):
        assert _allocated(DeviceState(nodes), pods, policy) <= bound
