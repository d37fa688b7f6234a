"""Turn per-(shape, class) counts into replicas on named nodes."""

from __future__ import annotations

from collections import defaultdict

from gpualloc.model import Placement
from gpualloc.solver.cpsat import Solution
from gpualloc.solver.instance import Instance


def _node_slots(inst: Instance, sol: Solution) -> dict[int, list[str]]:
    """Best-fit decreasing inside each class: the packing the class constraints promise."""
    by_class: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for (s, k), count in sol.counts.items():
        by_class[k].append((s, count))
    slots: dict[int, list[str]] = defaultdict(list)
    for k, items in by_class.items():
        cls = inst.classes[k]
        if cls.size == 1:  # the model's sums are exact for one node
            for s, count in items:
                slots[s].extend([cls.representative.name] * count)
            continue
        # identical nodes, CPU and memory proven non-binding: pack by free GPUs only
        buckets: dict[int, list[str]] = {cls.free.gpus: [n.name for n in reversed(cls.nodes)]}
        for s, count in sorted(items, key=lambda item: -inst.shapes[item[0]].key.gpus):
            gpus = inst.shapes[s].key.gpus
            for _ in range(count):
                free = min((r for r, names in buckets.items() if r >= gpus and names), default=None)
                if free is None:
                    raise AssertionError(f"class {k} cannot pack shape {s}: model not exact")
                node = buckets[free].pop()
                buckets.setdefault(free - gpus, []).append(node)
                slots[s].append(node)
    return slots


def decode(inst: Instance, sol: Solution) -> tuple[list[Placement], set[int]]:
    """All placements (kept running replicas and new ones) and the jobs given new replicas."""
    placements: list[Placement] = []
    slots = _node_slots(inst, sol)
    for shape in slots.values():
        shape.sort()  # keep a gang's workers on neighbouring nodes
    cursor: dict[int, int] = defaultdict(int)
    placed_jobs: set[int] = set()
    for j, state in enumerate(inst.jobs):
        job = state.job
        if j in sol.evicted:
            continue
        used = {p.replica for p in state.running if p.replica is not None}
        spare = (i for i in range(job.replicas + len(state.running)) if i not in used)
        for pod in state.running:
            replica = pod.replica if pod.replica is not None else next(spare)
            placements.append(Placement(job.key, job.kind, replica, pod.node, pod.gpus))
        count = sol.new_replicas.get(j, 0)
        if count:
            placed_jobs.add(j)
            start = cursor[state.shape]
            for node in slots[state.shape][start : start + count]:
                placements.append(
                    Placement(job.key, job.kind, next(spare), node, job.gpus_per_replica)
                )
            cursor[state.shape] = start + count
    placements.sort(key=lambda p: (p.job, p.replica))
    return placements, placed_jobs


__all__ = ["decode"]
