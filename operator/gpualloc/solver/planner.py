"""The planner: snapshot + policy in, plan out. Pure; no Kubernetes, no I/O."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from gpualloc.model import Eviction, Job, Placement, Plan, Policy, Snapshot, Unscheduled
from gpualloc.solver import queue_report
from gpualloc.solver.baselines import plan_greedy
from gpualloc.solver.cpsat import AllocationModel, Solution
from gpualloc.solver.decode import decode
from gpualloc.solver.explain import Explainer
from gpualloc.solver.instance import Instance, build_instance
from gpualloc.solver.queues import QueueTree
from gpualloc.solver.shortcut import greedy_is_optimal
from gpualloc.solver.topology import respects_required


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
    if snapshot.queues:
        return _plan_with_queues(snapshot, policy, previous, started)
    inst = build_instance(snapshot, policy)
    greedy = plan_greedy(snapshot, "best-fit", explain=False, inst=inst)
    proven = greedy_is_optimal(inst, greedy, policy)
    if proven is not None:  # CP-SAT would return a plan equal to it in every objective
        sol = proven
        placements, placed = list(greedy.placements), set(proven.new_replicas)
    else:
        model = AllocationModel(inst, policy)
        # Warm start: the previous plan keeps re-solves from churning; without one, greedy
        # best-fit gives a good first solution.
        model.hint(*_hint_from(previous or greedy, inst))
        sol = model.solve()
        placements, placed = decode(inst, sol)
    # If the time limit cut the solve short before the lower priority levels were optimized,
    # the result can be lexicographically worse than best-fit: then best-fit it is.
    levels = sorted({j.priority for j in snapshot.jobs}, reverse=True)
    # Moves must buy a strictly better plan than the best one known without them.
    by_greedy = _by_level(greedy.placements, snapshot, levels)
    by_plan = _by_level(placements, snapshot, levels)
    worse = by_greedy > by_plan or (bool(sol.moved) and not by_plan > by_greedy)
    # best-fit knows nothing of spec.topology: never its plan when it breaks a required domain
    nodes = {n.name: n for n in snapshot.nodes}
    worse = worse and respects_required(
        snapshot.jobs, greedy.placements, nodes, policy.topology_levels
    )
    if worse:
        placements = list(greedy.placements)
        sol.evicted, sol.moved, sol.moves_status = set(), set(), ""
        sol.status = "FEASIBLE"
        placed = _newly_placed(inst, placements)

    jobs_by_key = {j.key: j for j in snapshot.jobs}
    explainer = Explainer(
        snapshot.nodes,
        inst.free_by_node,
        placements,
        jobs_by_key,
        sol.status,
        policy.topology_levels,
    )
    evictions = []
    unscheduled = []
    for j, state in enumerate(inst.jobs):
        job = state.job
        if state.clone_of is not None:
            continue  # a move's copy: reported with the move
        if j in sol.moved:
            evictions.append(_move(job, snapshot, placements, jobs_by_key, sol.moves_status))
        elif j in sol.evicted:
            evictions.append(
                Eviction(job.key, f"preempted (priority {job.priority}) for higher-priority jobs")
            )
            unscheduled.append(Unscheduled(job.key, "preempted; waits to be placed again"))
        elif not state.running and j not in placed and job.replicas > 0:
            reason = explainer.why(job, state.lo or job.min_replicas)
            unscheduled.append(Unscheduled(job.key, reason))
    return replace(
        _result(sol, started, placements, evictions, unscheduled), moves_status=sol.moves_status
    )


def _move(
    job: Job,
    snapshot: Snapshot,
    placements: Sequence[Placement],
    jobs: Mapping[str, Job],
    status: str,
) -> Eviction:
    """A moved job: where its pods go in this plan, and whom its old nodes serve."""
    to = tuple(sorted({p.node for p in placements if p.job == job.key}))
    served = queue_report.beneficiaries(job.key, snapshot.pods, placements, jobs)
    names = tuple(sorted({b.key for b in served if b.key != job.key}))
    reason = f"moved to {', '.join(to)} to make room for {', '.join(names) or 'waiting jobs'}"
    if status == "OPTIMAL":
        reason += " (the moves losing the least work, proven)"
    return Eviction(job.key, reason, moved_to=to, for_jobs=names)


def _result(
    sol: Solution,
    started: float,
    placements: Sequence[Placement],
    evictions: Sequence[Eviction],
    unscheduled: Sequence[Unscheduled],
) -> Plan:
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


def _plan_with_queues(
    snapshot: Snapshot, policy: Policy, previous: Plan | None, started: float
) -> Plan:
    """The same plan with GPUQueues: guarantees, fair borrowing and reclaim first (see
    solver/queue_model.py), queue-aware reasons, and holds against giving back capacity."""
    tree = QueueTree(snapshot.queues, {n.product for n in snapshot.nodes})
    refused = queue_report.unqueued(snapshot.jobs, tree)
    dropped = {u.job for u in refused}
    holds = previous.holds if previous is not None else {}
    planned = queue_report.with_holds(
        replace(snapshot, jobs=tuple(j for j in snapshot.jobs if j.key not in dropped)), holds
    )
    inst = build_instance(planned, policy)
    model = AllocationModel(inst, policy)
    hint = previous or plan_greedy(planned, "best-fit", explain=False, inst=inst)
    model.hint(*_hint_from(hint, inst))
    sol = model.solve()
    placements, placed = decode(inst, sol)
    if sol.status == "UNKNOWN":  # no plan in the time limit: what no quota rule can refuse
        placements = _within_nominal(planned, tree, inst)
        placed = _newly_placed(inst, placements)

    jobs_by_key = {j.key: j for j in planned.jobs}
    explainer = Explainer(
        planned.nodes,
        inst.free_by_node,
        placements,
        jobs_by_key,
        sol.status,
        policy.topology_levels,
    )
    view = queue_report.QueueView(tree, planned, placements)
    waiting = [  # jobs that wait and could run somewhere: who a job waits behind
        s.job
        for j, s in enumerate(inst.jobs)
        if not s.running
        and j not in placed
        and s.job.replicas > 0
        and not explainer.never_fits(s.job)
    ]
    evictions = []
    unscheduled = list(refused)
    for j, state in enumerate(inst.jobs):
        job = state.job
        if j in sol.evicted:
            made_room = queue_report.beneficiaries(job.key, planned.pods, placements, jobs_by_key)
            evictions.append(Eviction(job.key, queue_report.eviction_reason(job, made_room)))
            unscheduled.append(Unscheduled(job.key, "preempted; waits to be placed again"))
        elif not state.running and j not in placed and job.replicas > 0:
            if job.key in holds:
                hold = holds[job.key]
                nodes = ", ".join(hold.nodes)
                reason = f"preempted from {nodes}: kept off {nodes} until " + (
                    f"{', '.join(hold.for_jobs) or 'the jobs placed there'} run there"
                )
                queue_part = ""
            else:
                reason = explainer.why(job, state.lo or job.min_replicas)
                never = explainer.never_fits(job)  # whatever the queue allows
                queue_part = "" if never else queue_report.why_waiting(job, tree, view, waiting)
            unscheduled.append(Unscheduled(job.key, queue_part + reason))
    placed_keys = {p.job for p in placements}
    return replace(
        _result(sol, started, placements, evictions, unscheduled),
        queues=queue_report.reports(tree, view, placed_keys, [u.job for u in unscheduled]),
        holds=queue_report.next_holds(planned, holds, evictions, placements),
    )


def _newly_placed(inst: Instance, placements: Sequence[Placement]) -> set[int]:
    """The jobs (by index) given more replicas than already run."""
    counts = Counter(p.job for p in placements)
    return {j for j, s in enumerate(inst.jobs) if counts[s.job.key] > len(s.running)}


def _within_nominal(snapshot: Snapshot, tree: QueueTree, inst: Instance) -> list[Placement]:
    """What no quota rule can refuse, for a round whose solve found no plan in time: best
    fit into free GPUs, evicting nothing, of the waiting jobs (in planning order) that every
    nominal on their queue's path still holds, counted against every quota entry whose
    products they may use."""
    running = [
        Placement(s.job.key, s.job.kind, p.replica or 0, p.node, p.gpus)
        for s in inst.jobs
        for p in s.running
    ]
    view = queue_report.QueueView(tree, snapshot, running)  # what each subtree holds now
    added: dict[tuple[str, str], int] = defaultdict(int)
    keep = {s.job.key for s in inst.jobs if s.running}
    for state in inst.jobs:
        job = state.job
        if state.running or state.clone_of is not None or job.queue not in tree.nodes:
            continue
        need = job.replicas * job.gpus_per_replica
        products = frozenset(job.requirements.products) or tree.products
        hit = [
            (q, b)
            for q in tree.nodes[job.queue].path
            for b in tree.nodes[q].buckets
            if b.products & products
        ]
        if (
            need
            and hit
            and all(view.used(q, b) + added[q, b.key] + need <= b.nominal for q, b in hit)
        ):
            for q, b in hit:
                added[q, b.key] += need
            keep.add(job.key)
    jobs = tuple(j for j in snapshot.jobs if j.key in keep)
    return list(plan_greedy(replace(snapshot, jobs=jobs), "best-fit", explain=False).placements)
