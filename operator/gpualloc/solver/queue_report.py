"""What a plan means for each GPU queue: usage, borrowing, fair share, the reasons its jobs
wait or were evicted, and the holds that keep an evicted job off the capacity it left. Pure."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from gpualloc.model import (
    Eviction,
    Hold,
    Job,
    Placement,
    QueueReport,
    Requirement,
    RunningPod,
    Snapshot,
    Unscheduled,
)
from gpualloc.solver.explain import plural
from gpualloc.solver.queues import REST, Bucket, QueueTree, bucket_usage, usage_by_product


class QueueView:
    """GPUs per queue (whole subtree) and per product after a plan."""

    def __init__(self, tree: QueueTree, snapshot: Snapshot, placements: Sequence[Placement]):
        self.tree = tree
        self.jobs = {j.key: j for j in snapshot.jobs}
        product = {n.name: n.product for n in snapshot.nodes}
        direct: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for p in placements:
            job = self.jobs.get(p.job)
            if job is not None and job.queue in tree.nodes:
                direct[job.queue].append((product.get(p.node, "unknown"), p.gpus))
        self.usage = {
            name: usage_by_product(pair for q in tree.subtree(name) for pair in direct[q])
            for name in tree.nodes
        }

    def used(self, name: str, bucket: Bucket) -> int:
        return sum(self.usage[name].get(p, 0) for p in bucket.products)

    def borrowed(self, name: str) -> dict[str, int]:
        """GPUs beyond nominal per quota entry; the products a queue lists no entry for
        (REST) only when it holds some beyond its children's quota."""
        node = self.tree.nodes[name]
        used = bucket_usage(node, self.usage[name])
        out = {}
        for b in node.buckets:
            beyond = max(0, used[b.key] - b.nominal)
            if b.key != REST or beyond:
                out[b.label] = beyond
        return out


def reports(
    tree: QueueTree, view: QueueView, placed: Iterable[str], waiting: Iterable[str]
) -> dict[str, QueueReport]:
    admitted: Counter[str] = Counter()
    pending: Counter[str] = Counter()
    for keys, counter in ((placed, admitted), (waiting, pending)):
        for key in set(keys):
            job = view.jobs.get(key)
            if job is not None and job.queue in tree.nodes:
                for q in tree.nodes[job.queue].path:
                    counter[q] += 1
    out = {}
    for name, node in tree.nodes.items():
        borrowed = view.borrowed(name)
        weight = node.queue.weight
        out[name] = QueueReport(
            usage=dict(sorted(view.usage[name].items())),
            nominal={b.label: b.nominal for b in node.buckets if b.key != REST or b.nominal},
            borrowed=borrowed,
            pending=pending[name],
            admitted=admitted[name],
            fair_share=round(sum(borrowed.values()) / weight, 3) if weight > 0 else 0.0,
        )
    return out


def _products(job: Job, tree: QueueTree) -> frozenset[str]:
    return frozenset(job.requirements.products) or tree.products


def why_waiting(job: Job, tree: QueueTree, view: QueueView, waiting: Sequence[Job]) -> str:
    """The queue's part of why a job waits, before the placement reason."""
    name = str(job.queue)
    node = tree.nodes[name]
    ahead = [
        other
        for other in waiting
        if other.queue == name and other.key != job.key and other.priority > job.priority
    ]
    if ahead:
        return f"waiting behind {plural(len(ahead), 'higher-priority job')} in queue {name}; "
    need = job.gpus_per_replica * job.min_replicas
    for q in node.path:
        for b in tree.nodes[q].buckets:
            if not b.products & _products(job, tree):
                continue
            used = view.used(q, b)
            if used + need <= b.nominal:
                continue
            at = f"{used}/{b.nominal} {b.label}"
            if not job.preemptible:
                return (
                    f"queue {q} uses {at} of its nominal quota and a job that is not "
                    f"preemptible runs only within it (needs {need} more); "
                )
            if b.borrowing_limit is not None and used + need > b.nominal + b.borrowing_limit:
                return (
                    f"queue {q} is at its nominal {b.nominal} {b.label} plus its "
                    f"borrowingLimit {b.borrowing_limit} ({used} in use); "
                )
            lendable, lenders = _lenders(q, b, tree, view)
            if lendable < need:
                at_nominal = f"queue {q} is at its nominal {b.nominal} {b.label}"
                return f"{at_nominal} and cannot borrow: {lenders}; "
    return ""


