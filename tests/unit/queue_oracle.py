"""A brute-force reference for GPU queues: every way to place a tiny snapshot's pending jobs,
each scored by the planner's strict order written out directly (not through the CP-SAT
model), so the planner's answer can be checked against the true optimum.

The order (README "GPU queues"):
1. guaranteed GPUs per priority level, highest first: the best choice of whole jobs counted
   within every nominal on their queue's path (jobs that are not preemptible always counted);
2. per family of sibling queues with pending work and weight > 0, top down, and per pool of
   products their quota entries share: the sorted vector of borrowed GPUs (held beyond what
   counts within nominal) / weight, compared lexicographically (leximin); 1 and 2 are the
   best over the choices of what counts within nominal;
3. GPUs placed per priority level, highest first.
Pending jobs only (no running pods), so no evictions.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator, Sequence
from fractions import Fraction

from gpualloc.model import Job, Node, Placement, Plan, Queue, Snapshot
from gpualloc.solver.eligibility import eligible
from gpualloc.solver.queues import QueueTree

Assignment = dict[str, list[str]]  # job key -> node per placed replica
Key = tuple[tuple[object, ...], ...]


def _options(job: Job, nodes: Sequence[Node]) -> list[list[str]]:
    usable = [n.name for n in nodes if eligible(job.requirements, n)]
    out: list[list[str]] = [[]]
    for count in range(job.min_replicas, job.replicas + 1):
        for combo in itertools.combinations_with_replacement(usable, count):
            out.append(list(combo))
    return out


def assignments(s: Snapshot) -> Iterator[Assignment]:
    jobs = list(s.jobs)
    for choice in itertools.product(*(_options(j, s.nodes) for j in jobs)):
        yield {j.key: list(c) for j, c in zip(jobs, choice, strict=True) if c}


class Scorer:
    def __init__(self, s: Snapshot) -> None:
        self.s = s
        self.jobs = {j.key: j for j in s.jobs}
        self.nodes = {n.name: n for n in s.nodes}
        self.tree = QueueTree(s.queues, {n.product for n in s.nodes})
        self.levels = sorted({j.priority for j in s.jobs}, reverse=True)

    def _use(self, a: Assignment) -> dict[str, dict[str, int]]:
        """Queue -> product -> GPUs of the given replicas, counted up the tree."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for key, placed in a.items():
            job = self.jobs[key]
            for node in placed:
                for q in self.tree.nodes[str(job.queue)].path:
                    out[q][self.nodes[node].product] += job.gpus_per_replica
        return out

    def _fits_nominal(self, a: Assignment) -> bool:
        use = self._use(a)
        for name, node in self.tree.nodes.items():
            for b in node.buckets:
                if sum(use[name][p] for p in b.products) > b.nominal:
                    return False
        return True

    def feasible(self, a: Assignment) -> bool:
        load: dict[str, int] = defaultdict(int)
        for key, placed in a.items():
            for node in placed:
                load[node] += self.jobs[key].gpus_per_replica
        if any(load[n] > self.nodes[n].gpus for n in load):
            return False
        use = self._use(a)
        for name, node in self.tree.nodes.items():
            for b in node.buckets:
                used = sum(use[name][p] for p in b.products)
                if b.borrowing_limit is not None and used > b.nominal + b.borrowing_limit:
                    return False
        firm = {k: n for k, n in a.items() if not self.jobs[k].preemptible}
        return self._fits_nominal(firm) and self._lending_respected(a)

    def _lending_respected(self, a: Assignment) -> bool:
        """nominal - lendingLimit of a queue's GPUs stay idle for it, along the tree: a
        queue holds max(its reserve, its own jobs' GPUs + what its children hold), and the
        top-level queues together hold at most the capacity; per pool of the products that
        reserving entries share (pending jobs only: nothing runs that could already break
        it)."""
        use = self._use(a)
        reserving = [
            (name, b)
            for name, node in self.tree.nodes.items()
            for b in node.buckets
            if b.lending_limit is not None and b.lending_limit < b.nominal
        ]
        for pool in pools(self.tree.products, [b.products for _, b in reserving]):
            reserve: dict[str, int] = defaultdict(int)
            for name, b in reserving:
                if b.products & pool:
                    reserve[name] += b.nominal - int(b.lending_limit or 0)
            if not reserve:
                continue
            capacity = sum(n.gpus for n in self.s.nodes if n.product in pool)
            # reserves beyond the capacity bind only as far as there is capacity
            idle = self._held(defaultdict(lambda: defaultdict(int)), pool, reserve)
            if self._held(use, pool, reserve) > max(capacity, idle):
                return False
        return True

    def _held(
        self, use: dict[str, dict[str, int]], pool: frozenset[str], reserve: dict[str, int]
    ) -> int:
        """What the top-level queues hold of the pool, reserves included."""
        held: dict[str, int] = {}
        for name in sorted(self.tree.nodes, key=lambda n: -len(self.tree.nodes[n].path)):
            node = self.tree.nodes[name]
            below = sum(use[c][p] for c in node.children for p in pool)
            own = sum(use[name][p] for p in pool) - below  # its own jobs' GPUs
            held[name] = max(reserve[name], own + sum(held[c] for c in node.children))
        return sum(held[q] for q in self.tree.top)

    def _units(self, a: Assignment) -> list[tuple[str, list[str], list[int]]]:
        """(job, replicas' nodes, choices): a gang is guaranteed whole, inference replicas
        one by one; a choice i means guaranteed from level i of the job's path up (leaf is
        0; len(path): not guaranteed); a job that is not preemptible always from 0."""
        units = []
        for key, placed in a.items():
            job = self.jobs[key]
            levels = len(self.tree.nodes[str(job.queue)].path)
            choices = [0] if not job.preemptible else list(range(levels + 1))
            if job.kind == "LLMTrainingJob" or not job.preemptible:
                units.append((key, placed, choices))
            else:
                units += [(key, [node], choices) for node in placed]
        return units

    def labelled(self, a: Assignment) -> Key:
        """Best over the choices of which replicas count within nominal: GPUs guaranteed at
        depth 0 (top-level queues) per priority level, then depth 1, ...; then per family
        and pool of products the sorted borrowed GPUs / weight (leximin), where borrowed is
        what a queue's subtree holds beyond what is guaranteed at its level."""
        units = self._units(a)
        depth = {q: len(n.path) - 1 for q, n in self.tree.nodes.items()}
        depths = sorted(set(depth.values()))
        use = self._use(a)
        best: Key | None = None
        for choice in itertools.product(*(c for _, _, c in units)):
            within: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            score: dict[tuple[int, int], int] = defaultdict(int)
            for (key, placed, _), start in zip(units, choice, strict=True):
                job = self.jobs[key]
                for q in self.tree.nodes[str(job.queue)].path[start:]:
                    for node in placed:
                        within[q][self.nodes[node].product] += job.gpus_per_replica
                    score[depth[q], job.priority] += job.gpus_per_replica * len(placed)
            if any(
                sum(within[name][p] for p in b.products) > b.nominal
                for name, node in self.tree.nodes.items()
                for b in node.buckets
            ):
                continue
            guaranteed = tuple(score[d, level] for d in depths for level in self.levels)
            key = (guaranteed, *self._fairness(use, within))
            best = key if best is None else max(best, key)
        assert best is not None
        return best

    def _wants(self, queue: str, pool: frozenset[str]) -> bool:
        """The subtree has a job that fits a node of these products."""
        return any(
            j.queue in self.tree.subtree(queue)
            and j.replicas > 0
            and any(
                n.product in pool and n.gpus >= j.gpus_per_replica and eligible(j.requirements, n)
                for n in self.s.nodes
            )
            for j in self.s.jobs
        )

    def _fairness(
        self, use: dict[str, dict[str, int]], within: dict[str, dict[str, int]]
    ) -> list[tuple[Fraction, ...]]:
        """Per family: for k = 1, 2, ... the sum over its pools of the k smallest shares in
        each pool (pools with at least k members)."""
        out = []
        for family in self.tree.families():
            entries = [
                b.products for q in family for b in self.tree.nodes[q].buckets if b.nominal > 0
            ]
            sorted_shares: list[list[Fraction]] = []
            for pool in pools(self.tree.products, entries):
                members = [
                    q
                    for q in family
                    if self.tree.nodes[q].queue.weight > 0 and self._wants(q, pool)
                ]
                if len(members) < 2:
                    continue
                shares = [
                    Fraction(sum(use[q][p] - within[q][p] for p in pool))
                    / Fraction(self.tree.nodes[q].queue.weight)
                    for q in members
                ]
                sorted_shares.append(sorted(shares))
            most = max((len(s) for s in sorted_shares), default=0)
            out.append(
                tuple(
                    sum(
                        (sum(s[:k], Fraction(0)) for s in sorted_shares if len(s) >= k), Fraction(0)
                    )
                    for k in range(1, most + 1)
                )
            )
        return out

    def usage(self, a: Assignment) -> tuple[int, ...]:
        return tuple(
            sum(
                self.jobs[k].gpus_per_replica * len(n)
                for k, n in a.items()
                if self.jobs[k].priority == level
            )
            for level in self.levels
        )

    def key(self, a: Assignment) -> Key:
        return (*self.labelled(a), self.usage(a))


