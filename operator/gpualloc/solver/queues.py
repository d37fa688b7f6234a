"""GPU queues as the planner sees them: the tree of queues, each queue's quota per product,
and which queue a job runs in. Pure.

A queue's quota entries name a GPU product or `*` (every product the queue lists no entry
for). Products a queue has no entry for form its *rest*, whose nominal is what its children
list for them (0 for a queue without children): a parent without quota entries is a pure
cohort whose children's quotas add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gpualloc.model import ANY_PRODUCT, Queue

REST = ""  # the bucket of products a queue lists no entry for


@dataclass(frozen=True)
class Bucket:
    """GPUs of some products counted together against one quota entry of one queue."""

    key: str  # the product, `*`, or REST
    products: frozenset[str]
    nominal: int
    borrowing_limit: int | None = None
    lending_limit: int | None = None

    @property
    def label(self) -> str:
        """How status and reasons name it."""
        return self.key or ANY_PRODUCT


@dataclass
class QueueNode:
    queue: Queue
    children: list[str] = field(default_factory=list)
    path: tuple[str, ...] = ()  # itself, its parent, ... its top-level ancestor
    buckets: list[Bucket] = field(default_factory=list)

    def bucket_of(self, product: str) -> Bucket | None:
        return next((b for b in self.buckets if product in b.products), None)


def check_queues(queues: Sequence[Queue]) -> dict[str, str]:
    """Queues that cannot be used, with the reason: a missing or invalid parent, a cycle,
    two entries for one product. Their subtrees cannot be used either."""
    by_name = {q.name: q for q in queues}
    errors: dict[str, str] = {}
    for q in queues:
        products = [e.product for e in q.quota]
        twice = sorted({p for p in products if products.count(p) > 1})
        if twice:
            errors[q.name] = f"spec.quota lists {', '.join(twice)} more than once"
    for q in queues:
        seen = [q.name]
        current = q
        while current.parent is not None:
            parent = by_name.get(current.parent)
            if parent is None:
                errors.setdefault(q.name, f"spec.parent {current.parent} does not exist")
                break
            if parent.name in seen:
                cycle = " -> ".join([*seen, parent.name])
                errors.setdefault(q.name, f"spec.parent makes a cycle ({cycle})")
                break
            seen.append(parent.name)
            current = parent
    # anything below an invalid queue is unusable too
    changed = True
    while changed:
        changed = False
        for q in queues:
            if q.name not in errors and q.parent in errors:
                errors[q.name] = f"its parent {q.parent} is invalid"
                changed = True
    return errors


class QueueTree:
    """The valid queues, their buckets over the cluster's products, and their families."""

    def __init__(self, queues: Sequence[Queue], products: Iterable[str]) -> None:
        errors = check_queues(queues)
        valid = sorted((q for q in queues if q.name not in errors), key=lambda q: q.name)
        self.nodes: dict[str, QueueNode] = {q.name: QueueNode(q) for q in valid}
        self.products = frozenset(products)
        self.top: list[str] = []
        for q in valid:
            if q.parent is None:
                self.top.append(q.name)
            else:
                self.nodes[q.parent].children.append(q.name)
        for name, node in self.nodes.items():
            path = [name]
            while (parent := self.nodes[path[-1]].queue.parent) is not None:
                path.append(parent)
            node.path = tuple(path)
        for name in self.bottom_up():
            self.nodes[name].buckets = self._buckets(self.nodes[name])

    def bottom_up(self) -> list[str]:
        """Deepest queues first."""
        return sorted(self.nodes, key=lambda n: -len(self.nodes[n].path))

    def _buckets(self, node: QueueNode) -> list[Bucket]:
        explicit = {e.product for e in node.queue.quota if e.product != ANY_PRODUCT}
        listed = self.products | explicit
        buckets = []
        for entry in sorted(node.queue.quota, key=lambda e: e.product):
            if entry.product == ANY_PRODUCT:
                products = frozenset(listed - explicit)
            else:
                products = frozenset({entry.product})
            lending = entry.lending_limit
            buckets.append(
                Bucket(
                    entry.product,
                    products,
                    entry.nominal,
                    entry.borrowing_limit,
                    None if lending is None else min(lending, entry.nominal),
                )
            )
        covered = frozenset().union(*(b.products for b in buckets)) if buckets else frozenset()
        rest = frozenset(self.products - covered)
        if rest:
            nominal = sum(self.nominal_over(c, rest) for c in node.children)
            buckets.append(Bucket(REST, rest, nominal))
        return buckets

    def nominal_over(self, name: str, products: frozenset[str]) -> int:
        """The nominal a queue holds for GPUs of exactly these products (entries whose
        products all fall inside)."""
        return sum(
            b.nominal if b.products <= products else 0
            for b in self.nodes[name].buckets
            if b.products and b.products & products
        )

    def subtree(self, name: str) -> list[str]:
        out = [name]
        for child in self.nodes[name].children:
            out += self.subtree(child)
        return out

    def families(self) -> list[list[str]]:
        """Sibling groups, top-level queues first, then each parent's children (top down)."""
        groups = [list(self.top)]
        for name in sorted(self.nodes, key=lambda n: len(self.nodes[n].path)):
            if self.nodes[name].children:
                groups.append(sorted(self.nodes[name].children))
        return groups

    def sides(self, a: str, b: str) -> tuple[str, str]:
        """Where the paths of a and b part: (a's side, b's side), each the child of their
        lowest common ancestor on the way down (or the ancestor itself)."""
        pa, pb = self.nodes[a].path[::-1], self.nodes[b].path[::-1]
        i = 0
        while i < min(len(pa), len(pb)) and pa[i] == pb[i]:
            i += 1
        return pa[min(i, len(pa) - 1)], pb[min(i, len(pb) - 1)]

    def max_priority(self, name: str) -> tuple[int, str] | None:
        """The lowest maxPriority on the queue's path, and the queue that sets it."""
        limits = [
            (limit, q)
            for q in self.nodes[name].path
            if (limit := self.nodes[q].queue.max_priority) is not None
        ]
        return min(limits, key=lambda pair: pair[0]) if limits else None