def _lenders(name: str, bucket: Bucket, tree: QueueTree, view: QueueView) -> tuple[int, str]:
    """How many idle GPUs the queues it could borrow from lend, and who lends what."""
    parent = tree.nodes[name].queue.parent
    siblings = tree.nodes[parent].children if parent else tree.top
    parts = []
    total = 0
    for other in sorted(siblings):
        if other == name:
            continue
        nominal = tree.nominal_over(other, bucket.products)
        used = sum(view.usage[other].get(p, 0) for p in bucket.products)
        idle = max(0, nominal - used)
        lending = [
            b.lending_limit
            for b in tree.nodes[other].buckets
            if b.products & bucket.products and b.lending_limit is not None
        ]
        lends = min([idle, *lending])
        total += lends
        parts.append(f"{other} lends {lends}" + (f" of {idle} idle" if lends < idle else ""))
    return total, ", ".join(parts) if parts else "no other queue lends to it"


def eviction_reason(job: Job, beneficiaries: Sequence[Job]) -> str:
    others = sorted({str(b.queue) for b in beneficiaries if b.queue != job.queue})
    if others:
        return (
            f"reclaimed by queue {', '.join(others)} (within its nominal quota); queue "
            f"{job.queue} was borrowing these GPUs"
        )
    return f"preempted (priority {job.priority}) for higher-priority jobs in queue {job.queue}"


def with_holds(snapshot: Snapshot, previous: Mapping[str, Hold]) -> Snapshot:
    """Jobs under a hold may not go to the nodes they were evicted from."""
    if not previous:
        return snapshot
    jobs = []
    for job in snapshot.jobs:
        hold = previous.get(job.key)
        if hold is not None:
            away = Requirement("metadata.name", "NotIn", tuple(sorted(hold.nodes)), field=True)
            terms = job.requirements.affinity_terms or ((),)
            requirements = replace(
                job.requirements, affinity_terms=tuple((*t, away) for t in terms)
            )
            job = replace(job, requirements=requirements)
        jobs.append(job)
    return replace(snapshot, jobs=tuple(jobs))


def next_holds(
    snapshot: Snapshot,
    previous: Mapping[str, Hold],
    evictions: Sequence[Eviction],
    placements: Sequence[Placement],
) -> dict[str, Hold]:
    """New holds for this plan's victims (the nodes they ran on, the jobs placed there in
    their stead); earlier holds stay while one of the jobs they made room for still waits."""
    running_on: dict[str, set[str]] = defaultdict(set)
    for pod in snapshot.pods:
        if pod.job is not None:
            running_on[pod.job].add(pod.node)
    holds: dict[str, Hold] = {}
    waiting = {j.key for j in snapshot.jobs if not running_on.get(j.key)}
    placed = {p.job for p in placements}
    for key, hold in previous.items():
        if key in placed or key not in waiting:
            continue
        if any(j in waiting and j not in placed for j in hold.for_jobs):
            holds[key] = hold
    victims = {e.job for e in evictions}
    for key in victims:
        nodes = tuple(sorted(running_on.get(key, ())))
        fresh = sorted(
            {
                p.job
                for p in placements
                if p.node in nodes and p.job not in victims and p.node not in running_on[p.job]
            }
        )
        holds[key] = Hold(nodes, tuple(fresh))
    return holds


def beneficiaries(
    victim: str,
    pods: Sequence[RunningPod],
    placements: Sequence[Placement],
    jobs: Mapping[str, Job],
) -> list[Job]:
    """Jobs newly placed on the nodes a victim ran on."""
    nodes = {p.node for p in pods if p.job == victim}
    running = {(p.job, p.node) for p in pods}
    return [
        jobs[p.job]
        for p in placements
        if p.node in nodes and (p.job, p.node) not in running and p.job in jobs
    ]


def unqueued(jobs: Iterable[Job], tree: QueueTree) -> list[Unscheduled]:
    return [
        Unscheduled(
            j.key,
            f"queue {j.queue} cannot be used" if j.queue else "the job is in no GPUQueue",
        )
        for j in jobs
        if j.queue not in tree.nodes
    ]
