"""A proven upper bound on the GPU milli any policy can allocate to a set of pods (pure).

An LP that every real placement satisfies, so its optimum bounds every policy, online or
offline (arrival order, and even whether a pod that fits is placed, are forgotten):
100 - bound / capacity x 100 is a floor on unallocated GPU %.

Nodes are grouped into node types g (GPU model, GPUs, CPU, memory per node; N_g nodes,
D_g = N_g x GPUs devices). Pods are grouped into types k (CPU, memory, GPUs, milli,
allowed models) with c_k arrived pods; GPU pods only (CPU-only pods may be left out).

  a[k, g] >= 0   pods of type k placed on nodes of type g, only where one such node can
                 hold one such pod (model allowed by gpu_spec, CPU, memory, GPUs)
  n[p] >= 0      devices holding share pattern p (a multiset of share sizes <= 1000 milli)
  maximize  sum_kg milli_k a[k, g]
  s.t.  sum_g a[k, g] <= c_k                                           (pods arrived)
        sum_p count(p, s) n[p] = sum_{k share of size s, g} a[k, g]    (shares pack into
        sum_p n[p] + sum_{k whole, g} gpus_k a[k, g] <= devices         devices, overall)
        per node type g:
          sum_k cpu_k a[k, g] <= N_g cpu_g;  sum_k mem_k a[k, g] <= N_g mem_g
          devices for shares: sh_g >= share milli / 1000, sh_g >= shares over 500 milli
          (no two share a device); sh_g + sum_{k whole} gpus_k a[k, g] <= D_g
          sum_{k whole, gpus_k > GPUs_g / 2} a[k, g] <= N_g   (no two on one node)

The first two rows are the pattern LP of earlier rounds (device packing of shares, Gilmore-
Gomory); the rest add nodes, GPU models (per-model capacity and gpu_spec as assignment
constraints), CPU and memory (each node type's CPU as an aggregate knapsack).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ortools.linear_solver import pywraplp

from gpualloc.model.devices import MILLI, GpuNode, PodRequest


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


def allocation_upper_bound(pods: Sequence[PodRequest], nodes: Sequence[GpuNode]) -> int:
    """Most GPU milli of `pods` that `nodes` could hold (a proven upper bound): the optimum
    of the LP in the module docstring, to the whole milli."""
    node_types = Counter((n.model, n.gpus, n.cpu_milli, n.memory_mib) for n in nodes if n.gpus)
    pod_types = Counter(p.shape for p in pods if p.gpu_request_milli)
    devices = sum(n.gpus for n in nodes)
    total = sum(p.gpu_request_milli for p in pods)
    trivial = min(total, devices * MILLI)
    if not pod_types or not devices:
        return trivial
    lp = pywraplp.Solver.CreateSolver("GLOP")
    a: dict[tuple[int, int], pywraplp.Variable] = {}
    kinds = list(pod_types)
    groups = list(node_types)
    for k, (cpu, mem, num, _, spec) in enumerate(kinds):
        for g, (model, gpus, node_cpu, node_mem) in enumerate(groups):
            fits = cpu <= node_cpu and mem <= node_mem and num <= gpus
            if fits and (not spec or model in spec):
                a[k, g] = lp.NumVar(0.0, pod_types[kinds[k]], f"a{k}_{g}")
    for k, kind in enumerate(kinds):
        mine = [v for (kk, _), v in a.items() if kk == k]
        if mine:
            lp.Add(lp.Sum(mine) <= pod_types[kind])
    # shares pack into devices (the pattern LP), over the whole cluster
    sizes = sorted({kind[3] for kind in kinds if kind[2] == 1 and kind[3] < MILLI})
    patterns = _patterns(sizes)
    n = [lp.NumVar(0.0, devices, f"n{i}") for i in range(len(patterns))]
    for j, size in enumerate(sizes):
        used = [p[j] * v for p, v in zip(patterns, n, strict=True) if p[j]]
        placed = [v for (k, _), v in a.items() if _is_share(kinds[k]) and kinds[k][3] == size]
        lp.Add(lp.Sum(used) == lp.Sum(placed))
    whole = [kinds[k][2] * v for (k, _), v in a.items() if not _is_share(kinds[k])]
    lp.Add(lp.Sum([*n, *whole]) <= devices)
    for g, (_, gpus, node_cpu, node_mem) in enumerate(groups):
        count = node_types[groups[g]]
        here = [(kinds[k], v) for (k, gg), v in a.items() if gg == g]
        if not here:
            continue
        lp.Add(lp.Sum([kind[0] * v for kind, v in here]) <= count * node_cpu)
        lp.Add(lp.Sum([kind[1] * v for kind, v in here]) <= count * node_mem)
        shares = [(kind, v) for kind, v in here if _is_share(kind)]
        wholes = [(kind, v) for kind, v in here if not _is_share(kind)]
        share_devices = lp.NumVar(0.0, count * gpus, f"sh{g}")
        lp.Add(share_devices * MILLI >= lp.Sum([kind[3] * v for kind, v in shares]))
        lp.Add(share_devices >= lp.Sum([v for kind, v in shares if 2 * kind[3] > MILLI]))
        lp.Add(share_devices + lp.Sum([kind[2] * v for kind, v in wholes]) <= count * gpus)
        big = [v for kind, v in wholes if 2 * kind[2] > gpus]
        if big:
            lp.Add(lp.Sum(big) <= count)
    lp.Maximize(lp.Sum([kinds[k][2] * kinds[k][3] * v for (k, _), v in a.items()]))
    if lp.Solve() != pywraplp.Solver.OPTIMAL:
        return trivial
    # placed milli is a whole number no larger than the LP's true optimum, which solver
    # tolerances may understate by far less than a millionth
    value = float(lp.Objective().Value())
    return min(trivial, math.floor(value + 1e-6 * max(value, 1.0)))


def _is_share(kind: tuple[int, int, int, int, tuple[str, ...]]) -> bool:
    return kind[2] == 1 and kind[3] < MILLI
