"""Pure: a job's status and the Events to post, from its pods and this round's plan."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field, fields
from typing import Any

from gpualloc.controller.pods import is_gated, replica_index
from gpualloc.k8s.convert import JOB_LABEL, committed_node, pod_requests
from gpualloc.model import JobKind

Obj = dict[str, Any]
MAX_MESSAGE = 4096
MAX_NODES_COLUMN = 4096


@dataclass(frozen=True)
class Outcome:
    """What this round decided for one job."""

    placed: dict[int, tuple[str, int]] = field(default_factory=dict)  # replica -> (node, gpus)
    unscheduled: str | None = None  # the planner's reason
    evicted: str | None = None  # eviction reason
    moved: bool = False  # the eviction is a move (defragmentation): re-placed next
    span: str | None = None  # with spec.topology: 'spans 1 rack (zone-a/r1)'
    lost: bool = False  # pods were lost (node gone) and are being re-placed
    invalid: str | None = None  # the spec could not be used (or is not allowed)
    conflict: str | None = None  # a pod of its name exists that is not the job's
    restarts: int | None = None  # the gang is restarted after a worker failed (the count)
    gang_failed: bool = False  # a worker failed and no restart is left
    finished: bool = False  # ended earlier (Succeeded/Failed): the status stays
    write_error: str | None = None  # the last write for this job failed (backing off)
    events: tuple[tuple[str, str, str], ...] = ()  # more Events: (type, reason, message)


@dataclass(frozen=True)
class Report:
    status: Obj
    events: list[tuple[str, str, str]]  # (type, reason, message)


_PLACED = [f.name for f in fields(Outcome)].index("placed")  # the one unhashable field


def report_key(job: Obj, pods: list[Obj], outcome: Outcome, desired: int) -> Hashable | None:
    """Everything `job_report` reads but the time stamp, as a key: the job's and its pods'
    uid and resourceVersion (the API server bumps it on every change), the outcome, the
    desired replicas. None when an object lacks either (nothing to key it by) and for a
    move (it stamps lastMovedTime). Otherwise the stamp reaches only transition times, which
    `status_changed` ignores: where it was False for a key, it is False again for the same
    key at any stamp, with the same phase and Events, so decide may keep (phase, Events) by
    this key from round to round and skip the report."""
    if outcome.moved:
        return None
    objects = []
    for obj in (job, *pods):
        meta = obj.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        if uid is None or version is None:
            return None
        objects.append(uid)
        objects.append(version)
    decided = list(vars(outcome).values())  # every field, in declaration order
    decided[_PLACED] = tuple(sorted(outcome.placed.items()))
    return (*objects, *decided, desired)


def _condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    previous: list[Obj],
    generation: int,
    stamp: str,
) -> Obj:
    status = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == type_), None)
    changed = old is None or old.get("status") != status
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp if changed or old is None else old.get("lastTransitionTime"),
        "observedGeneration": generation,
    }


def job_report(job: Obj, pods: list[Obj], outcome: Outcome, desired: int, stamp: str) -> Report:
    """New status for `job` and the Events its change deserves."""
    meta = job["metadata"]
    old: Obj = job.get("status") or {}
    old_phase = old.get("phase", "Pending")
    generation = int(meta.get("generation", 1))
    training = job["kind"] == JobKind.TRAINING
    spec = job.get("spec") or {}
    minimum = (
        int(spec.get("minWorkers") or spec.get("workers") or 1)
        if training
        else int(spec.get("minReplicas", 1) or 1)
    )

    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    phases = [(p.get("status") or {}).get("phase", "Pending") for p in live]
    allocation: dict[int, tuple[str, int]] = {}
    for pod in live:
        node = committed_node(pod)
        if (
            node
            and not is_gated(pod)
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ):
            gpus = pod_requests(pod.get("spec") or {}, pod)[0]  # as the snapshot counts
            allocation[replica_index(pod)] = (node, gpus)
    allocation.update(outcome.placed)
    running = sum(1 for ph in phases if ph == "Running")

    message = ""
    if outcome.finished:
        return Report(dict(old), list(outcome.events))
    if outcome.invalid:
        phase, message = "Failed", outcome.invalid
    elif outcome.conflict:  # it cannot be placed until the squatting pod is gone
        phase, message = "Unschedulable", outcome.conflict
    elif outcome.restarts is not None:
        phase, message = (
            "Pending",
            f"restarting the gang after a worker failed ({outcome.restarts})",
        )
    elif training and ("Failed" in phases or outcome.gang_failed):
        phase, message = "Failed", "a worker failed"
    elif training and phases and len(phases) >= desired and all(p == "Succeeded" for p in phases):
        phase, message = "Succeeded", "all workers succeeded"
    elif outcome.evicted:
        phase, message = "Preempted", outcome.evicted
    elif allocation and len(allocation) >= minimum:
        phase = (
            "Running"
            if running >= min(minimum, len(allocation)) and running >= len(allocation)
            else "Allocated"
        )
        message = f"{len(allocation)}/{desired} placed"
        if outcome.span:
            message += f"; {outcome.span}"
    elif outcome.unscheduled:
        keep = old_phase == "Preempted" and outcome.unscheduled.startswith("preempted")
        phase = "Preempted" if keep else "Unschedulable"
        message = old.get("message", "") if keep else outcome.unscheduled
        hint = (old.get("unblock") or {}).get("message")  # controller/unblocker.py's answer
        if hint and not keep:
            message = f"{message}; to run now: {hint}"
    elif desired == 0:
        phase, message = "Pending", "scaled to 0 replicas"
    else:
        phase, message = "Pending", "waiting for the next planning round"
    if phase in ("Succeeded", "Failed") or outcome.conflict or outcome.restarts is not None:
        allocation = {}
    if outcome.write_error and phase not in ("Succeeded", "Failed"):
        message = f"{message}; the last API write failed, retrying: {outcome.write_error}"
    message = message[:MAX_MESSAGE]  # the CRD caps it: a longer status would be refused

    nodes = sorted({node for node, _ in allocation.values()})
    previous = old.get("conditions") or []
    status: Obj = {
        "phase": phase,
        "message": message,
        "gpus": sum(g for _, g in allocation.values()),
        "placed": len(allocation),
        "nodes": _nodes_column(nodes),
        "desiredReplicas": desired,
        "selector": f"{JOB_LABEL}={meta['name']}",
        "observedGeneration": generation,
        "allocation": [
            {"replica": r, "node": n, "gpus": g} for r, (n, g) in sorted(allocation.items())
        ],
        "conditions": [
            *(
                [_condition("Invalid", True, "Refused", message, previous, generation, stamp)]
                if outcome.invalid
                else []
            ),
            _condition(
                "Allocated",
                bool(allocation),
                "Placed" if allocation else phase,
                message,
                previous,
                generation,
                stamp,
            ),
            _condition(
                "Ready",
                phase in ("Running", "Succeeded"),
                phase,
                message,
                previous,
                generation,
                stamp,
            ),
        ],
    }

    moved = next((c for c in previous if c.get("type") == "Moved"), None)
    if outcome.moved:  # why and for whom; True until it is placed again
        moved = _condition("Moved", True, "Defragmentation", message, previous, generation, stamp)
        moved["lastTransitionTime"] = stamp
    elif moved is not None and moved.get("status") == "True" and phase in ("Allocated", "Running"):
        # placed again: the move is done (decide stops planning it first), its reason kept
        done = f"placed again after the move ({moved.get('message', '')})"[:MAX_MESSAGE]
        moved = _condition("Moved", False, "Replaced", done, previous, generation, stamp)
    if moved is not None:
        status["conditions"].append(moved)
    last_moved = stamp if outcome.moved else old.get("lastMovedTime")
    if last_moved:
        status["lastMovedTime"] = last_moved
    restarts = outcome.restarts if outcome.restarts is not None else old.get("restarts")
    if restarts:
        status["restarts"] = restarts
    events: list[tuple[str, str, str]] = list(outcome.events)
    if outcome.conflict and old.get("message") != message:
        events.append(("Warning", "Conflict", message))
    where = ", ".join(nodes)
    if phase in ("Allocated", "Running") and old_phase not in ("Allocated", "Running"):
        again = bool(old.get("allocation")) or old_phase == "Preempted" or outcome.lost
        events.append(
            (
                "Normal",
                "Rescheduled" if again else "Allocated",
                f"placed {len(allocation)} x {status['gpus'] // max(1, len(allocation))}"
                f" GPUs on {where}",
            )
        )
    elif outcome.lost and phase not in ("Failed", "Succeeded"):
        events.append(("Warning", "Rescheduled", "pods lost with their node; placing again"))
    # one event when a job starts waiting, not one per round as the numbers in it move
    if phase == "Unschedulable" and old_phase != "Unschedulable":
        events.append(("Warning", "Unschedulable", message))
    if outcome.evicted:
        events.append(
            ("Normal", "Moved", outcome.evicted)
            if outcome.moved
            else ("Warning", "Preempted", outcome.evicted)
        )
    if phase in ("Succeeded", "Failed") and old_phase != phase:
        events.append(("Normal" if phase == "Succeeded" else "Warning", phase, message))
    return Report(status, events)


def _nodes_column(nodes: list[str]) -> str:
    """The Nodes printer column: every node, or as many as fit and a count of the rest."""
    text = ",".join(nodes)
    if len(text) <= MAX_NODES_COLUMN:
        return text
    shown = text[: MAX_NODES_COLUMN - 32].rsplit(",", 1)[0]
    return f"{shown},... ({len(nodes) - shown.count(',') - 1} more)"


_STAMP = "lastTransitionTime"
_ABSENT = object()


def status_changed(old: Obj, new: Obj) -> bool:
    """Ignore timestamps: write the status only when something a user sees changed (any
    field, or any condition's field but its lastTransitionTime). Compared in place: decide
    asks this of every job every round."""
    old = old or {}
    if old == new:  # the usual case: a report keeps unchanged conditions' transition times
        return False
    if any(k != "conditions" and old.get(k, _ABSENT) != v for k, v in new.items()):
        return True
    if any(k != "conditions" and k not in new for k in old):
        return True
    before, after = old.get("conditions") or [], new.get("conditions") or []
    return len(before) != len(after) or any(map(_condition_changed, before, after))


def _condition_changed(old: Obj, new: Obj) -> bool:
    if len(old) - (_STAMP in old) != len(new) - (_STAMP in new):
        return True
    return any(k != _STAMP and new.get(k, _ABSENT) != v for k, v in old.items())
