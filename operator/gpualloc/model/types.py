"""Plain, immutable data the planner works on: nodes, pods, jobs, policy, snapshot, plan.

Nothing here knows about Kubernetes objects; `gpualloc.k8s.convert` builds these from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

Labels = Mapping[str, str]


class JobKind(StrEnum):
    TRAINING = "LLMTrainingJob"
    INFERENCE = "LLMInferenceJob"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"  # NoSchedule | PreferNoSchedule | NoExecute


@dataclass(frozen=True)
class Toleration:
    key: str = ""  # empty key with operator Exists tolerates everything
    operator: str = "Equal"  # Equal | Exists
    value: str = ""
    effect: str = ""  # empty tolerates every effect

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


@dataclass(frozen=True)
class Requirement:
    """One node selector requirement: a label (or, with `field`, metadata.name) test."""

    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist | Gt | Lt
    values: tuple[str, ...] = ()
    field: bool = False  # matchFields (only metadata.name is supported by Kubernetes)


@dataclass(frozen=True)
class Node:
    name: str
    product: str
    gpus: int  # allocatable whole GPUs
    gpu_memory_mib: int
    cpu_milli: int
    memory_mib: int
    labels: Labels = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    cordoned: bool = False
    unhealthy_gpus: int = 0


@dataclass(frozen=True)
class RunningPod:
    """A pod that holds resources on a node: bound, or committed there by an earlier plan."""

    name: str  # namespace/name
    node: str
    gpus: int
    cpu_milli: int = 0
    memory_mib: int = 0
    job: str | None = None  # namespace/name of the gpualloc job owning it; None = unmanaged
    replica: int | None = None
    started: float = 0.0  # unix seconds it was placed (0 = unknown); newest is evicted first


@dataclass(frozen=True)
class NodeRequirements:
    """Where a job's pods may go, besides GPU capacity."""

    products: tuple[str, ...] = ()  # empty = any product
    min_gpu_memory_mib: int = 0
    node_selector: tuple[tuple[str, str], ...] = ()
    # required node affinity: OR over terms, AND within a term
    affinity_terms: tuple[tuple[Requirement, ...], ...] = ()
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True)
class TopologyRequest:
    """Where a job's replicas may go in the policy's topology (spec.topology): label keys of
    AllocationPolicy spec.topology.levels, or None."""

    required: str | None = None  # every replica inside one domain of this level
    preferred: str | None = None  # as few domains of this level as possible

    def __bool__(self) -> bool:
        return self.required is not None or self.preferred is not None


