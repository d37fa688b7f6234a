"""The aggregated planning instance: jobs grouped into shapes, nodes into classes.

A naive model has a variable per (worker, node). Here jobs that are interchangeable for
placement (same GPUs, CPU, memory, node requirements and priority) form one *shape*, and
nodes that are interchangeable (same kind and free capacity) form one *class*; the model
counts replicas per (shape, class). A class of several nodes is kept only where that count
model is exact (see `_aggregation_is_exact`); otherwise its nodes become classes of one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from gpualloc.model import (
    Job,
    Node,
    NodeRequirements,
    Policy,
    RunningPod,
    Snapshot,
    TopologyRequest,
)
from gpualloc.solver import topology
from gpualloc.solver.capacity import Free, free_capacity, usage_by_node
from gpualloc.solver.eligibility import eligible
from gpualloc.solver.order import planning_order
from gpualloc.solver.queues import QueueTree


@dataclass(frozen=True)
class ShapeKey:
    gpus: int
    cpu_milli: int
    memory_mib: int
    priority: int
    requirements: NodeRequirements
    queue: str | None = None  # jobs of different queues count against different quotas
    preemptible: bool | None = None  # with queues only: a job that is not runs within nominal
    topology: TopologyRequest | None = None  # spec.topology, if the job asks for any


@dataclass
class Shape:
    key: ShapeKey
    jobs: list[int] = field(default_factory=list)  # indexes into Instance.jobs
    classes: list[int] = field(default_factory=list)  # eligible node classes


@dataclass
class JobState:
    job: Job
    running: list[RunningPod]
    lo: int  # fewest new replicas if any are placed (gang minimum)
    hi: int  # most new replicas
    evictable: bool
    shape: int = -1
    # defragmentation: a running movable job is a victim whose eviction can be a move, and
    # its copy (clone_of = its index) is a pending job placed only when it is moved
    movable: bool = False
    clone_of: int | None = None

    @property
    def running_gpus(self) -> int:
        return sum(p.gpus for p in self.running)


@dataclass
class NodeClass:
    nodes: list[Node]
    free: Free
    fully_free: bool  # every node in it is empty: counts towards whole free nodes
    # evictable running jobs on this (single) node: job index -> (gpus, cpu, memory) held
    victims: dict[int, Free] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def representative(self) -> Node:
        return self.nodes[0]


@dataclass
class Instance:
    jobs: list[JobState]
    shapes: list[Shape]
    classes: list[NodeClass]
    free_by_node: dict[str, Free]
    max_node_gpus: int
    queues: QueueTree | None = None  # None: no GPUQueue, priorities alone decide
    node_product: dict[str, str] = field(default_factory=dict)  # with queues only
    # GPUs per product that queued jobs may hold (unmanaged pods and unhealthy GPUs out)
    product_capacity: dict[str, int] = field(default_factory=dict)
    levels: tuple[str, ...] = ()  # the policy's topology levels, widest first
    node_by_name: dict[str, Node] = field(default_factory=dict)
    clones: dict[int, int] = field(default_factory=dict)  # movable job -> its copy
    now: float = 0.0  # the snapshot's time (lost work of a move is counted up to it)


def _node_kind(node: Node, keys: frozenset[str], named: frozenset[str]) -> tuple[object, ...]:
    """Everything about a node that eligibility can look at: only the labels some job selects
    on (every real node has a unique hostname label), its name only if a job names it."""
    return (
        node.product,
        node.gpu_memory_mib,
        node.gpus,
        tuple(sorted((k, v) for k, v in node.labels.items() if k in keys)),
        node.taints,
        node.cordoned,
        node.name if node.name in named else None,
    )


def _selected(jobs: Sequence[Job]) -> tuple[frozenset[str], frozenset[str]]:
    """(label keys, node names) that jobs' selectors and affinities refer to."""
    keys: set[str] = set()
    names: set[str] = set()
    for job in jobs:
        keys.update(k for k, _ in job.requirements.node_selector)
        for term in job.requirements.affinity_terms:
            for req in term:
                if req.field:
                    names.update(req.values)
                else:
                    keys.add(req.key)
    return frozenset(keys), frozenset(names)


def _aggregation_is_exact(cls: NodeClass, shapes: Sequence[ShapeKey]) -> bool:
    """Counting replicas per class equals packing them node by node when:

    - the GPU sizes form a divisibility chain (1 | 2 | 4 | 8): then per-size capacity
      limits are necessary and sufficient (first-fit decreasing attains them), and
    - CPU and memory cannot bind: a node full of GPUs of the hungriest shape still fits.
    """
    sizes = sorted({s.gpus for s in shapes})
    if any(b % a for a, b in pairwise(sizes)):
        return False
    free = cls.free
    for s in shapes:
        slots = free.gpus // s.gpus
        if slots * s.cpu_milli > free.cpu_milli or slots * s.memory_mib > free.memory_mib:
            return False
    return True


def may_move(state: JobState, snapshot: Snapshot, policy: Policy) -> bool:
    """A running job the plan may move (AllocationPolicy spec.defragmentation): movable,
    wholly placed, running long enough, not moved within the cooldown. Not with GPUQueues
    (their reclaim rules decide whose capacity a victim frees)."""
    rules, job, pods = policy.defragmentation, state.job, state.running
    if not (rules.enabled and rules.max_moves_per_round and job.movable and pods):
        return False
    if snapshot.queues or not snapshot.now or state.hi or len(pods) < job.replicas:
        return False
    started = min(p.started for p in pods)
    return (
        started > 0
        and snapshot.now - started >= rules.min_runtime_seconds
        and (not job.moved_at or snapshot.now - job.moved_at >= rules.cooldown_seconds)
    )