def pools(products: frozenset[str], groups: Sequence[frozenset[str]]) -> list[frozenset[str]]:
    """Products joined when a group holds both (transitively), each pool sorted by name."""
    owner = {p: p for p in products}

    def root(p: str) -> str:
        while owner[p] != p:
            p = owner[p]
        return p

    for group in groups:
        inside = sorted(p for p in group if p in owner)
        for p in inside[1:]:
            owner[root(p)] = root(inside[0])
    joined: dict[str, set[str]] = defaultdict(set)
    for p in products:
        joined[root(p)].add(p)
    return sorted((frozenset(g) for g in joined.values()), key=min)


def of_plan(plan: Plan) -> Assignment:
    out: dict[str, list[str]] = defaultdict(list)
    for p in plan.placements:
        out[p.job].append(p.node)
    return dict(out)


def best(s: Snapshot) -> tuple[Key, list[Assignment]]:
    """The optimal key and every assignment that reaches it."""
    scorer = Scorer(s)
    top: Key | None = None
    winners: list[Assignment] = []
    for a in assignments(s):
        if not scorer.feasible(a):
            continue
        k = scorer.key(a)
        if top is None or k > top:
            top, winners = k, [a]
        elif k == top:
            winners.append(a)
    assert top is not None
    return top, winners


def placements_ok(plan: Plan, s: Snapshot) -> bool:
    return Scorer(s).feasible(of_plan(plan))


__all__ = ["Placement", "Queue", "best", "of_plan", "placements_ok"]
