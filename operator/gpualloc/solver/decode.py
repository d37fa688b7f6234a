"""Turn per-(shape, class) counts into replicas on named nodes."""

from __future__ import annotations

from collections import defaultdict

from gpualloc.model import Placement
from gpualloc.solver.cpsat import Solution
from gpualloc.solver.instance import Instance
from gpualloc.solver.topology import Domain, effective, keys_of, node_domain


def _node_slots(inst: Instance, sol: Solution) -> dict[tuple[int, int], list[str]]:
    """Best-fit decreasing inside each class: the packing the class constraints promise.
    (shape, class) -> the node of each replica."""
    by_class: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for (s, k), count in sol.counts.items():
        by_class[k].append((s, count))
    slots: dict[tuple[int, int], list[str]] = defaultdict(list)
    for k, items in by_class.items():
        cls = inst.classes[k]
        if cls.size == 1:  # the model's sums are exact for one node
            for s, count in items:
                slots[s, k].extend([cls.representative.name] * count)
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
                slots[s, k].append(node)
    return slots


def decode(inst: Instance, sol: Solution) -> tuple[list[Placement], set[int]]:
    """All placements (kept running replicas and new ones) and the jobs given new replicas."""
    placements: list[Placement] = []
    # with queues, replicas have types (guaranteed from level i of their queue's path up):
    # a job's replicas of each type take that type's slots; without, everything is type 0
    slots: dict[tuple[int, int], list[str]] = defaultdict(list)  # (shape, type) -> nodes
    # shapes with spec.topology: (shape, domain) -> nodes; each job takes its domains' share
    in_domain: dict[tuple[int, Domain], list[str]] = defaultdict(list)
    for (s, k), nodes in _node_slots(inst, sol).items():
        req = inst.shapes[s].key.topology
        if req:
            keys = keys_of(effective(req, inst.levels), inst.levels)
            in_domain[s, node_domain(inst.classes[k].representative, keys)].extend(nodes)
            continue
        start = 0
        for t, count in enumerate(sol.slot_types.get((s, k), [len(nodes)])):
            slots[s, t].extend(nodes[start : start + count])
            start += count
    for shape in [*slots.values(), *in_domain.values()]:
        shape.sort()  # keep a gang's workers on neighbouring nodes
    cursor: dict[tuple[int, int], int] = defaultdict(int)
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
        if count and inst.shapes[state.shape].key.topology:
            placed_jobs.add(j)
            for d, of_domain in sorted(sol.domain_replicas.get(j, {}).items(), key=str):
                taken = in_domain[state.shape, d][:of_domain]
                del in_domain[state.shape, d][:of_domain]
                placements.extend(
                    Placement(job.key, job.kind, next(spare), node, job.gpus_per_replica)
                    for node in taken
                )
        elif count:
            placed_jobs.add(j)
            for t, of_type in enumerate(sol.replica_types.get(j, [count])):
                start = cursor[state.shape, t]
                for node in slots[state.shape, t][start : start + of_type]:
                    placements.append(
                        Placement(job.key, job.kind, next(spare), node, job.gpus_per_replica)
                    )
                cursor[state.shape, t] = start + of_type
    placements.sort(key=lambda p: (p.job, p.replica))
    return placements, placed_jobs


__all__ = ["decode"]