def lost_gpu_seconds(state: JobState, now: float) -> int:
    """The work a move loses: GPU-seconds since the job's last checkpoint (since it started
    when it does not say how often it checkpoints)."""
    job = state.job
    lost = 0.0
    for pod in state.running:
        ran = max(0.0, now - pod.started)
        if job.checkpoint_seconds:
            ran %= job.checkpoint_seconds
        lost += pod.gpus * ran
    return round(lost)


def build_instance(snapshot: Snapshot, policy: Policy) -> Instance:
    jobs_by_key = {j.key: j for j in snapshot.jobs}
    running: dict[str, list[RunningPod]] = defaultdict(list)
    for pod in snapshot.pods:
        if pod.job in jobs_by_key:
            running[pod.job].append(pod)

    states: list[JobState] = []
    for job in planning_order(snapshot.jobs):
        pods = running.get(job.key, [])
        hi = max(0, job.replicas - len(pods))
        lo = max(1, job.min_replicas - len(pods))
        evictable = bool(pods) and job.preemptible and policy.preemption
        states.append(JobState(job, pods, min(lo, hi) if hi else 0, hi, evictable))
    clones: dict[int, int] = {}
    for index, state in enumerate(list(states)):
        if may_move(state, snapshot, policy):
            state.movable = state.evictable = True
            clones[index] = len(states)
            size = state.job.replicas
            states.append(JobState(state.job, [], size, size, False, clone_of=index))

    victims_on: dict[str, dict[int, Free]] = defaultdict(dict)
    for index, state in enumerate(states):
        if state.evictable:
            for node, held in usage_by_node(state.running).items():
                victims_on[node][index] = held

    usage = usage_by_node(snapshot.pods)
    free_by_node = {n.name: free_capacity(n, usage.get(n.name)) for n in snapshot.nodes}

    # shapes
    shape_index: dict[ShapeKey, int] = {}
    shapes: list[Shape] = []
    for index, state in enumerate(states):
        if state.hi == 0:
            continue
        j = state.job
        key = ShapeKey(
            j.gpus_per_replica,
            j.cpu_milli,
            j.memory_mib,
            j.priority,
            j.requirements,
            j.queue,
            j.preemptible if snapshot.queues else None,
            j.topology or None,
        )
        if key not in shape_index:
            shape_index[key] = len(shapes)
            shapes.append(Shape(key))
        state.shape = shape_index[key]
        shapes[state.shape].jobs.append(index)

    # node classes: group identical nodes, single out nodes holding evictable pods
    keys, named = _selected(snapshot.jobs)
    # classes stay inside one domain of every level some job asks for
    domain_keys = topology.used_keys(snapshot.jobs, policy.topology_levels)
    groups: dict[tuple[object, ...], list[Node]] = defaultdict(list)
    singles: list[NodeClass] = []
    for member in snapshot.nodes:
        free = free_by_node[member.name]
        empty = member.name not in usage and member.unhealthy_gpus == 0
        if member.name in victims_on:
            singles.append(NodeClass([member], free, empty, victims_on[member.name]))
        elif free.gpus > 0:
            kind = (
                *_node_kind(member, keys, named),
                topology.grouping_key(member, domain_keys),
                free.gpus,
                free.cpu_milli,
                free.memory_mib,
                empty,
            )
            groups[kind].append(member)

    classes: list[NodeClass] = []
    for members in groups.values():
        free = free_by_node[members[0].name]
        empty = members[0].name not in usage and members[0].unhealthy_gpus == 0
        cls = NodeClass(sorted(members, key=lambda n: n.name), free, empty)
        fitting = [
            s.key
            for s in shapes
            if s.key.gpus <= free.gpus and eligible(s.key.requirements, cls.representative)
        ]
        if cls.size == 1 or _aggregation_is_exact(cls, fitting):
            classes.append(cls)
        else:
            classes.extend(NodeClass([n], free, empty) for n in cls.nodes)
    classes.extend(singles)

    levels = policy.topology_levels
    for ci, cls in enumerate(classes):
        capacity = cls.free.gpus + sum(v.gpus for v in cls.victims.values())
        rep = cls.representative
        for shape in shapes:
            req = shape.key.topology or TopologyRequest()
            if (
                shape.key.gpus <= capacity
                and eligible(shape.key.requirements, rep)
                and topology.allowed(req, rep, levels)
            ):
                shape.classes.append(ci)

    max_gpus = max((n.gpus for n in snapshot.nodes), default=0)
    inst = Instance(states, shapes, classes, free_by_node, max_gpus, levels=levels)
    inst.clones, inst.now = clones, snapshot.now
    inst.node_by_name = {n.name: n for n in snapshot.nodes}
    if snapshot.queues:
        inst.queues = QueueTree(snapshot.queues, {n.product for n in snapshot.nodes})
        inst.node_product = {n.name: n.product for n in snapshot.nodes}
        others = usage_by_node(p for p in snapshot.pods if p.job not in jobs_by_key)
        for n in snapshot.nodes:
            taken = others[n.name].gpus if n.name in others else 0
            usable = max(0, n.gpus - n.unhealthy_gpus - taken)
            inst.product_capacity[n.product] = inst.product_capacity.get(n.product, 0) + usable
    return inst
