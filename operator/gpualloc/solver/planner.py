"""The planner: snapshot + policy in, plan out. Pure; no Kubernetes, no I/O."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence

from gpualloc.model import Eviction, Placement, Plan, Policy, Snapshot, Unscheduled
from gpualloc.solver.baselines import plan_greedy
from gpualloc.solver.cpsat import AllocationModel
from gpualloc.solver.decode import decode
from gpualloc.solver.explain import Explainer
from gpualloc.solver.instance import Instance, build_instance


def _hint_from(previous: Plan, inst: Instance) -> tuple[dict[tuple[int, int], int], dict[int, int]]:
    """Map an earlier plan's new placements onto this instance's variables."""
    index = {s.job.key: j for j, s in enumerate(inst.jobs)}
    class_of = {n.name: k for k, c in enumerate(inst.classes) for n in c.nodes}
    running = {(p.job, p.node) for s in inst.jobs for p in s.running if p.job}
    counts: dict[tuple[int, int], int] = defaultdict(int)
    new: dict[int, int] = defaultdict(int)
    for p in previous.placements:
        j = index.get(p.job)
        if j is None or (p.job, p.node) in running or p.node not in class_of:
            continue
        counts[inst.jobs[j].shape, class_of[p.node]] += 1
        new[j] += 1
    return counts, new


def _by_level(placements: Sequence[Placement], snapshot: Snapshot, levels: list[int]) -> list[int]:
    """GPUs per priority level, highest first: compared as a tuple it is objective level 1."""
    priority = {j.key: j.priority for j in snapshot.jobs}
    gpus: Counter[int] = Counter()
    for p in placements:
        gpus[priority[p.job]] += p.gpus
    return [gpus[level] for level in levels]


def plan(snapshot: Snapshot, policy: Policy | None = None, previous: Plan | None = None) -> Plan:
    """The globally best placement for `snapshot`, its proven bound, and reasons for the rest."""
    policy = policy or Policy()
    started = time.monotonic()
    inst = build_instance(snapshot, policy)
    model = AllocationModel(inst, policy)
    # Warm start: the previous plan keeps re-solves from churning; without one, greedy
    # best-fit gives a good first solution.
    greedy = plan_greedy(snapshot, "best-fit", explain=False, inst=inst)
    model.hint(*_hint_from(previous or greedy, inst))
    sol = model.solve()
    placements, placed = decode(inst, sol)
    # If the time limit cut the solve short before the lower priority levels were optimized,
    # the result can be lexicographically worse than best-fit: then best-fit it is.
    levels = sorted({j.priority for j in snapshot.jobs}, reverse=True)
    if _by_level(greedy.placements, snapshot, levels) > _by_level(placements, snapshot, levels):
        placements = list(greedy.placements)
        sol.evicted = set()
        sol.status = "FEASIBLE"
        counts = Counter(p.job for p in placements)
        placed = {j for j, s in enumerate(inst.jobs) if counts[s.job.key] > len(s.running)}

    jobs_by_key = {j.key: j for j in snapshot.jobs}
    explainer = Explainer(snapshot.nodes, inst.free_by_node, placements, jobs_by_key, sol.status)
    evictions = []
    unscheduled = []
    for j, state in enumerate(inst.jobs):
        job = state.job
        if j in sol.evicted:
            evictions.append(
                Eviction(job.key, f"preempted (priority {job.priority}) for higher-priority jobs")
            )
            unscheduled.append(Unscheduled(job.key, "preempted; waits to be placed again"))
        elif not state.running and j not in placed and job.replicas > 0:
            reason = explainer.why(job, state.lo or job.min_replicas)
            unscheduled.append(Unscheduled(job.key, reason))
    return Plan(
        status=sol.status,
        objective=sol.objective,
        bound=sol.bound,
        solve_seconds=time.monotonic() - started,
        placements=tuple(placements),
        evictions=tuple(evictions),
        unscheduled=tuple(sorted(unscheduled, key=lambda u: u.job)),
        level_bounds=sol.level_bounds,
    )
