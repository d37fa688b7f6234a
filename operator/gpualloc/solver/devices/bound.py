"""A proven upper bound on the GPU milli any policy can allocate to a set of pods (pure).

Relaxation: forget nodes, CPU, memory, GPU models and arrival order; keep only that a GPU
device holds 1000 milli, a share sits on one device and a whole GPU takes a device. Shares
are packed into devices by *patterns* (multisets of share sizes summing to <= 1000):

  n[p] = devices filled with pattern p;  w = devices given to whole GPUs
  maximize  sum_p milli(p) n[p] + 1000 w
  s.t.      sum_p count(p, size) n[p] <= shares of that size,   w <= whole GPUs asked,
            sum_p n[p] + w <= devices.

Any real placement is feasible here, so the optimum of this model's LP relaxation bounds
every policy, online or offline: 100 - bound / capacity x 100 is a floor on unallocated
GPU %.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ortools.linear_solver import pywraplp

from gpualloc.model.devices import MILLI, PodRequest


def _patterns(sizes: Sequence[int]) -> list[tuple[int, ...]]:
    """All non-empty multisets of `sizes` (as counts per size) that fit one device."""
    out: list[tuple[int, ...]] = []

    def walk(i: int, room: int, counts: list[int]) -> None:
        if i == len(sizes):
            if any(counts):
                out.append(tuple(counts))
            return
        k = 0
        while k * sizes[i] <= room:
            counts.append(k)
            walk(i + 1, room - k * sizes[i], counts)
            counts.pop()
            k += 1

    walk(0, MILLI, [])
    return out


def allocation_upper_bound(pods: Sequence[PodRequest], devices: int) -> int:
    """Most GPU milli of `pods` that `devices` GPUs could hold (a proven upper bound): the
    optimum of the pattern model's LP relaxation, which is at least its integer optimum."""
    shares = Counter(p.gpu_milli for p in pods if p.is_share)
    whole = sum(p.whole_gpus for p in pods)
    total = sum(p.gpu_request_milli for p in pods)
    trivial = min(total, devices * MILLI)
    sizes = sorted(shares)
    patterns = _patterns(sizes)
    lp = pywraplp.Solver.CreateSolver("GLOP")
    n = [lp.NumVar(0.0, devices, f"n{i}") for i in range(len(patterns))]
    w = lp.NumVar(0.0, min(whole, devices), "w")
    for j, size in enumerate(sizes):
        used = [p[j] * v for p, v in zip(patterns, n, strict=True) if p[j]]
        if used:
            lp.Add(lp.Sum(used) <= shares[size])
    lp.Add(lp.Sum([*n, w]) <= devices)
    milli = [sum(c * s for c, s in zip(p, sizes, strict=True)) for p in patterns]
    lp.Maximize(lp.Sum([m * v for m, v in zip(milli, n, strict=True)]) + MILLI * w)
    if lp.Solve() != pywraplp.Solver.OPTIMAL:
        return trivial
    # round up: solver tolerances must not make the bound smaller than the true optimum
    value = float(lp.Objective().Value())
    return min(trivial, math.ceil(value - 1e-9))
