"""The actuate step: the only code that writes to the API, through the small `Actuator`
interface (tests fake it).

Writes go in the decide step's order: deletions, pins, creates of placed pods, Services,
creates of queued pods, then statuses and Events. Each write is tried on its own: one that
fails backs off its job alone (exponential, jittered, capped) and is reported on the job;
the rest goes on. Before every batch the actuator asks `may_write()`: a replica that lost its
lease mid-round stops writing at once.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpualloc.controller.state import (
    CreatePod,
    CreateService,
    DeletePod,
    PatchJobStatus,
    PatchPolicyStatus,
    PatchQueueStatus,
    PinPod,
    RecordEvent,
    Write,
)
from gpualloc.k8s.informer import version_number

log = logging.getLogger("gpualloc.actuate")
Obj = dict[str, Any]


class Actuator(Protocol):
    """What gpualloc does to the cluster. Writes return the new resourceVersion (None when
    there is none: the object existed already, or is gone)."""

    def create_pod(self, pod: Obj) -> str | None: ...

    def pin_pod(self, namespace: str, name: str, patch: list[Obj]) -> str | None: ...

    def delete_pod(self, namespace: str, name: str, grace: int | None, evict: bool) -> bool: ...

    def create_service(self, service: Obj) -> str | None: ...

    def patch_job_status(self, kind: str, namespace: str, name: str, status: Obj) -> str | None: ...

    def record_event(self, obj: Obj, type_: str, reason: str, message: str) -> None: ...

    def patch_policy_status(self, name: str, status: Obj) -> None: ...

    def patch_queue_status(self, name: str, status: Obj) -> None: ...

    def map(self, fn: Callable[[Any], Any], items: list[Any], in_flight: int | None) -> Any: ...


class Outage(Exception):
    """Every write of a batch failed to reach the API server: the round fails as a whole."""


@dataclass
class Backoff:
    """Per job: after a failed write, its writes wait base x 2^(failures-1), jittered,
    capped; statuses and Events are still sent (they say what went wrong)."""

    base: float = 1.0
    cap: float = 300.0
    clock: Callable[[], float] = time.monotonic
    failures: dict[str, int] = field(default_factory=dict)
    until: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    generations: dict[str, Any] = field(default_factory=dict)  # of the job when it failed

    def waiting(self, job: str) -> bool:
        return self.clock() < self.until.get(job, 0.0)

    def forget_changed(self, generations: Mapping[str, Any]) -> None:
        """A job whose spec changed since its write failed starts afresh."""
        for job in [j for j, g in self.generations.items() if generations.get(j) != g]:
            self.ok(job)

    def fail(self, job: str, error: str, generation: Any = None) -> float:
        count = self.failures.get(job, 0) + 1
        self.failures[job] = count
        delay = min(self.cap, self.base * 2.0 ** (count - 1)) * random.uniform(0.8, 1.2)
        self.until[job] = self.clock() + delay
        self.errors[job] = error
        self.generations[job] = generation
        return delay

    def ok(self, job: str) -> None:
        self.failures.pop(job, None)
        self.until.pop(job, None)
        self.errors.pop(job, None)
        self.generations.pop(job, None)


@dataclass
class Acted:
    created: int = 0
    placed: int = 0
    failed: int = 0
    skipped: int = 0  # writes of jobs backing off
    stopped: bool = False  # leadership lost mid-round: the rest was not sent
    versions: dict[str, int] = field(default_factory=dict)  # resource kind -> newest version


# the kinds of objects each write changes (their informers must see it next round)
def _kind(write: Write | PatchPolicyStatus | PatchQueueStatus) -> str:
    if isinstance(write, (CreatePod, PinPod, DeletePod)):
        return "Pod"
    if isinstance(write, CreateService):
        return "Service"
    if isinstance(write, PatchJobStatus):
        return write.kind
    return ""


def actuate(
    writes: Iterable[Write | PatchPolicyStatus | PatchQueueStatus],
    api: Actuator,
    backoff: Backoff,
    jobs: Mapping[str, Obj],
    may_write: Callable[[], bool] = lambda: True,
) -> Acted:
    acted = Acted()
    batches: list[tuple[str, list[Write | PatchPolicyStatus | PatchQueueStatus], int | None]] = []
    for write in writes:
        stage, in_flight = _stage(write)
        if batches and batches[-1][0] == stage:
            batches[-1][1].append(write)
        else:
            batches.append((stage, [write], in_flight))
    failed_jobs: set[str] = set()
    tried_jobs: set[str] = set()
    for _stage_name, batch, in_flight in batches:
        if not may_write():
            log.warning("leadership lost mid-round: %d writes not sent", len(batch))
            acted.stopped = True
            return acted
        todo = []
        for write in batch:
            job = getattr(write, "job", "")
            if isinstance(write, (CreatePod, PinPod, DeletePod, CreateService)):
                if backoff.waiting(job):
                    acted.skipped += 1
                    continue
                tried_jobs.add(job)
            todo.append(write)
        # asked again before every write: a replica frozen mid-batch (GC pause, SIGSTOP) must
        # not send the rest of it once it resumes without the lease
        results = list(
            api.map(lambda w: _send(api, w) if may_write() else _NOT_SENT, todo, in_flight)
        )
        reached = 0
        for write, result in zip(todo, results, strict=True):
            if result is _NOT_SENT:
                acted.stopped = True
                reached += 1
                continue
            version, error, connected = result
            reached += connected
            job = getattr(write, "job", "")
            if error is not None:
                acted.failed += 1
                if isinstance(write, (CreatePod, PinPod, DeletePod, CreateService)):
                    failed_jobs.add(job)
                    generation = (jobs.get(job, {}).get("metadata") or {}).get("generation")
                    delay = backoff.fail(job, f"{type(write).__name__} {error}", generation)
                    log.warning("write for %s failed (retry in %.0fs): %s", job, delay, error)
                    if job in jobs:
                        _event(api, jobs[job], f"Failed{type(write).__name__}", error)
                else:
                    log.warning("write for %s failed: %s", job or "the policy", error)
                continue
            if isinstance(write, CreatePod) and version is not None:
                acted.created += 1
            if isinstance(write, PinPod) or (isinstance(write, CreatePod) and write.placed):
                acted.placed += 1
            kind = _kind(write)
            if kind and version is not None:
                acted.versions[kind] = max(acted.versions.get(kind, 0), version_number(version))
        if todo and not reached:
            raise Outage(f"none of {len(todo)} writes reached the API server")
    for job in tried_jobs - failed_jobs:
        backoff.ok(job)
    if acted.stopped:
        log.warning("leadership lost mid-round: the rest of the writes were not sent")
    return acted


_NOT_SENT = (None, None, 0)  # a write held back: this replica no longer leads


def _stage(write: Write | PatchPolicyStatus | PatchQueueStatus) -> tuple[str, int | None]:
    """Batches run in order; queued pods and Services go a few at a time, leaving the
    apiserver to the bindings users wait for."""
    if isinstance(write, CreatePod):
        return ("create-placed", None) if write.placed else ("create-queued", 4)
    if isinstance(write, CreateService):
        return "services", 4
    if isinstance(write, (PatchJobStatus, RecordEvent, PatchPolicyStatus, PatchQueueStatus)):
        return "report", None
    return type(write).__name__, None


def _send(
    api: Actuator, write: Write | PatchPolicyStatus | PatchQueueStatus
) -> tuple[str | None, str | None, int]:
    """(new resourceVersion, error message, 1 if the API server answered)."""
    try:
        version: str | None = None
        if isinstance(write, DeletePod):
            if not api.delete_pod(write.namespace, write.name, write.grace_seconds, write.evict):
                return None, "a PodDisruptionBudget refuses the eviction now", 1
        elif isinstance(write, PinPod):
            version = api.pin_pod(write.namespace, write.name, list(write.patch))
        elif isinstance(write, CreatePod):
            version = api.create_pod(write.pod)
        elif isinstance(write, CreateService):
            version = api.create_service(write.service)
        elif isinstance(write, PatchJobStatus):
            version = api.patch_job_status(write.kind, write.namespace, write.name, write.status)
        elif isinstance(write, RecordEvent):
            api.record_event(write.obj, write.type, write.reason, write.message)
        elif isinstance(write, PatchQueueStatus):
            api.patch_queue_status(write.name, write.status)
        else:
            api.patch_policy_status(write.name, write.status)
        return version, None, 1
    except Exception as err:
        status = getattr(err, "status", None)
        return None, f"{status or type(err).__name__}: {_reason(err)[:300]}", int(bool(status))


def _reason(err: Exception) -> str:
    """The API server's own message (its Status object), else what the error says."""
    body = getattr(err, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, AttributeError):
            return body
    return str(getattr(err, "reason", None) or err)


