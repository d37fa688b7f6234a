"""GPU queues in the CP-SAT plan: guarantees (placements within nominal quota), borrowing
and lending limits, weighted max-min fair borrowing, and who may evict whom. Added to an
`AllocationModel` only when the snapshot has GPUQueues; without them the model is exactly the
priority-only one.

Variables (integer):
  g[s, k]  replicas of shape s on class k that count within their queue's nominal
           (guaranteed); whole gangs only; equal to c[s, k] for jobs that are not preemptible,
           which run only within nominal (they could never be reclaimed)
  gy[j], gz[g]  guaranteed new replicas of a job / guaranteed gangs of a group
  keep[q, j]  1 - e[j]: the GPUs of running job j within queue q's nominal stay counted
           there unless it is evicted
  u, w per (queue, quota entry): GPUs used, min(used, nominal); borrowed = u - w
Objectives, before the priority-only ones:
  1. guaranteed GPUs per priority level, highest first (priority inside each queue);
  2. per family of sibling queues, top down: the leximin of borrowed GPUs / weight, as the
     sums of the k smallest weighted shares for k = 1..n (Ogryczak's ordered formulation).
Eviction: on a node, capacity a victim frees goes only to a job of its own queue with higher
priority (withinQueue LowerPriority), or to a guaranteed placement of another queue when the
victim is borrowing where the two queues' paths part (reclaim); checked as Hall's condition
over the victims of the node.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ortools.sat.python import cp_model

from gpualloc.model import ANY_PRODUCT
from gpualloc.solver.instance import JobState, NodeClass, ShapeKey
from gpualloc.solver.lexicographic import Objective
from gpualloc.solver.queues import Bucket, QueueTree

if TYPE_CHECKING:
    from gpualloc.solver.cpsat import AllocationModel, Solution

GUARANTEE_LEVEL = "guaranteed@depth="
FAIR = "fair-share:"
# Unions of victim sets checked per node; past this a node's freed capacity is not used.
_MAX_HALL_SETS = 64
# Weighted shares are integers: borrowed GPUs x (_SCALE / weight) when weights are not all
# integers (exact for weights dividing it).
_SCALE = 720720

Expr = cp_model.LinearExprT
Unit = tuple[int, ...]  # node classes (of one product) whose guaranteed replicas count together


def started(state: JobState) -> float:
    """When a running job was placed (its newest pod), else when it was created."""
    return max((p.started for p in state.running), default=0.0) or state.job.created


class QueueModel:
    def __init__(self, m: AllocationModel, tree: QueueTree) -> None:
        self.m = m
        self.tree = tree
        self.model = m.model
        inst = m.inst
        self.class_product = [c.representative.product for c in inst.classes]
        # (level queue, shape, unit) -> replicas guaranteed at that level of their path, per
        # unit of classes (see _units); for jobs that are not preemptible, all their replicas
        self.g: dict[tuple[str, int, Unit], Expr] = {}
        self.units: dict[int, list[Unit]] = {}  # shape -> its units
        # (level queue, running job) -> 1 - e: its GPUs within that queue's nominal (fixed by
        # the order jobs fill nominal, self.within) stay counted unless it is evicted, so a
        # plan cannot relabel a running job as borrowing to call a new one guaranteed
        self.keep: dict[tuple[str, int], Expr] = {}
        self.gy: dict[int, list[cp_model.IntVar]] = {}  # job -> per level of its path
        self.gz: dict[int, list[cp_model.IntVar]] = {}  # group -> per level
        self.subtrees = {q: tree.subtree(q) for q in tree.nodes}
        self.borrowing_at = self._classify_running()
        self._guaranteed_counts()
        self._running_guarantees()
        # terms per (leaf queue, product), and per (level queue, leaf queue, product)
        self.used: dict[tuple[str, str], list[Expr]] = defaultdict(list)
        self.guaranteed: dict[tuple[str, str, str], list[Expr]] = defaultdict(list)
        self.running: dict[tuple[str, str], int] = defaultdict(int)  # if nothing is evicted
        self._collect_terms()
        self._nominal_limits()
        self._borrowing_limits()
        self._lending_limits()
        self._evictions_are_used()
        self._no_new_borrowing_while_reclaiming()

    def path(self, queue: str | None) -> tuple[str, ...]:
        return self.tree.nodes[queue].path if queue in self.tree.nodes else ()

    # -- guaranteed replicas ------------------------------------------------------------
    def _nested(
        self, name: str, upper: int, top: Expr, path: tuple[str, ...]
    ) -> list[cp_model.IntVar]:
        """One count per level of a path, leaf first: each <= the next, the last <= top."""
        counts = [self.model.new_int_var(0, upper, f"{name}@{q}") for q in path]
        for inner, outer in zip(counts, [*counts[1:], top], strict=True):
            self.model.add(inner <= outer)
        return counts

    def _guaranteed_counts(self) -> None:
        """Per level of a shape's path, its guaranteed replicas are whole gangs, and a
        replica guaranteed for its own queue is guaranteed for every queue above it."""
        m, inst = self.m, self.m.inst
        by_shape: dict[tuple[str, int], list[Expr]] = defaultdict(list)
        for j, y in m.y.items():
            state = inst.jobs[j]
            key = inst.shapes[state.shape].key
            path = self.path(key.queue)
            if key.preemptible is False or not path:
                continue
            self.gy[j] = self._nested(f"gy{j}", state.hi, y, path)
            for q, gy in zip(path, self.gy[j], strict=True):
                if state.job.kind == "LLMTrainingJob":  # a gang: guaranteed whole or not
                    whole = self.model.new_bool_var(f"gw{j}@{q}")
                    self.model.add(gy <= state.hi * whole)
                    self.model.add(gy >= y - state.hi * (1 - whole))
                by_shape[q, state.shape].append(gy)
        for g, z in m.z.items():
            group = m.groups[g]
            key = inst.shapes[group.shape].key
            path = self.path(key.queue)
            if key.preemptible is False or not path:
                continue
            self.gz[g] = self._nested(f"gz{g}", len(group.jobs), z, path)
            for q, gz in zip(path, self.gz[g], strict=True):
                by_shape[q, group.shape].append(group.size * gz)
        per_shape: dict[tuple[str, int], list[Expr]] = defaultdict(list)
        for s, units in self._units().items():
            key = inst.shapes[s].key
            path = self.path(key.queue)
            self.units[s] = units
            for unit in units:
                placed = cp_model.LinearExpr.sum([m.c[s, k] for k in unit])
                if key.preemptible is False:  # runs only within every nominal on its path
                    self.g.update({(q, s, unit): placed for q in path})
                    continue
                upper = sum(m.c_max[s, k] for k in unit)
                nested = self._nested(f"g{s}_{unit[0]}", upper, placed, path)
                for q, count in zip(path, nested, strict=True):
                    self.g[q, s, unit] = count
                    per_shape[q, s].append(count)
        for (q, s), gs in per_shape.items():
            self.model.add(sum(gs) == sum(by_shape[q, s]))

    def _units(self) -> dict[int, list[Unit]]:
        """The classes whose guaranteed replicas of a shape are counted together: a class
        alone where the shape may reclaim from a victim (Hall's condition needs the count
        on that node), else all the shape's classes of one product (only that product's
        nominal sees them; a count per class would only add symmetric solutions)."""
        m, inst = self.m, self.m.inst
        alone: dict[int, list[Unit]] = defaultdict(list)
        pooled: dict[tuple[int, str], list[int]] = defaultdict(list)
        for s, k in m.c:
            key = inst.shapes[s].key
            if key.queue not in self.tree.nodes:
                continue
            if any(self.reclaim_level(key, v) is not None for v in inst.classes[k].victims):
                alone[s].append((k,))
            else:
                pooled[s, self.class_product[k]].append(k)
        for (s, _), classes in sorted(pooled.items()):
            alone[s].append(tuple(sorted(classes)))
        return alone

    def types(
        self, solver: cp_model.CpSolver, sol: Solution
    ) -> tuple[dict[tuple[int, int], list[int]], dict[int, list[int]]]:
        """Replicas per type (guaranteed from level i of the path up; last: not at all), per
        (shape, class) and per job given new replicas, so decoding gives each guaranteed
        gang guaranteed slots."""
        m, inst = self.m, self.m.inst
        slots: dict[tuple[int, int], list[int]] = {}
        for s, units in self.units.items():
            path = self.path(inst.shapes[s].key.queue)
            for unit in units:
                placed = [solver.value(m.c[s, k]) for k in unit]
                levels = [solver.value(self.g[q, s, unit]) for q in path] + [sum(placed)]
                # the unit's replicas by type, dealt to its classes in order
                kinds = [t for t, n in enumerate(_differences(levels)) for _ in range(n)]
                start = 0
                for k, count in zip(unit, placed, strict=True):
                    mine = kinds[start : start + count]
                    slots[s, k] = [mine.count(t) for t in range(len(path) + 1)]
                    start += count
        replicas: dict[int, list[int]] = {}
        for j, count in sol.new_replicas.items():
            path = self.path(inst.jobs[j].job.queue)
            if j in self.gy:
                replicas[j] = _differences([solver.value(v) for v in self.gy[j]] + [count])
            elif j in m.y:  # not preemptible: guaranteed all the way
                replicas[j] = [count] + [0] * len(path)
        for g, z in m.z.items():
            group = m.groups[g]
            path = self.path(inst.shapes[group.shape].key.queue)
            levels = [solver.value(v) for v in self.gz.get(g, [])]
            levels = levels or [solver.value(z)] * len(path)  # not preemptible
            kinds = _differences([*levels, solver.value(z)])
            order = [t for t, n in enumerate(kinds) for _ in range(n)]
            for j, t in zip(group.jobs, order, strict=False):  # oldest gangs first
                replicas[j] = [group.size if i == t else 0 for i in range(len(path) + 1)]
        return slots, replicas

    def _running_guarantees(self) -> None:
        for q, j in self.within:
            self.keep[q, j] = (1 - self.m.e[j]) if j in self.m.e else 1

    def _running_by_product(self, state: JobState) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for pod in state.running:
            out[self.m.inst.node_product.get(pod.node, "unknown")] += pod.gpus
        return out

    def _collect_terms(self) -> None:
        m, inst = self.m, self.m.inst
        for (s, k), c in m.c.items():
            key = inst.shapes[s].key
            if key.queue in self.tree.nodes:
                self.used[key.queue, self.class_product[k]].append(key.gpus * c)
        for (q, s, unit), g in self.g.items():
            key = inst.shapes[s].key
            product = self.class_product[unit[0]]
            self.guaranteed[q, str(key.queue), product].append(key.gpus * g)
        for j, state in enumerate(inst.jobs):
            if not state.running or state.job.queue not in self.tree.nodes:
                continue
            queue = state.job.queue
            for product, gpus in self._running_by_product(state).items():
                self.running[queue, product] += gpus
                self.used[queue, product].append(gpus * (1 - m.e[j]) if j in m.e else gpus)
        for (q, j), keep in self.keep.items():
            for product, gpus in self.within[q, j].items():
                self.guaranteed[q, str(inst.jobs[j].job.queue), product].append(gpus * keep)

    def _sum(
        self, terms: dict[tuple[str, str], list[Expr]], queue: str, b: Bucket
    ) -> cp_model.LinearExpr:
        return cp_model.LinearExpr.sum(
            [t for q in self.subtrees[queue] for p in b.products for t in terms.get((q, p), [])]
        )

    def _running(self, queues: Iterable[str], products: Iterable[str]) -> int:
        products = list(products)
        return sum(self.running.get((q, p), 0) for q in queues for p in products)

    # -- quota constraints ----------------------------------------------------------------
    def _nominal_limits(self) -> None:
        """Guaranteed GPUs fit every nominal on the way up the tree."""
        for name, node in self.tree.nodes.items():
            for b in node.buckets:
                terms = [
                    t
                    for q in self.subtrees[name]
                    for p in b.products
                    for t in self.guaranteed.get((name, q, p), [])
                ]
                self.model.add(cp_model.LinearExpr.sum(terms) <= b.nominal)

    def _borrowing_limits(self) -> None:
        """Usage <= nominal + borrowingLimit (or what already runs, if more)."""
        for name, node in self.tree.nodes.items():
            for b in node.buckets:
                if b.borrowing_limit is not None:
                    now = self._running(self.subtrees[name], b.products)
                    cap = max(b.nominal + b.borrowing_limit, now)
                    self.model.add(self._sum(self.used, name, b) <= cap)

    def _lending_limits(self) -> None:
        """nominal - lendingLimit of a queue's GPUs stay idle for it when it does not use
        them, along the tree: what a queue's subtree holds is its own jobs' GPUs plus what
        its children hold, and at least its reserve; what the top-level queues hold fits the
        capacity (or what already runs, if more). So a child lends only what its parent
        passes on, and the reserves of several queues are held together. Counted per pool
        of products that reserving quota entries share (see _pools)."""
        inst = self.m.inst
        reserving = [
            (name, b)
            for name, node in self.tree.nodes.items()
            for b in node.buckets
            if b.lending_limit is not None and b.lending_limit < b.nominal
        ]
        pools = _pools(self.tree.products, [b.products for _, b in reserving])
        for pool in pools:
            reserve: dict[str, int] = defaultdict(int)
            for name, b in reserving:
                if b.products & pool:
                    reserve[name] += b.nominal - b.lending_limit  # type: ignore[operator]
            if not reserve:
                continue
            held: dict[str, Expr] = {}
            now: dict[str, int] = {}  # the same if nothing changes
            for name in self.tree.bottom_up():
                node = self.tree.nodes[name]
                own = [t for p in pool for t in self.used.get((name, p), [])]
                inside = cp_model.LinearExpr.sum([*own, *(held[c] for c in node.children)])
                now[name] = max(
                    reserve[name],
                    self._running([name], pool) + sum(now[c] for c in node.children),
                )
                if reserve[name]:
                    h = self.model.new_int_var(reserve[name], 1 << 30, f"held{name}_{min(pool)}")
                    self.model.add(h >= inside)
                    held[name] = h
                else:
                    held[name] = inside
            capacity = sum(inst.product_capacity.get(p, 0) for p in pool)
            at_top = cp_model.LinearExpr.sum([held[q] for q in self.tree.top])
            self.model.add(at_top <= max(capacity, sum(now[q] for q in self.tree.top)))

    def _evictions_are_used(self) -> None:
        """An eviction is planned only with the placement it pays for: on one of the nodes a
        victim frees, new replicas need more GPUs than are free there without it (so no
        eviction just makes room in a nominal quota, and no more victims than a placement
        needs)."""
        m = self.m
        load: dict[int, list[Expr]] = defaultdict(list)
        for (s, k), c in m.c.items():
            load[k].append(m.inst.shapes[s].key.gpus * c)
        nodes: dict[int, list[int]] = defaultdict(list)
        for k, cls in enumerate(m.inst.classes):
            for v in cls.victims:
                nodes[v].append(k)
        for v, classes in nodes.items():
            # on at least one of its nodes (a class of one node, so of one product): summed
            # over its nodes, the free GPUs of one would excuse an eviction another needs
            pays: list[cp_model.IntVar] = []
            for k in classes:
                cls = m.inst.classes[k]
                others = [held.gpus * m.e[u] for u, held in cls.victims.items() if u != v]
                beyond = [*load[k], *(-x for x in others)]
                needed = cp_model.LinearExpr.sum(beyond) >= cls.free.gpus + 1
                if len(classes) == 1:
                    self.model.add(needed).only_enforce_if(m.e[v])
                    break
                here = self.model.new_bool_var(f"pays{v}_{k}")
                self.model.add(needed).only_enforce_if(here)
                pays.append(here)
            if pays:
                self.model.add_bool_or(pays).only_enforce_if(m.e[v])

    def _no_new_borrowing_while_reclaiming(self) -> None:
        """A plan that evicts borrowing work of a product starts no new borrowing of that
        product (but its own queue's higher-priority work, which may preempt it): else it
        could give the free GPUs to a borrower and evict for a guarantee that fitted them, a
        fair-share preemption between borrowers dressed as a reclaim. Borrowers start the
        next round, once the victims are gone."""
        m, inst = self.m, self.m.inst
        victims: dict[str, list[int]] = defaultdict(list)  # product -> borrowing victims
        for v in sorted(m.e):
            if self.borrowing_at.get(v):
                for product in self._running_by_product(inst.jobs[v]):
                    victims[product].append(v)
        if not victims:
            return
        # per (queue, priority, product): new replicas guaranteed at no level of their path
        beyond: dict[tuple[str, int, str], list[Expr]] = defaultdict(list)
        keys: dict[tuple[str, int, str], ShapeKey] = {}
        for s, units in sorted(self.units.items()):
            key = inst.shapes[s].key
            if key.preemptible is False:
                continue  # runs only within nominal
            top = self.path(key.queue)[-1]  # its count there: guaranteed at some level
            for unit in units:
                product = self.class_product[unit[0]]
                if product in victims:
                    group = (str(key.queue), key.priority, product)
                    beyond[group] += [m.c[s, k] for k in unit]
                    beyond[group].append(-1 * self.g[top, s, unit])
                    keys[group] = key
        for group, terms in beyond.items():
            blockers = [v for v in victims[group[2]] if not self.preempts(keys[group], v)]
            if not blockers:
                continue
            reclaiming = self.model.new_bool_var(f"reclaiming{'/'.join(map(str, group))}")
            for v in blockers:  # evicted, not moved (a move re-places it in the same plan)
                self.model.add(reclaiming >= m.e[v] - m.moved.get(v, 0))
            self.model.add(cp_model.LinearExpr.sum(terms) == 0).only_enforce_if(reclaiming)

    # -- which running jobs borrow ------------------------------------------------------
    def _classify_running(self) -> dict[int, set[str]]:
        """For each running job, the queues (on its path) whose nominal it is (at least
        partly) beyond; and, per queue and job, the GPUs of it within (self.within). Top
        down, in each queue's subtree what is within its parent's nominal fills its nominal
        in order (not preemptible first, then higher priority, then earlier started): a gang
        whole or not at all, an inference job replica by replica, as the plan counts them."""
        inst = self.m.inst
        running = [
            j for j, st in enumerate(inst.jobs) if st.running and st.job.queue in self.tree.nodes
        ]
        order = sorted(
            running,
            key=lambda j: (
                inst.jobs[j].job.preemptible,
                -inst.jobs[j].job.priority,
                started(inst.jobs[j]),
                inst.jobs[j].job.key,
            ),
        )
        units: list[tuple[int, int, dict[str, int]]] = []  # (job, unit, GPUs per product)
        for j in order:
            state = inst.jobs[j]
            pods = [[p] for p in state.running]
            if state.job.kind == "LLMTrainingJob":
                pods = [list(state.running)]
            for u, group in enumerate(pods):
                use: dict[str, int] = defaultdict(int)
                for pod in group:
                    use[inst.node_product.get(pod.node, "unknown")] += pod.gpus
                units.append((j, u, use))
        inside: dict[str, set[tuple[int, int]]] = {}
        beyond: dict[int, set[str]] = defaultdict(set)
        self.within: dict[tuple[str, int], dict[str, int]] = {}
        for name in sorted(self.tree.nodes, key=lambda n: len(self.tree.nodes[n].path)):
            node = self.tree.nodes[name]
            members = set(self.subtrees[name])
            parent = node.queue.parent
            nominal = {b.key: b.nominal for b in node.buckets}
            filled: dict[str, int] = defaultdict(int)
            inside[name] = set()
            for j, u, use in units:
                if inst.jobs[j].job.queue not in members:
                    continue
                need: dict[str, int] = defaultdict(int)
                for product, gpus in use.items():
                    bucket = node.bucket_of(product)
                    need[bucket.key if bucket else product] += gpus
                fits = all(filled[k] + n <= nominal.get(k, 0) for k, n in need.items())
                if fits and (parent is None or (j, u) in inside[parent]):
                    for k, n in need.items():
                        filled[k] += n
                    inside[name].add((j, u))
                    mine = self.within.setdefault((name, j), defaultdict(int))
                    for product, gpus in use.items():
                        mine[product] += gpus
                else:
                    beyond[j].add(name)
        return beyond

    # -- eviction rights ----------------------------------------------------------------
    def preempts(self, key: ShapeKey, victim: int) -> bool:
        """Same queue, higher priority, and the queue allows preemption inside it."""
        job = self.m.inst.jobs[victim].job
        if key.queue != job.queue or key.queue not in self.tree.nodes:
            return False
        return self.tree.nodes[key.queue].queue.preempt_within_queue and key.priority > (
            job.priority
        )

    def reclaim_level(self, key: ShapeKey, victim: int) -> int | None:
        """How far up its path (0: its own queue) a placement of `key` must be guaranteed to
        reclaim from `victim`: another queue that may reclaim, where the victim borrows at
        the point the paths part. None: it may not."""
        job = self.m.inst.jobs[victim].job
        if key.queue == job.queue or key.queue not in self.tree.nodes:
            return None
        if job.queue not in self.tree.nodes:
            return None
        if not self.tree.nodes[key.queue].queue.reclaim_within_parent:
            return None
        theirs, ours = self.tree.sides(job.queue, key.queue)
        if theirs not in self.borrowing_at.get(victim, set()):
            return None
        return self.path(key.queue).index(ours)

    def victim_capacity(self, k: int, cls: NodeClass, shapes: list[int]) -> None:
        """Hall's condition: for every union T of the victim sets some placement may use,
        the placements that may use only victims in T fit the free GPUs plus T's. A shape's
        replicas split by how far up their path they are guaranteed (leaf first); each part
        may use the victims of lower priority in its queue and those it may reclaim from."""
        m, inst = self.m, self.m.inst
        loads: list[tuple[frozenset[int], Expr]] = []
        for s in shapes:
            key = inst.shapes[s].key
            own = frozenset(v for v in cls.victims if self.preempts(key, v))
            reach = {v: self.reclaim_level(key, v) for v in cls.victims}
            path = self.path(key.queue)
            if not any(level is not None for level in reach.values()):
                loads.append((own, key.gpus * m.c[s, k]))
                continue
            counts = [self.g[q, s, (k,)] for q in path]
            for i, outer in enumerate([*counts, m.c[s, k]]):
                # replicas guaranteed from level i of the path up (i == len: not at all)
                victims = own | {
                    v for v, level in reach.items() if level is not None and level >= i
                }
                part = [outer, counts[i - 1]] if i else [outer]
                loads.append(
                    (
                        frozenset(victims),
                        cp_model.LinearExpr.weighted_sum(part, [key.gpus, -key.gpus][: len(part)]),
                    )
                )
        unions: set[frozenset[int]] = {frozenset()}
        for victims in {v for v, _ in loads}:
            unions |= {u | victims for u in unions}
            if len(unions) > _MAX_HALL_SETS:
                self.model.add(cp_model.LinearExpr.sum([x for _, x in loads]) <= cls.free.gpus)
                return
        for union in unions:
            fitting = [x for victims, x in loads if victims <= union]
            if fitting:
                freed = [cls.victims[v].gpus * m.e[v] for v in union]
                self.model.add(
                    cp_model.LinearExpr.sum(fitting)
                    <= cls.free.gpus + cp_model.LinearExpr.sum(freed)
                )

    # -- objectives -----------------------------------------------------------------------
    def guarantee_objectives(self, levels: list[int], total_free: int) -> list[Objective]:
        """Guaranteed GPUs, top-level queues first, then their children, ...; at each depth
        per priority level, highest first."""
        inst = self.m.inst
        depth = {q: len(n.path) - 1 for q, n in self.tree.nodes.items()}
        objs: list[Objective] = []
        for d in sorted(set(depth.values())):
            for level in levels:
                terms: list[Expr] = []
                for (q, s, _), g in self.g.items():
                    key = inst.shapes[s].key
                    if depth[q] == d and key.priority == level:
                        terms.append(key.gpus * g)
                pending = sum(
                    st.job.gpus_per_replica * st.hi
                    for st in inst.jobs
                    if st.job.priority == level and st.shape >= 0
                )
                span = min(total_free, pending)
                varies = bool(terms)  # a stage only where the plan can change something
                for (q, j), keep in self.keep.items():
                    if depth[q] == d and inst.jobs[j].job.priority == level:
                        gpus = sum(self.within[q, j].values())
                        terms.append(gpus * keep)
                        span += gpus
                        varies = varies or j in self.m.e
                if varies:
                    objs.append(
                        Objective(
                            f"{GUARANTEE_LEVEL}{d}@priority={level}",
                            cp_model.LinearExpr.sum(terms),
                            span,
                            # one stage for all levels (weighted in strict order) while
                            # the weights stay exact: one search instead of one per level
                            separate=not objs,
                        )
                    )
        return objs

    def _borrowed(self, name: str, pool: frozenset[str]) -> tuple[cp_model.IntVar, int]:
        """GPUs of these products a queue's subtree holds that are not guaranteed within its
        nominal (what a reclaim may take back), and an upper bound on it. Linear: used minus
        guaranteed, both per product; the guarantee stages before fixed how much is
        guaranteed."""
        members = self.subtrees[name]
        used = [t for q in members for p in pool for t in self.used.get((q, p), [])]
        within = [t for q in members for p in pool for t in self.guaranteed.get((name, q, p), [])]
        running = self._running(members, pool)
        capacity = sum(self.m.inst.product_capacity.get(p, 0) for p in pool)
        bound = min(running + self._demand(name, pool), max(capacity, running))
        borrowed = self.model.new_int_var(0, bound, f"b{name}_{min(pool)}")
        self.model.add(borrowed == cp_model.LinearExpr.sum(used) - cp_model.LinearExpr.sum(within))
        return borrowed, bound

    def _demand(self, name: str, pool: frozenset[str]) -> int:
        """GPUs the subtree's jobs may still be given on nodes of these products."""
        inst = self.m.inst
        members = set(self.subtrees[name])
        total = 0
        for st in inst.jobs:
            if st.job.queue not in members or st.shape < 0:
                continue
            if any(self.class_product[k] in pool for k in inst.shapes[st.shape].classes):
                total += st.job.gpus_per_replica * st.hi
        return total

    def fairness_objectives(self) -> list[Objective]:
        """Per family, top down: the leximin of borrowed GPUs / weight, per pool of products
        its members' quota entries share (each product alone when every entry names one
        product; `*` pools them all). Stage k maximizes the sum over the pools of the k
        smallest weighted shares in each, k = 1..n (Ogryczak's ordered formulation; pools
        that no job can use both of are levelled independently, as if one after the other,
        in n stages instead of n per pool)."""
        objs: list[Objective] = []
        for family in self.tree.families():
            entries = [
                b.products for q in family for b in self.tree.nodes[q].buckets if b.nominal > 0
            ]
            per_k: dict[int, list[tuple[Expr, int]]] = defaultdict(list)
            labels = []
            weighted = [q for q in family if self.tree.nodes[q].queue.weight > 0]
            # one scale for the family, so shares add up across pools
            scale = dict(
                zip(
                    weighted,
                    _multipliers([self.tree.nodes[q].queue.weight for q in weighted]),
                    strict=True,
                )
            )
            for pool in _pools(self.tree.products, entries):
                members = [q for q in weighted if self._demand(q, pool) > 0]
                if len(members) < 2:
                    continue
                labels.append(ANY_PRODUCT if pool == self.tree.products else "+".join(sorted(pool)))
                mults = [scale[q] for q in members]
                for k, term in enumerate(self._smallest_sums(members, mults, pool, labels[-1]), 1):
                    per_k[k].append(term)
            for k, terms in sorted(per_k.items()):
                objs.append(
                    Objective(
                        f"{FAIR}{','.join(weighted)}@{'|'.join(labels)}:{k}",
                        cp_model.LinearExpr.sum([expr for expr, _ in terms]),
                        sum(span for _, span in terms),
                        # k > 1 in the same stage (weighted in strict order) while the
                        # weights stay exact: one search instead of one per k
                        separate=k == 1,
                    )
                )
        return objs

    def _smallest_sums(
        self, members: list[str], scale: list[int], pool: frozenset[str], name: str
    ) -> list[tuple[Expr, int]]:
        """For k = 1..n, the sum of the k smallest weighted shares (borrowed x scale, the
        scale in inverse proportion to the weight; as k r - the shortfalls below r,
        maximized) and its span."""
        shares: list[cp_model.LinearExpr] = []
        top = 0
        for q, mult in zip(members, scale, strict=True):
            borrowed, bound = self._borrowed(q, pool)
            shares.append(cp_model.LinearExpr.term(borrowed, mult))
            top = max(top, mult * bound)
        out: list[tuple[Expr, int]] = []
        for k in range(1, len(members) + 1):
            r = self.model.new_int_var(0, top, f"r{name}_{k}")
            gaps = []
            for i, share in enumerate(shares):
                d = self.model.new_int_var(0, top, f"d{name}_{k}_{i}")
                self.model.add(d >= r - share)
                gaps.append(d)
            out.append((k * r - cp_model.LinearExpr.sum(gaps), k * top))
        return out

    def newest_victims(self) -> Objective | None:
        """Among equally few evictions, the most recently started jobs (least work lost)."""
        inst = self.m.inst
        victims = sorted(self.m.e, key=lambda j: (started(inst.jobs[j]), inst.jobs[j].job.key))
        if len(victims) < 2:
            return None
        terms = [rank * self.m.e[j] for rank, j in enumerate(victims, start=1)]
        span = len(victims) * (len(victims) + 1) // 2
        return Objective("newest-victims", cp_model.LinearExpr.sum(terms), span)


def _pools(products: frozenset[str], groups: Iterable[frozenset[str]]) -> list[frozenset[str]]:
    """The cluster's products split into the fewest pools such that each group lies in one
    pool (products a group joins are counted together), each pool sorted by name."""
    pools: list[frozenset[str]] = [frozenset({p}) for p in sorted(products)]
    for group in groups:
        joined = [pool for pool in pools if pool & group]
        if len(joined) > 1:
            pools = [pool for pool in pools if not pool & group] + [frozenset().union(*joined)]
    return sorted(pools, key=min)


def _differences(levels: list[int]) -> list[int]:
    """Counts per type from nested counts (each includes the ones before)."""
    return [b - a for a, b in zip([0, *levels], levels, strict=False)]


def _multipliers(weights: list[float]) -> list[int]:
    """Integers proportional to 1 / weight: exact when the weights are integers."""
    if all(float(w).is_integer() for w in weights):
        lcm = math.lcm(*(int(w) for w in weights))
        if lcm <= 10**6:
            return [lcm // int(w) for w in weights]
    return [max(1, round(_SCALE / w)) for w in weights]
