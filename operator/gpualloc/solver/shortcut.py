"""When greedy best-fit is provably the plan CP-SAT would return: then CP-SAT need not run.

Most rounds of a busy cluster change little: a job arrives that fits nowhere, or a job leaves
and best-fit places every waiting job that fits. CP-SAT's objectives (solver/cpsat.py), in
order, are then already at their optimum in greedy's plan when all of these hold:
- every job that has any variable in the model (a pending replica and a node class it could
  use) gets all its replicas: GPUs per priority level and the age bonus are at their maximum;
- so no eviction can buy anything: 0 evictions is optimal;
- no job asks for spec.topology (its domain stages are not checked here);
- no new replica goes to an empty node: every node that was whole stays whole;
- every new replica is on a node with the fewest free GPUs among the nodes one replica of it
  fits on (eligible, GPUs, CPU, memory) before the plan: the best-fit term's per-replica
  upper bound, so the sum is at its maximum;
- every node has the same throughput value: the throughput term is the same for every plan
  that places the same replicas.
Jobs without a node class are not in the model at all, in either plan. Plans equal in every
objective are the same plan by the lexicographic order; which of several equal nodes a
replica gets may differ (as it may between two CP-SAT runs).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from gpualloc.model import Job, Node, Plan, Policy
from gpualloc.solver.capacity import fitting
from gpualloc.solver.cpsat import Solution
from gpualloc.solver.instance import Instance


def greedy_is_optimal(inst: Instance, greedy: Plan, policy: Policy) -> Solution | None:
    """CP-SAT's solution figures for greedy's plan if it is optimal in every objective (see
    the module docstring), else None."""
    if any(shape.key.topology for shape in inst.shapes):
        return None
    if any(p.replica is None for s in inst.jobs for p in s.running):
        return None  # greedy numbers such pods 0: new and running ones could not be told apart
    nodes = [n for cls in inst.classes for n in cls.nodes]
    if len({policy.throughput.get(n.product, 1.0) for n in nodes}) > 1:
        return None
    empty = {n.name for cls in inst.classes if cls.fully_free for n in cls.nodes}
    running = {(p.job, p.node, p.replica) for s in inst.jobs for p in s.running}
    new = [p for p in greedy.placements if (p.job, p.node, p.replica) not in running]
    placed = Counter(p.job for p in new)
    for state in inst.jobs:
        if state.clone_of is not None:
            continue  # a move's copy: with every waiting job placed, no move buys anything
        if state.hi > 0 and inst.shapes[state.shape].classes and placed[state.job.key] < state.hi:
            return None
    by_key = {s.job.key: s.job for s in inst.jobs}
    fewest: dict[str, int] = {}  # job -> fewest free GPUs of a node one replica fits on
    for p in new:
        if p.node in empty:
            return None
        if p.job not in fewest:
            fewest[p.job] = _fewest_free(inst, by_key[p.job], nodes)
        if inst.free_by_node[p.node].gpus != fewest[p.job]:
            return None
    held: dict[int, int] = defaultdict(int)
    for state in inst.jobs:
        held[state.job.priority] += state.running_gpus
    for p in new:
        held[by_key[p.job].priority] += p.gpus
    total = float(sum(held.values()))
    sol = Solution("OPTIMAL", total, total, 0.0)
    sol.level_bounds = {level: float(gpus) for level, gpus in held.items()}
    sol.new_replicas = {j: placed[s.job.key] for j, s in enumerate(inst.jobs) if placed[s.job.key]}
    return sol


def _fewest_free(inst: Instance, job: Job, nodes: list[Node]) -> int:
    free = inst.free_by_node
    return min((free[n.name].gpus for n in fitting(free, job, nodes)), default=-1)