def _event(api: Actuator, job: Obj, reason: str, message: str) -> None:
    try:
        api.record_event(job, "Warning", reason, message)
    except Exception as err:
        log.warning("event on %s not recorded: %s", job.get("metadata", {}).get("name"), err)


class KubeActuator:
    """The Actuator over the real API (k8s/client.py)."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube

    def create_pod(self, pod: Obj) -> str | None:
        version: str | None = self.kube.create_pod(pod)
        return version

    def pin_pod(self, namespace: str, name: str, patch: list[Obj]) -> str | None:
        version: str | None = self.kube.json_patch_pod(namespace, name, patch)
        return version

    def delete_pod(self, namespace: str, name: str, grace: int | None, evict: bool) -> bool:
        if evict:
            return bool(self.kube.evict_pod(namespace, name, grace or 0))
        self.kube.delete_pod(namespace, name, grace)
        return True

    def create_service(self, service: Obj) -> str | None:
        version: str | None = self.kube.create_service(service)
        return version

    def patch_job_status(self, kind: str, namespace: str, name: str, status: Obj) -> str | None:
        version: str | None = self.kube.patch_job_status(kind, namespace, name, status)
        return version

    def record_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        self.kube.event(obj, reason, message, type_)

    def patch_policy_status(self, name: str, status: Obj) -> None:
        self.kube.patch_policy_status(name, status)

    def patch_queue_status(self, name: str, status: Obj) -> None:
        self.kube.patch_queue_status(name, status)

    def map(self, fn: Callable[[Any], Any], items: list[Any], in_flight: int | None) -> Any:
        return self.kube.map(fn, items, in_flight)