@dataclass(frozen=True)
class QueueChoice:
    """The queue a job runs in, or why it is refused (Invalid) or waits."""

    queue: str | None = None
    refused: str | None = None  # names the field to fix
    waiting: str | None = None


def choose_queue(
    namespace: str,
    requested: str | None,
    priority: int,
    queues: Sequence[Queue],
    default: str | None,
) -> QueueChoice:
    """spec.queue, else the one queue that lists the namespace, else the policy's
    defaultQueue; refused when the queue does not list the namespace or the priority is
    above the queue's maxPriority."""
    errors = check_queues(queues)
    by_name = {q.name: q for q in queues}
    listing = sorted(q.name for q in queues if namespace in q.namespaces)
    if requested is not None:
        name = requested
        if name not in by_name:
            return QueueChoice(waiting=f"queue {name} (spec.queue) does not exist")
        unlisted_default = name == default and not listing
        if namespace not in by_name[name].namespaces and not unlisted_default:
            return QueueChoice(
                refused=f"spec.queue: queue {name} does not list namespace {namespace} "
                "in spec.namespaces"
            )
    elif len(listing) == 1:
        name = listing[0]
    elif listing:
        return QueueChoice(
            waiting=f"namespace {namespace} is listed by queues {', '.join(listing)}: "
            "set spec.queue"
        )
    elif default is not None and default in by_name:
        name = default
    elif default is not None:
        return QueueChoice(waiting=f"the default queue {default} does not exist")
    else:
        return QueueChoice(
            waiting=f"no GPUQueue lists namespace {namespace} and AllocationPolicy "
            "spec.defaultQueue is not set"
        )
    if name in errors:
        return QueueChoice(waiting=f"queue {name} cannot be used: {errors[name]}")
    limit = QueueTree([q for q in queues if q.name not in errors], ()).max_priority(name)
    if limit is not None and priority > limit[0]:
        where = name if limit[1] == name else f"{limit[1]} (a parent of {name})"
        return QueueChoice(
            refused=f"spec.priority: {priority} is above the maxPriority {limit[0]} of "
            f"queue {where}"
        )
    return QueueChoice(queue=name)


def usage_by_product(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for product, gpus in pairs:
        out[product] = out.get(product, 0) + gpus
    return out


def bucket_usage(node: QueueNode, usage: Mapping[str, int]) -> dict[str, int]:
    """GPUs per bucket of a queue from GPUs per product."""
    return {b.key: sum(usage.get(p, 0) for p in b.products) for b in node.buckets}