@dataclass(frozen=True)
class Job:
    """A gang (training) or a replica set (inference): `replicas` identical pods.

    The planner places between `min_replicas` and `replicas` of them, or none
    (all-or-nothing below `min_replicas`).
    """

    key: str  # namespace/name
    kind: JobKind
    priority: int
    replicas: int
    min_replicas: int
    gpus_per_replica: int
    cpu_milli: int = 0
    memory_mib: int = 0
    preemptible: bool = False
    created: float = 0.0  # unix seconds; older jobs win ties
    requirements: NodeRequirements = field(default_factory=NodeRequirements)
    queue: str | None = None  # the GPUQueue it runs in; None only when there are no queues
    estimated_gpu_hours: float | None = None  # the user's estimate (spec.estimatedGPUHours)
    topology: TopologyRequest = field(default_factory=TopologyRequest)
    # spec.movable: the plan may move its running pods elsewhere (defragmentation)
    movable: bool = False
    checkpoint_seconds: int | None = None  # spec.checkpoint.intervalSeconds: work lost if moved
    moved_at: float = 0.0  # unix seconds of its last move (status.lastMovedTime); 0 = never

    @property
    def namespace(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split("/", 1)[-1]


@dataclass(frozen=True)
class Defragmentation:
    """AllocationPolicy spec.defragmentation: when the plan may move movable jobs' pods to
    place a waiting job."""

    enabled: bool = True  # jobs opt in with spec.movable as well
    max_moves_per_round: int = 16  # moved pods
    min_runtime_seconds: int = 300  # a job younger than this is not moved
    cooldown_seconds: int = 1800  # nor one moved less than this ago


@dataclass(frozen=True)
class Policy:
    time_limit_seconds: float = 10.0
    relative_gap: float = 0.0  # stop once within this gap of the proven bound
    preemption: bool = True
    max_evictions_per_round: int | None = None  # None = unlimited
    throughput: Mapping[str, float] = field(default_factory=dict)  # product -> relative speed
    fragmentation_weight: int = 1
    throughput_weight: int = 1
    num_workers: int = 2
    # what a shared cluster needs: caps on what one tenant's job can make the operator do
    max_pods_per_job: int = 512
    grace_period_seconds: int = 30  # preempted pods get this long to checkpoint
    unbound_timeout_seconds: int = 120  # a placed pod still unbound after this is re-planned
    # pod template settings a job may use (serviceAccountName, privileged, hostPath, ...);
    # every other one is refused: creating a job must not grant more than creating a pod
    allowed_pod_settings: frozenset[str] = frozenset()
    # the GPUQueue for jobs of namespaces that no queue lists (None: they wait)
    default_queue: str | None = None
    # node label keys of the topology, widest first (zone, block, rack, NVLink clique)
    topology_levels: tuple[str, ...] = ()
    defragmentation: Defragmentation = field(default_factory=lambda: Defragmentation())


ANY_PRODUCT = "*"


@dataclass(frozen=True)
class QueueQuota:
    """A queue's GPUs of one product; `*` pools every product the queue lists no entry for."""

    product: str
    nominal: int  # guaranteed whenever the queue has the demand
    borrowing_limit: int | None = None  # most GPUs beyond nominal it may use; None = no limit
    lending_limit: int | None = None  # most of its unused nominal others may use; None = all


@dataclass(frozen=True)
class Queue:
    """A GPUQueue: the namespaces it serves, its quota, its place in the tree of queues."""

    name: str
    namespaces: tuple[str, ...] = ()
    parent: str | None = None  # children share the parent's quota
    quota: tuple[QueueQuota, ...] = ()
    weight: float = 1.0  # share of borrowable GPUs under contention (0: only what is left)
    max_priority: int | None = None  # jobs above it are refused
    reclaim_within_parent: bool = True  # may evict other queues' borrowing work for its nominal
    preempt_within_queue: bool = True  # withinQueue LowerPriority (False: Never)


@dataclass(frozen=True)
class Snapshot:
    nodes: tuple[Node, ...]
    pods: tuple[RunningPod, ...]
    jobs: tuple[Job, ...]
    queues: tuple[Queue, ...] = ()  # empty: one implicit queue, priorities alone decide
    now: float = 0.0  # unix seconds the snapshot was taken (0: unknown; nothing is moved)


@dataclass(frozen=True)
class Placement:
    job: str
    kind: JobKind
    replica: int
    node: str
    gpus: int


@dataclass(frozen=True)
class Eviction:
    job: str
    reason: str
    # a move: its pods are re-placed on these nodes in the same plan, for these jobs
    moved_to: tuple[str, ...] = ()
    for_jobs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unscheduled:
    job: str
    reason: str


@dataclass(frozen=True)
class QueueReport:
    """What the plan gives one queue (its whole subtree)."""

    usage: Mapping[str, int]  # product -> GPUs held after the plan
    nominal: Mapping[str, int]  # quota entry (product or *) -> nominal GPUs
    borrowed: Mapping[str, int]  # quota entry -> GPUs held beyond nominal
    pending: int  # jobs waiting
    admitted: int  # jobs placed or running
    fair_share: float  # borrowed GPUs / weight, the value weighted max-min fairness levels


@dataclass(frozen=True)
class Hold:
    """A preempted job kept off the nodes it was evicted from until the jobs its eviction made
    room for run there, so the next plan cannot hand the capacity straight back."""

    nodes: tuple[str, ...]
    for_jobs: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    status: str  # OPTIMAL | FEASIBLE | INFEASIBLE | UNKNOWN
    objective: float
    bound: float
    solve_seconds: float
    placements: tuple[Placement, ...] = ()
    evictions: tuple[Eviction, ...] = ()
    unscheduled: tuple[Unscheduled, ...] = ()
    # priority -> proven upper bound on GPUs its jobs can hold (given higher levels)
    level_bounds: Mapping[int, float] = field(default_factory=dict)
    queues: Mapping[str, QueueReport] = field(default_factory=dict)  # empty without queues
    holds: Mapping[str, Hold] = field(default_factory=dict)  # job key -> where it may not go
    # with moves: the solver status of choosing them (OPTIMAL: no set losing less work exists)
    moves_status: str = ""
    # set by the control loop: victims whose pods are still terminating -> the jobs their
    # eviction made room for, which wait for those GPUs instead of evicting anew
    room_for: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # ... and where each of those jobs goes once they are gone: its room, held for it
    reserved: Mapping[str, tuple[Placement, ...]] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Relative distance to the proven bound (0 = proven optimal)."""
        if self.bound == self.objective:
            return 0.0
        return abs(self.bound - self.objective) / max(1.0, abs(self.bound))

    def to_json(self) -> dict[str, object]:
        """The JSON contract of `gpualloc plan -o json` (DESIGN.md section 6)."""
        return (
            {
                "status": self.status,
                "objective": self.objective,
                "bound": self.bound,
                "solve_seconds": round(self.solve_seconds, 4),
                "placements": [
                    {
                        "job": p.job,
                        "kind": str(p.kind),
                        "replica": p.replica,
                        "node": p.node,
                        "gpus": p.gpus,
                    }
                    for p in self.placements
                ],
                "evictions": [
                    {"job": e.job, "reason": e.reason}
                    | (
                        {"moved_to": list(e.moved_to), "for": list(e.for_jobs)}
                        if e.moved_to
                        else {}
                    )
                    for e in self.evictions
                ],
                "unscheduled": [{"job": u.job, "reason": u.reason} for u in self.unscheduled],
            }
            | ({"queues": self._queues_json()} if self.queues else {})
            | ({"moves_status": self.moves_status} if self.moves_status else {})
        )

    def _queues_json(self) -> dict[str, object]:
        return {
            name: {
                "usage": dict(r.usage),
                "nominal": dict(r.nominal),
                "borrowed": dict(r.borrowed),
                "pending": r.pending,
                "admitted": r.admitted,
                "fairShare": r.fair_share,
            }
            for name, r in sorted(self.queues.items())
        }
