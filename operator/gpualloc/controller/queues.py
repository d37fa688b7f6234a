"""GPUQueues in the decide step: read them, and report what the plan gave each one on its
status. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gpualloc.controller.state import PatchQueueStatus
from gpualloc.k8s.convert import SpecError, queue_from_k8s
from gpualloc.model import Plan, Queue
from gpualloc.solver.queues import check_queues

Obj = dict[str, Any]
_MAPS = ("usage", "borrowed", "nominal")


def read_queues(objs: Sequence[Obj]) -> tuple[list[Queue], dict[str, str]]:
    """The usable queues, and why each other one cannot be used (by name)."""
    queues: list[Queue] = []
    errors: dict[str, str] = {}
    for obj in objs:
        name = str((obj.get("metadata") or {}).get("name"))
        try:
            queues.append(queue_from_k8s(obj))
        except SpecError as err:
            errors[name] = f"{err.field}: {err.message}"
    # a child of a malformed queue names a parent that is not there: check_queues says so
    errors |= check_queues(queues)
    return queues, errors


def _status(report: Any, generation: int) -> Obj:
    nominal = sum(report.nominal.values())
    used = sum(report.usage.values())
    return {
        "usage": dict(report.usage),
        "nominal": dict(report.nominal),
        "borrowed": dict(report.borrowed),
        "gpus": f"{used}/{nominal}",
        "borrowedGPUs": sum(report.borrowed.values()),
        "pendingJobs": report.pending,
        "admittedJobs": report.admitted,
        "fairShare": report.fair_share,
        "observedGeneration": generation,
    }


def _condition(old: Obj, ok: bool, reason: str, message: str, stamp: str) -> Obj:
    status = "True" if ok else "False"
    previous = (
        next((c for c in old.get("conditions") or [] if c.get("type") == "Active"), None) or {}
    )
    same = previous.get("status") == status
    return {
        "type": "Active",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": previous.get("lastTransitionTime", stamp) if same else stamp,
    }


def queue_writes(
    objs: Sequence[Obj], plan: Plan, errors: Mapping[str, str], stamp: str
) -> list[PatchQueueStatus]:
    """A status patch for each queue whose status changed."""
    writes = []
    for obj in objs:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        generation = int(meta.get("generation") or 1)
        old: Obj = obj.get("status") or {}
        report = plan.queues.get(name)
        if name in errors or report is None:
            why = errors.get(name, "not planned this round")
            new: Obj = {"observedGeneration": generation, "gpus": "", "pendingJobs": 0}
            new["conditions"] = [_condition(old, False, "Invalid", why, stamp)]
        else:
            new = _status(report, generation)
            message = f"{new['gpus']} GPUs of nominal in use" + (
                f", {sum(report.borrowed.values())} borrowed"
                if any(report.borrowed.values())
                else ""
            )
            new["conditions"] = [_condition(old, True, "Planned", message, stamp)]
        if {k: old.get(k) for k in new} == new:
            continue
        patch = dict(new)
        for key in _MAPS:  # a merge patch keeps keys it does not name: null the ones gone
            gone = set(old.get(key) or {}) - set(new.get(key) or {})
            if gone:
                patch[key] = {**(new.get(key) or {}), **dict.fromkeys(gone)}
        writes.append(PatchQueueStatus(name, patch))
    return writes
