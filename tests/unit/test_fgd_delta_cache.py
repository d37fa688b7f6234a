"""FGD's growth of F is kept per pod shape and node state: what it returns after places
and copies is what a fresh computation gives."""

from __future__ import annotations

import random

import numpy as np
import pytest

from gpualloc.solver.devices.device_policies import FGD, fragmentation_delta
from gpualloc.solver.devices.devicestate import DeviceState
from gpualloc.solver.devices.fragmentation import typical_workload
from tests.unit.test_simulator import gpu_node, pod

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seed", range(4))
def test_kept_growth_equals_a_fresh_computation_on_every_fork(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [gpu_node(f"n{i}", rng.choice([2, 4, 8]), rng.choice("AB")) for i in range(12)]
    shapes = [pod("w1"), pod("w2", 2), pod("s3", 1, 300), pod("s5", 1, 500), pod("c", 0)]
    state = DeviceState(nodes)
    workload = typical_workload(shapes, state.models, cpu_pods=True)
    fgd = FGD(workload, integer_score=True)
    forks = [state]
    for _ in range(60):  # a lineage of states: each step places on one fork, or forks one
        here = rng.choice(forks)
        if rng.random() < 0.2:
            forks.append(here.copy())
            continue
        p = rng.choice(shapes)
        spot = fgd.choose(here, p)
        if spot is not None:
            here.place(p, spot)
        for s in forks:
            rows = np.flatnonzero(s.fits(p))
            fresh = typical_workload(shapes, s.models, cpu_pods=True)  # nothing kept yet
            kept = fragmentation_delta(s, p, rows, workload)
            assert np.array_equal(kept, fragmentation_delta(s, p, rows, fresh))
