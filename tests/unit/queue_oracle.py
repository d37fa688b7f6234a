"""A brute-force reference for GPU queues: every way to place a tiny snapshot's pending jobs,
each scored by the planner's strict order written out directly (not through the CP-SAT
model), so the planner's answer can be checked against the true optimum.

The order (README "GPU queues"):
1. guaranteed GPUs per priority level, highest first: the best choice of whole jobs counted
   within every nominal on their queue's path (jobs that are not preemptible always counted);
2. per family of sibling queues with pending work and weight > 0, top down: the sorted
   vector of borrowed GPUs / weight, compared lexicographically (leximin);
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
        """nominal - lendingLimit of a queue's GPUs stay idle for it: everybody else's
        usage plus max(its own, that reserve) fits the capacity of the entry's products
        (pending jobs only: nothing runs that could already break it)."""
        use = self._use(a)
        everyone: dict[str, int] = defaultdict(int)
        for top in self.tree.top:
            for product, gpus in use[top].items():
                everyone[product] += gpus
        for name, node in self.tree.nodes.items():
            for b in node.buckets:
                if b.lending_limit is None or b.lending_limit >= b.nominal:
                    continue
                capacity = sum(n.gpus for n in self.s.nodes if n.product in b.products)
                mine = sum(use[name][p] for p in b.products)
                others = sum(everyone[p] for p in b.products) - mine
                reserve = b.nominal - b.lending_limit
                # a reserve beyond the capacity binds only as far as there is capacity
                if others + max(mine, reserve) > max(capacity, reserve):
                    return False
        return True

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

    def guaranteed(self, a: Assignment) -> tuple[int, ...]:
        """Best over the choices: GPUs guaranteed at depth 0 (top-level queues) per
        priority level, then depth 1, ..."""
        units = self._units(a)
        depth = {q: len(n.path) - 1 for q, n in self.tree.nodes.items()}
        depths = sorted(set(depth.values()))
        best: tuple[int, ...] = ()
        for choice in itertools.product(*(c for _, _, c in units)):
            use: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            score: dict[tuple[int, int], int] = defaultdict(int)
            for (key, placed, _), start in zip(units, choice, strict=True):
                job = self.jobs[key]
                for q in self.tree.nodes[str(job.queue)].path[start:]:
                    for node in placed:
                        use[q][self.nodes[node].product] += job.gpus_per_replica
                    score[depth[q], job.priority] += job.gpus_per_replica * len(placed)
            if any(
                sum(use[name][p] for p in b.products) > b.nominal
                for name, node in self.tree.nodes.items()
                for b in node.buckets
            ):
                continue
            best = max(best, tuple(score[d, level] for d in depths for level in self.levels))
        return best

    def fairness(self, a: Assignment) -> tuple[tuple[Fraction, ...], ...]:
        use = self._use(a)
        out = []
        for family in self.tree.families():
            members = []
            for q in family:
                node = self.tree.nodes[q]
                pending = any(
                    j.queue in self.tree.subtree(q) and j.replicas > 0 for j in self.s.jobs
                )
                if node.queue.weight > 0 and pending:
                    members.append(q)
            if len(members) < 2:
                continue
            shares = []
            for q in members:
                node = self.tree.nodes[q]
                borrowed = sum(
                    max(0, sum(use[q][p] for p in b.products) - b.nominal) for b in node.buckets
                )
                shares.append(Fraction(borrowed) / Fraction(node.queue.weight))
            out.append(tuple(sorted(shares)))
        return tuple(out)

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
        return (self.guaranteed(a), *self.fairness(a), self.usage(a))


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
