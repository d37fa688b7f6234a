"""The CP-SAT model over an aggregated `Instance`.

Variables (all integer):
  z[g]    jobs of group g placed (a group: pending fixed-size gangs of one shape, which are
          interchangeable, so one count replaces a variable per job; first in planning_order first)
  y[j]    new replicas of a job outside groups (elastic, or partly running): 0 or lo..hi
  p[j]    1 if that job gets any new replica
  e[j]    1 if running preemptible job j is evicted (whole gang)
  c[s, k] replicas of shape s placed on node class k
  u[k]    nodes used in an empty class k (the rest stay whole for large gangs)
and, for jobs with spec.topology, their replicas per domain (solver/topology.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from gpualloc.model import Policy
from gpualloc.solver.capacity import Free
from gpualloc.solver.instance import Instance, NodeClass, lost_gpu_seconds
from gpualloc.solver.lexicographic import Model, Objective, solve_lexicographic
from gpualloc.solver.queue_model import QueueModel
from gpualloc.solver.topology import Domain, TopologyModel, add_hints, groupable
from gpualloc.solver.topology_greedy import greedy_placements

GPU_LEVEL = "gpus@priority="
MOVED_WORK = "moved-work"  # its stage's status is the proof that no cheaper moves exist
# Fragmentation and throughput only break ties between equally good allocations: within 1%
# of their bound is good enough and keeps rounds short.
TIE_BREAK_GAP = 0.01
# Throughput values are relative (1.0 = baseline); scaled to integers for CP-SAT.
_THROUGHPUT_SCALE = 10


@dataclass
class _Group:
    shape: int
    size: int  # replicas per job
    jobs: list[int]  # job indexes, in planning_order (solver/order.py)


@dataclass
class Solution:
    status: str
    objective: float
    bound: float
    seconds: float
    new_replicas: dict[int, int] = field(default_factory=dict)  # job index -> count
    evicted: set[int] = field(default_factory=set)
    # (shape, class) -> replicas placed there
    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    # priority -> proven upper bound on GPUs held at that level (given the levels above)
    level_bounds: dict[int, float] = field(default_factory=dict)
    # with queues: replicas per type (guaranteed from level i of the queue's path up; the
    # last: not guaranteed), per (shape, class) and per job
    slot_types: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    replica_types: dict[int, list[int]] = field(default_factory=dict)
    moved: set[int] = field(default_factory=set)  # movable jobs moved (their copies placed)
    moves_status: str = ""  # status of the stage choosing the moves (OPTIMAL: proven cheapest)
    # with topology: new replicas per job and domain (see solver/topology.py)
    domain_replicas: dict[int, dict[Domain, int]] = field(default_factory=dict)


class AllocationModel:
    def __init__(self, inst: Instance, policy: Policy) -> None:
        self.inst = inst
        self.policy = policy
        self.model = Model()
        self.groups: list[_Group] = []
        self.z: dict[int, cp_model.IntVar] = {}
        self.y: dict[int, cp_model.IntVar] = {}
        self.p: dict[int, cp_model.IntVar] = {}
        self.e: dict[int, cp_model.IntVar] = {}
        self.c: dict[tuple[int, int], cp_model.IntVar] = {}
        self.c_max: dict[tuple[int, int], int] = {}
        self.u: dict[int, cp_model.IntVar] = {}
        self.moved: dict[int, cp_model.IntVar] = {}  # movable job -> 1 if moved (its copy placed)
        # with topology: the hinted plan, kept should the solver find none in its time
        self.fallback: dict[int, list[str]] | None = None
        self._add_job_variables()
        self._add_eviction_variables()
        self._add_count_variables()
        self._link_jobs_to_counts()
        # spec.topology: per-job domains (None when no job asks for topology)
        self.topology = (
            TopologyModel(self, inst.levels) if any(s.key.topology for s in inst.shapes) else None
        )
        # GPUQueues: guarantees, limits, fair borrowing, reclaim (None without queues)
        self.queues = QueueModel(self, inst.queues) if inst.queues else None
        self._add_class_capacity()
        self._add_eviction_limits()

    # -- variables ---------------------------------------------------------------------
    def _add_job_variables(self) -> None:
        grouped: dict[tuple[int, int], list[int]] = defaultdict(list)
        for j, state in enumerate(self.inst.jobs):
            if state.hi == 0 or not self.inst.shapes[state.shape].classes:
                continue
            request = self.inst.shapes[state.shape].key.topology
            fixed = state.lo == state.hi and not state.running and state.clone_of is None
            if fixed and groupable(request, self.inst.levels):
                grouped[state.shape, state.hi].append(j)  # jobs are in planning_order
                continue
            y = self.model.new_int_var(0, state.hi, f"y{j}")
            p = self.model.new_bool_var(f"p{j}")
            self.model.add(y >= state.lo * p)
            self.model.add(y <= state.hi * p)
            self.y[j], self.p[j] = y, p
        for (shape, size), jobs in grouped.items():
            g = len(self.groups)
            self.groups.append(_Group(shape, size, jobs))
            self.z[g] = self.model.new_int_var(0, len(jobs), f"z{g}")

    def _replicas_by_shape(self) -> dict[int, list[cp_model.LinearExprT]]:
        placed: dict[int, list[cp_model.LinearExprT]] = defaultdict(list)
        for j, y in self.y.items():
            placed[self.inst.jobs[j].shape].append(y)
        for g, z in self.z.items():
            placed[self.groups[g].shape].append(self.groups[g].size * z)
        return placed

    def _add_eviction_variables(self) -> None:
        useless = self._useless_victims()
        for j, state in enumerate(self.inst.jobs):
            if state.evictable and j not in useless:
                self.e[j] = self.model.new_bool_var(f"e{j}")
                if j in self.y:  # an evicted job is re-planned next round, not moved now
                    self.model.add(self.p[j] + self.e[j] <= 1)
        # a move: the job is evicted and its copy placed whole in the same plan; a job that
        # is not preemptible is evicted only as a move
        for j, c in self.inst.clones.items():
            self.moved[j] = self.p[c]
            self.model.add(self.p[c] <= self.e[j])
            if not (self.inst.jobs[j].job.preemptible and self.policy.preemption):
                self.model.add(self.e[j] <= self.p[c])

    def _useless_victims(self) -> set[int]:
        """Running jobs whose eviction can free nothing anyone may use, so every plan
        evicting one is worse than the same plan keeping it (it loses the job's GPUs at its
        level and gains nothing): no eviction variable, no eviction stage when none is left.
        A victim's GPUs go only to strictly higher priority (_single_node_capacity); its CPU
        and memory could go to anyone, so only nodes where they never bind count: every
        shape that may use the node asks for at most its share of CPU and memory per GPU
        (free CPU, memory over the GPUs free with every victim gone). Without GPUQueues
        (reclaim) and moves, which evict for other reasons."""
        inst = self.inst
        if inst.queues or inst.clones:
            return set()
        pending = [inst.shapes[s.shape] for s in inst.jobs if s.hi > 0 and s.shape >= 0]
        top = max((shape.key.priority for shape in pending if shape.classes), default=None)
        useful: set[int] = set()
        for k, cls in enumerate(inst.classes):
            if not cls.victims:
                continue
            gpus = _capacity_with_victims(cls).gpus
            keys = [shape.key for shape in inst.shapes if k in shape.classes]
            binds = any(
                key.cpu_milli * gpus > cls.free.cpu_milli * key.gpus
                or key.memory_mib * gpus > cls.free.memory_mib * key.gpus
                for key in keys
            )
            for v in cls.victims:
                if binds or (top is not None and top > inst.jobs[v].job.priority):
                    useful.add(v)
        return {j for j, s in enumerate(inst.jobs) if s.evictable and j not in useful}

    def _add_count_variables(self) -> None:
        inst = self.inst
        demand: dict[int, int] = defaultdict(int)
        for j in self.y:
            demand[inst.jobs[j].shape] += inst.jobs[j].hi
        for group in self.groups:
            demand[group.shape] += group.size * len(group.jobs)
        for s, shape in enumerate(inst.shapes):
            for k in shape.classes:
                cls = inst.classes[k]
                per_node = _capacity_with_victims(cls).gpus // shape.key.gpus
                upper = min(demand[s], per_node * cls.size)
                if upper > 0:
                    self.c[s, k] = self.model.new_int_var(0, upper, f"c{s}_{k}")
                    self.c_max[s, k] = upper
        for k, cls in enumerate(inst.classes):
            if cls.fully_free and any(kk == k for (_, kk) in self.c):
                self.u[k] = self.model.new_int_var(0, cls.size, f"u{k}")

    # -- constraints -------------------------------------------------------------------
    def _link_jobs_to_counts(self) -> None:
        placed = self._replicas_by_shape()
        by_shape: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for (s, _), var in self.c.items():
            by_shape[s].append(var)
        for s in range(len(self.inst.shapes)):
            self.model.add(sum(placed[s]) == sum(by_shape[s]))

    def _add_class_capacity(self) -> None:
        by_class: dict[int, list[int]] = defaultdict(list)
        for s, k in self.c:
            by_class[k].append(s)
        for k, shapes in by_class.items():
            cls = self.inst.classes[k]
            if cls.size == 1:
                self._single_node_capacity(k, cls, shapes)
            else:
                self._aggregated_capacity(k, cls, shapes)

    def _single_node_capacity(self, k: int, cls: NodeClass, shapes: list[int]) -> None:
        """One node: the sums of what is placed must fit what is free plus what evictions
        would free; capacity freed by a victim goes only to strictly higher priority."""
        key = [self.inst.shapes[s].key for s in shapes]
        used = self.u.get(k, 1)
        victims = {v: held for v, held in cls.victims.items() if v in self.e}
        for attr in ("gpus", "cpu_milli", "memory_mib"):
            freed = sum(getattr(held, attr) * self.e[v] for v, held in victims.items())
            load = sum(getattr(key[i], attr) * self.c[s, k] for i, s in enumerate(shapes))
            self.model.add(load <= getattr(cls.free, attr) * used + freed)
        if self.queues is not None:
            self.queues.victim_capacity(k, cls, shapes)
            return
        # a job kept running for sure (no eviction variable) is no victim here
        victim_priorities = sorted({self.inst.jobs[v].job.priority for v in victims})
        for q in victim_priorities:
            low = [self.c[s, k] * key[i].gpus for i, s in enumerate(shapes) if key[i].priority <= q]
            if low:
                # a victim's GPUs go to higher priority only; a moved job's to anyone (it
                # keeps its GPUs elsewhere in the same plan)
                freed_below = sum(
                    held.gpus * self.e[v]
                    for v, held in victims.items()
                    if self.inst.jobs[v].job.priority < q
                ) + sum(
                    held.gpus * self.moved[v]
                    for v, held in victims.items()
                    if v in self.moved and self.inst.jobs[v].job.priority >= q
                )
                self.model.add(sum(low) <= cls.free.gpus + freed_below)

    def _aggregated_capacity(self, k: int, cls: NodeClass, shapes: list[int]) -> None:
        """Identical nodes with GPU sizes in a divisibility chain (checked when the class was
        formed): for each size s, the GPUs of replicas of size >= s fit the nodes' whole
        s-blocks. This is exactly what first-fit decreasing can pack."""
        nodes = self.u.get(k, cls.size)
        sizes = sorted({self.inst.shapes[s].key.gpus for s in shapes})
        for size in sizes:
            load = [
                self.inst.shapes[s].key.gpus * self.c[s, k]
                for s in shapes
                if self.inst.shapes[s].key.gpus >= size
            ]
            self.model.add(sum(load) <= size * (cls.free.gpus // size) * nodes)

    def _add_eviction_limits(self) -> None:
        limit = self.policy.max_evictions_per_round
        if self.e and limit is not None:  # evictions that are not moves
            self.model.add(sum(self.e.values()) - sum(self.moved.values()) <= limit)
        if self.moved:
            self.model.add(self._moved_pods() <= self.policy.defragmentation.max_moves_per_round)

    def _moved_pods(self) -> cp_model.LinearExprT:
        return sum(len(self.inst.jobs[j].running) * m for j, m in self.moved.items())

    # -- objectives, in strict order -----------------------------------------------------
    def objectives(self) -> list[Objective]:
        inst = self.inst
        objs: list[Objective] = []
        total_free = sum(c.free.gpus * c.size for c in inst.classes) + sum(
            s.running_gpus for s in inst.jobs if s.evictable
        )
        levels = sorted({s.job.priority for s in inst.jobs}, reverse=True)
        if self.queues is not None:
            objs += self.queues.guarantee_objectives(levels, total_free)
            objs += self.queues.fairness_objectives()
        group_of = {j: g for g, group in enumerate(self.groups) for j in group.jobs}
        age_terms: list[cp_model.LinearExprT] = []
        age_span = 0
        bonus: dict[int, int] = {}
        for level in levels:
            members = [j for j, s in enumerate(inst.jobs) if s.job.priority == level]
            gained: list[cp_model.LinearExprT] = [
                inst.jobs[j].job.gpus_per_replica * self.y[j] for j in members if j in self.y
            ]
            gained += [
                inst.shapes[group.shape].key.gpus * group.size * self.z[g]
                for g, group in enumerate(self.groups)
                if inst.shapes[group.shape].key.priority == level
            ]
            lost = [inst.jobs[j].running_gpus * self.e[j] for j in members if j in self.e]
            span = min(
                total_free,
                sum(inst.jobs[j].job.gpus_per_replica * inst.jobs[j].hi for j in members),
            ) + sum(inst.jobs[j].running_gpus for j in members if j in self.e)
            objs.append(
                Objective(
                    f"{GPU_LEVEL}{level}",
                    cp_model.LinearExpr.sum(gained) - cp_model.LinearExpr.sum(lost),
                    span,
                    separate=True,
                )
            )
            # ties within a level go by planning_order (earliest estimated finish, then oldest):
            # the first gets the largest bonus per GPU placed, so among plans placing as many
            # GPUs the GPUs go to the earliest-ranked jobs (a sum of bonuses per job would let
            # eight 1-GPU jobs outvote one 8-GPU gang ranked ahead of them)
            ranked = [
                j
                for j in members
                if (j in self.p or j in group_of) and inst.jobs[j].clone_of is None
            ]
            # bonus per new replica: rank bonus x the replica's GPUs
            for rank, j in enumerate(ranked):
                bonus[j] = (len(ranked) - rank) * inst.jobs[j].job.gpus_per_replica
            age_terms += [bonus[j] * self.y[j] for j in ranked if j in self.y]
            age_span += sum(bonus[j] * inst.jobs[j].hi for j in ranked)
        for g, group in enumerate(self.groups):
            # a group places its first jobs in planning_order: bonus = sum of the first z bonuses
            prefix = [0]
            for j in group.jobs:
                prefix.append(prefix[-1] + bonus[j] * group.size)
            earned = self.model.new_int_var(0, prefix[-1], f"age{g}")
            self.model.add_element(self.z[g], prefix, earned)
            age_terms.append(earned)
        age = Objective("age", sum(age_terms), age_span, separate=True)
        objs.extend(self._move_objectives())  # moves serve only more GPUs, not older jobs
        if self.queues is None:
            objs.append(age)
        if self.e:
            plain = sum(self.e.values()) - sum(self.moved.values())  # moves are counted below
            objs.append(Objective("evictions", -plain, len(self.e), separate=True))
            newest = self.queues.newest_victims() if self.queues is not None else None
            if newest is not None:
                objs.append(newest)
        if self.queues is not None:
            # with queues a reclaim may evict at any priority: placing one more older job
            # must not be worth an eviction (it would swap a running job for a waiting one)
            objs.append(age)
        if self.topology is not None:
            objs.extend(self.topology.objectives())
        objs.extend(self._fragmentation_objectives())
        objs.append(self._throughput_objective(levels))
        return objs

    def _move_objectives(self) -> list[Objective]:
        """Of the moves that give the GPU levels above, the ones losing the least work
        (GPU-seconds since each moved job's last checkpoint), then the fewest moved pods."""
        if not self.moved:
            return []
        lost = {j: lost_gpu_seconds(self.inst.jobs[j], self.inst.now) for j in self.moved}
        return [
            Objective(
                MOVED_WORK,
                -sum(lost[j] * m for j, m in self.moved.items()),
                sum(lost.values()),
                separate=True,
            ),
            Objective(
                "moved-pods",
                -self._moved_pods(),
                sum(len(self.inst.jobs[j].running) for j in self.moved),
                separate=True,
            ),
        ]

    def _fragmentation_objectives(self) -> list[Objective]:
        inst = self.inst
        weight = self.policy.fragmentation_weight
        whole = [
            (inst.classes[k].size - u) * inst.classes[k].representative.gpus
            for k, u in self.u.items()
        ]
        whole_span = sum(inst.classes[k].size * inst.classes[k].free.gpus for k in self.u)
        # best fit: a GPU placed on a node with little free capacity scores higher
        fit = [
            inst.shapes[s].key.gpus * (inst.max_node_gpus - inst.classes[k].free.gpus) * var
            for (s, k), var in self.c.items()
        ]
        fit_span = sum(
            inst.shapes[s].key.gpus * (inst.max_node_gpus - inst.classes[k].free.gpus) * upper
            for (s, k), upper in self.c_max.items()
        )
        return [
            Objective(
                "whole-free-gpus",
                weight * sum(whole),
                weight * whole_span,
                separate=True,
                min_gap=TIE_BREAK_GAP,
            ),
            Objective("best-fit", weight * sum(fit), weight * fit_span),
        ]

    def _throughput_objective(self, levels: list[int]) -> Objective:
        inst = self.inst
        rank = {level: len(levels) - i for i, level in enumerate(levels)}
        table = self.policy.throughput
        terms = []
        span = 0
        for (s, k), var in self.c.items():
            key = inst.shapes[s].key
            tp = round(table.get(inst.classes[k].representative.product, 1.0) * _THROUGHPUT_SCALE)
            coeff = self.policy.throughput_weight * rank[key.priority] * key.gpus * tp
            terms.append(coeff * var)
            span += coeff * self.c_max[s, k]
        return Objective("throughput", sum(terms), span)

    # -- solve ---------------------------------------------------------------------------
    def hint(self, counts: dict[tuple[int, int], int], new: dict[int, int]) -> None:
        """Warm start from an earlier plan so a re-solve does not churn placements. With
        spec.topology, from topology-aware best-fit (an unaware plan straddles domains)."""
        if self.topology is not None:
            self.fallback = greedy_placements(self.inst)
            self.topology.hint(self.fallback)
            counts = self.topology.counts_of(self.fallback)
            new = {j: len(nodes) for j, nodes in self.fallback.items()}
        add_hints(self.model, ((var, counts.get(key, 0)) for key, var in self.c.items()))
        add_hints(self.model, ((y, new.get(j, 0)) for j, y in self.y.items()))
        add_hints(self.model, ((self.p[j], int(new.get(j, 0) > 0)) for j in self.y))
        for g, z in self.z.items():
            self.model.add_hint(z, sum(1 for j in self.groups[g].jobs if new.get(j, 0) > 0))
        add_hints(self.model, ((e, 0) for e in self.e.values()))
        loads: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for (s, k), n in counts.items():
            loads[k].append((self.inst.shapes[s].key.gpus, n))
        for k, u in self.u.items():  # the fewest nodes of an empty class the counts need
            self.model.add_hint(u, self._nodes_needed(k, loads[k]))

    def _nodes_needed(self, k: int, loads: list[tuple[int, int]]) -> int:
        free = self.inst.classes[k].free.gpus
        need = 0
        for size, _ in loads:
            load = sum(g * n for g, n in loads if g >= size)
            need = max(need, -(-load // (size * (free // size))))
        return min(need, self.inst.classes[k].size)

    def solve(self) -> Solution:
        solver, stages = solve_lexicographic(
            self.model,
            self.objectives(),
            time_limit=self.policy.time_limit_seconds,
            relative_gap=self.policy.relative_gap,
            num_workers=self.policy.num_workers,
        )
        # Headline figures in GPUs held by gpualloc jobs after the plan: the priority-level
        # stages (each solved with the levels above fixed) plus what already runs.
        levels = [s for s in stages if s.names[0].startswith(GPU_LEVEL)]
        running = sum(s.running_gpus for s in self.inst.jobs)
        objective = running + sum(s.objective for s in levels)
        bound = running + sum(s.bound for s in levels)
        if solver is None:
            status = stages[-1].status
        elif all(s.status == "OPTIMAL" for s in stages):
            status = "OPTIMAL"
        else:
            status = "FEASIBLE"
        sol = Solution(status, objective, bound, sum(s.seconds for s in stages))
        for stage in levels:
            level = int(stage.names[0].removeprefix(GPU_LEVEL))
            held = sum(s.running_gpus for s in self.inst.jobs if s.job.priority == level)
            sol.level_bounds[level] = held + stage.bound
        if solver is None:
            return self._fallback_plan(sol)
        sol.new_replicas = {j: solver.value(y) for j, y in self.y.items() if solver.value(y)}
        for g, z in self.z.items():
            group = self.groups[g]
            for j in group.jobs[: solver.value(z)]:
                sol.new_replicas[j] = group.size
        sol.evicted = {j for j, e in self.e.items() if solver.value(e)}
        sol.moved = {j for j, m in self.moved.items() if solver.value(m)}
        sol.moves_status = next((s.status for s in stages if MOVED_WORK in s.names), "")
        sol.counts = {key: solver.value(v) for key, v in self.c.items() if solver.value(v)}
        if self.queues is not None:
            sol.slot_types, sol.replica_types = self.queues.types(solver, sol)
        if self.topology is not None:
            sol.domain_replicas = self.topology.domain_replicas(solver)
            greedy = {j: len(nodes) for j, nodes in (self.fallback or {}).items()}
            if self._by_level(greedy) > self._by_level(sol.new_replicas):
                # cut short before the lower levels: topology-aware best-fit is better there
                return self._fallback_plan(sol)
        return sol

    def _by_level(self, new: dict[int, int]) -> list[int]:
        """New GPUs per priority level, highest first (compared as a tuple: objective level 1)."""
        gpus: dict[int, int] = defaultdict(int)
        for j, count in new.items():
            gpus[self.inst.jobs[j].job.priority] += self.inst.jobs[j].job.gpus_per_replica * count
        levels = sorted({s.job.priority for s in self.inst.jobs}, reverse=True)
        return [gpus[level] for level in levels]

    def _fallback_plan(self, sol: Solution) -> Solution:
        """No solution in the time limit (or one cut short before the lower priority levels):
        topology-aware best-fit, a plan that keeps every job's topology (best-fit unaware of
        it would not)."""
        if self.fallback is None or self.topology is None:
            return sol
        sol.status = "FEASIBLE"
        sol.evicted, sol.slot_types, sol.replica_types = set(), {}, {}
        sol.new_replicas = {j: len(nodes) for j, nodes in self.fallback.items()}
        counts = self.topology.counts_of(self.fallback)
        sol.counts = {key: n for key, n in counts.items() if n}
        sol.domain_replicas = self.topology.domains_of(self.fallback)
        inst = self.inst
        running = sum(s.running_gpus for s in inst.jobs)
        placed = sum(inst.jobs[j].job.gpus_per_replica * n for j, n in sol.new_replicas.items())
        sol.objective = running + placed
        # nothing proven: the trivial bound (every pending GPU, at most every free one)
        demand = sum(s.job.gpus_per_replica * s.hi for s in inst.jobs)
        free = sum(c.free.gpus * c.size for c in inst.classes)
        sol.bound = max(sol.objective, running + min(demand, free))
        return sol


def _capacity_with_victims(cls: NodeClass) -> Free:
    extra = list(cls.victims.values())
    return Free(
        cls.free.gpus + sum(v.gpus for v in extra),
        cls.free.cpu_milli + sum(v.cpu_milli for v in extra),
        cls.free.memory_mib + sum(v.memory_mib for v in extra),
    )
