"""Greedy, gang-aware baselines with the planner's inputs and outputs, for benchmarks.

Jobs go one at a time, highest priority (then oldest) first, as the greedy schedulers
place them; a gang that cannot reach its minimum is rolled back whole. No preemption.
- first-fit: the first node (by name) with room;
- best-fit: the node left with the fewest free GPUs (bin-packing, MostAllocated);
- spread: the node with the most free GPUs (kube-scheduler's default LeastAllocated).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from gpualloc.model import Placement, Plan, Policy, Snapshot, Unscheduled
from gpualloc.solver.capacity import free_capacity, usage_by_node
from gpualloc.solver.eligibility import eligible
from gpualloc.solver.explain import Explainer
from gpualloc.solver.instance import Instance, build_instance

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Chooser = Callable[[BoolArray, IntArray], int]


def _first_fit(candidates: BoolArray, free: IntArray) -> int:
    return int(np.argmax(candidates))


def _best_fit(candidates: BoolArray, free: IntArray) -> int:
    return int(np.argmin(np.where(candidates, free, np.iinfo(np.int64).max)))


def _spread(candidates: BoolArray, free: IntArray) -> int:
    return int(np.argmax(np.where(candidates, free, -1)))


BASELINES: dict[str, Chooser] = {
    "first-fit": _first_fit,
    "best-fit": _best_fit,
    "spread": _spread,
}


def plan_greedy(
    snapshot: Snapshot, policy_name: str, explain: bool = True, inst: Instance | None = None
) -> Plan:
    """The baseline's plan; `explain=False` skips the reasons (for use as a warm start).
    `inst`: the planner's instance of the same snapshot, so it is not built twice."""
    choose = BASELINES[policy_name]
    started = time.monotonic()
    nodes = sorted(snapshot.nodes, key=lambda n: n.name)
    usage = usage_by_node(snapshot.pods)
    caps = [free_capacity(n, usage.get(n.name)) for n in nodes]
    gpu = np.array([c.gpus for c in caps], dtype=np.int64)
    cpu = np.array([c.cpu_milli for c in caps], dtype=np.int64)
    mem = np.array([c.memory_mib for c in caps], dtype=np.int64)
    free_before = {n.name: c for n, c in zip(nodes, caps, strict=True)}
    masks: dict[object, BoolArray] = {}
    # same bookkeeping (running replicas, gang minimums, order) as the planner
    inst = inst if inst is not None else build_instance(snapshot, Policy(preemption=False))
    placements: list[Placement] = []
    waiting: list[tuple[int, int]] = []  # (job index, gang minimum)
    for index, state in enumerate(inst.jobs):
        job = state.job
        used = {p.replica for p in state.running if p.replica is not None}
        for pod in state.running:
            placements.append(Placement(job.key, job.kind, pod.replica or 0, pod.node, pod.gpus))
        if state.hi == 0 or state.clone_of is not None:  # a move's copy is the planner's
            continue
        req = job.requirements
        if req not in masks:
            masks[req] = np.array([eligible(req, n) for n in nodes], dtype=np.bool_)
        mask = masks[req]
        chosen: list[int] = []
        for _ in range(state.hi):
            candidates = (
                mask
                & (gpu >= job.gpus_per_replica)
                & (cpu >= job.cpu_milli)
                & (mem >= job.memory_mib)
            )
            if not candidates.any():
                break
            i = choose(candidates, gpu)
            gpu[i] -= job.gpus_per_replica
            cpu[i] -= job.cpu_milli
            mem[i] -= job.memory_mib
            chosen.append(i)
        if len(chosen) < state.lo:  # gang-aware: roll back a partial gang
            for i in chosen:
                gpu[i] += job.gpus_per_replica
                cpu[i] += job.cpu_milli
                mem[i] += job.memory_mib
            chosen = []
        spare = (r for r in range(job.replicas + len(state.running)) if r not in used)
        for i in chosen:
            placements.append(
                Placement(job.key, job.kind, next(spare), nodes[i].name, job.gpus_per_replica)
            )
        if explain and not chosen and not state.running:
            waiting.append((index, state.lo))
    explainer = Explainer(
        nodes, free_before, placements, {j.key: j for j in snapshot.jobs}, "HEURISTIC"
    )
    unscheduled = [
        Unscheduled(inst.jobs[i].job.key, explainer.why(inst.jobs[i].job, lo)) for i, lo in waiting
    ]
    allocated = float(sum(p.gpus for p in placements))
    return Plan(
        status="HEURISTIC",
        objective=allocated,
        bound=allocated,
        solve_seconds=time.monotonic() - started,
        placements=tuple(sorted(placements, key=lambda p: (p.job, p.replica))),
        unscheduled=tuple(sorted(unscheduled, key=lambda u: u.job)),
    )
