"""Topology-aware best-fit: the CP-SAT plan's warm start when jobs ask for spec.topology.

Topology-unaware best-fit straddles domains, so as a hint it is infeasible for every job with
a required level and CP-SAT would start from nothing. Here jobs go in planning order; a job
with a required level goes to the domain that holds it with the fewest spare slots (best fit
of domains), a preferred level is filled in as few domains as it can (one that holds it all,
the tightest, else the roomiest first); inside that, node by node best-fit. No evictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gpualloc.model import NodeRequirements, TopologyRequest
from gpualloc.solver.eligibility import eligible
from gpualloc.solver.instance import Instance, JobState
from gpualloc.solver.topology import allowed, effective, node_domain, scope

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class _Cluster:
    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.names = sorted(inst.free_by_node)
        self.nodes = [inst.node_by_name[n] for n in self.names]
        free = [inst.free_by_node[n] for n in self.names]
        self.gpu = np.array([f.gpus for f in free], dtype=np.int64)
        self.cpu = np.array([f.cpu_milli for f in free], dtype=np.int64)
        self.mem = np.array([f.memory_mib for f in free], dtype=np.int64)
        self.index = {n: i for i, n in enumerate(self.names)}
        self._masks: dict[tuple[NodeRequirements, TopologyRequest], BoolArray] = {}
        self._domains: dict[tuple[str, ...], IntArray] = {}

    def mask(self, state: JobState) -> BoolArray:
        job = state.job
        key = (job.requirements, job.topology)
        if key not in self._masks:
            levels = self.inst.levels
            self._masks[key] = np.array(
                [
                    eligible(job.requirements, n) and allowed(job.topology, n, levels)
                    for n in self.nodes
                ],
                dtype=np.bool_,
            )
        return self._masks[key]

    def domains(self, level: str) -> IntArray:
        """Domain number of each node at `level` (a node without the labels: its own)."""
        keys = scope(level, self.inst.levels)
        if keys not in self._domains:
            ids: dict[object, int] = {}
            self._domains[keys] = np.array(
                [ids.setdefault(node_domain(n, keys), len(ids)) for n in self.nodes],
                dtype=np.int64,
            )
        return self._domains[keys]

    def slots(self, state: JobState, mask: BoolArray) -> IntArray:
        """Replicas of the job each node can take now (0 where masked out)."""
        job = state.job
        fit = self.gpu // job.gpus_per_replica
        if job.cpu_milli:
            fit = np.minimum(fit, self.cpu // job.cpu_milli)
        if job.memory_mib:
            fit = np.minimum(fit, self.mem // job.memory_mib)
        return np.where(mask, fit, 0)

    def take(self, state: JobState, mask: BoolArray, count: int) -> list[int]:
        """Up to `count` replicas on the masked nodes, each on the fullest node it fits."""
        job = state.job
        chosen: list[int] = []
        for _ in range(count):
            fits = (
                mask
                & (self.gpu >= job.gpus_per_replica)
                & (self.cpu >= job.cpu_milli)
                & (self.mem >= job.memory_mib)
            )
            if not fits.any():
                break
            i = int(np.argmin(np.where(fits, self.gpu, np.iinfo(np.int64).max)))
            self._add(state, i, -1)
            chosen.append(i)
        return chosen

    def give_back(self, state: JobState, chosen: Sequence[int]) -> None:
        for i in chosen:
            self._add(state, i, 1)

    def _add(self, state: JobState, i: int, sign: int) -> None:
        self.gpu[i] += sign * state.job.gpus_per_replica
        self.cpu[i] += sign * state.job.cpu_milli
        self.mem[i] += sign * state.job.memory_mib


def _per_domain(cluster: _Cluster, level: str, slots: IntArray) -> IntArray:
    ids = cluster.domains(level)
    return np.bincount(ids, weights=slots, minlength=int(ids.max()) + 1).astype(np.int64)


def _held_domains(cluster: _Cluster, state: JobState, level: str) -> set[int]:
    ids = cluster.domains(level)
    return {int(ids[cluster.index[p.node]]) for p in state.running if p.node in cluster.index}


def _fewest_domains(
    cluster: _Cluster, state: JobState, mask: BoolArray, level: str, count: int
) -> list[int]:
    """`count` replicas in as few domains of `level` as greedily found."""
    room = _per_domain(cluster, level, cluster.slots(state, mask))
    ids = cluster.domains(level)
    held = _held_domains(cluster, state, level)
    whole = [d for d in range(len(room)) if room[d] >= count]
    if whole:  # one domain holds it all: the tightest, one the job is already in first
        order = [min(whole, key=lambda d: (d not in held, room[d]))]
    else:
        order = sorted(range(len(room)), key=lambda d: (d not in held, -room[d]))
    chosen: list[int] = []
    for d in order:
        if len(chosen) >= count or room[d] == 0:
            break
        chosen += cluster.take(state, mask & (ids == d), count - len(chosen))
    return chosen


def _place(cluster: _Cluster, state: JobState, req: TopologyRequest) -> list[int]:
    mask = cluster.mask(state)
    if req.required is None:
        if req.preferred is None:
            return cluster.take(state, mask, state.hi)
        return _fewest_domains(cluster, state, mask, req.preferred, state.hi)
    room = _per_domain(cluster, req.required, cluster.slots(state, mask))
    held = _held_domains(cluster, state, req.required)
    fits = [d for d in range(len(room)) if room[d] >= state.lo and (not held or d in held)]
    if not fits:
        return []
    # the domain holding the most replicas (up to all), then the tightest
    best = min(fits, key=lambda d: (-min(int(room[d]), state.hi), room[d]))
    inside = mask & (cluster.domains(req.required) == best)
    if req.preferred is None:
        return cluster.take(state, inside, state.hi)
    return _fewest_domains(cluster, state, inside, req.preferred, state.hi)


def greedy_placements(inst: Instance) -> dict[int, list[str]]:
    """Job index -> nodes of its new replicas (a gang below its minimum gets none)."""
    cluster = _Cluster(inst)
    placed: dict[int, list[str]] = {}
    for j, state in enumerate(inst.jobs):
        if state.hi == 0 or state.clone_of is not None or not inst.shapes[state.shape].classes:
            continue  # (a move's copy is placed only by the CP-SAT plan)
        chosen = _place(cluster, state, effective(state.job.topology, inst.levels))
        if len(chosen) < state.lo:
            cluster.give_back(state, chosen)
        elif chosen:
            placed[j] = [cluster.names[i] for i in chosen]
    return placed
