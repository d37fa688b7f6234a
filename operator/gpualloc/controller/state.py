"""What one round sees and what it decides to write: plain, immutable data. Pure.

`ClusterState` is built by observe (controller/observe.py) from the informers' stores; the
decide step (controller/decide.py) turns it into writes; actuate (controller/actuate.py) is
the only code that sends them. Every write names the job it serves, so a failing write backs
off that job alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class ClusterState:
    nodes: tuple[Obj, ...]
    pods: tuple[Obj, ...]
    jobs: tuple[Obj, ...]  # LLMTrainingJob and LLMInferenceJob objects
    services: tuple[Obj, ...] = ()  # gpualloc's rendezvous Services (label gpualloc.io/job)
    policy: Obj | None = None  # the AllocationPolicy named default
    unhealthy_gpus: Mapping[str, int] = field(default_factory=dict)  # node -> GPUs (DCGM)
    desired_replicas: Mapping[str, int] = field(default_factory=dict)  # job key -> autoscaled
    now: float = 0.0  # wall-clock seconds: object timestamps are wall clock
    write_failures: Mapping[str, str] = field(default_factory=dict)  # job key -> last error
    queues: tuple[Obj, ...] = ()  # GPUQueue objects; none: priorities alone decide


# -- the writes, in the order actuate sends them --------------------------------------------
@dataclass(frozen=True)
class DeletePod:
    job: str  # the job key this write serves
    namespace: str
    name: str
    grace_seconds: int | None = None  # None: the pod's own terminationGracePeriodSeconds
    evict: bool = False  # through the Eviction API (PodDisruptionBudgets apply)


@dataclass(frozen=True)
class PinPod:
    job: str
    namespace: str
    name: str
    patch: tuple[Obj, ...]  # JSON patch: narrow node affinity to one node, remove the gate


@dataclass(frozen=True)
class CreatePod:
    job: str
    pod: Obj
    placed: bool  # created already pinned (the plan places it) or gated (it waits)


@dataclass(frozen=True)
class CreateService:
    job: str
    service: Obj


@dataclass(frozen=True)
class PatchJobStatus:
    job: str
    kind: str
    namespace: str
    name: str
    status: Obj


@dataclass(frozen=True)
class RecordEvent:
    job: str
    obj: Obj  # the object the Event is about
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class PatchPolicyStatus:
    name: str
    status: Obj


@dataclass(frozen=True)
class PatchQueueStatus:
    name: str  # the GPUQueue (cluster-scoped)
    status: Obj  # a merge patch: keys that went away are null


Write = DeletePod | PinPod | CreatePod | CreateService | PatchJobStatus | RecordEvent
