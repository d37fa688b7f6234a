"""Moves (defragmentation) through the decide step: the moved job's pods are evicted, it is
told why and for whom, and once they are gone it is placed first, on the capacity its move
counted on, with the gang it made room for."""

from __future__ import annotations

from typing import Any

import pytest

from gpualloc.controller.decide import iso
from gpualloc.controller.state import PinPod, RecordEvent
from tests.unit.test_decide import NOW, created, deleted, gang, node, pod_of, run, status

pytestmark = pytest.mark.unit
Obj = dict[str, Any]


def _started(pod: Obj, seconds_ago: float) -> Obj:
    pod["status"]["startTime"] = iso(NOW - seconds_ago)
    return pod


def test_a_move_evicts_reports_and_then_places_both() -> None:
    m = gang("m", 1, 4, movable=True)
    f = gang("f", 1, 4)
    g = gang("g", 1, 8)
    m_pod = _started(pod_of(m, 0, "n1"), 3600)
    f_pod = _started(pod_of(f, 0, "n2"), 3600)
    first = run([node("n1"), node("n2")], [m, f, g], [m_pod, f_pod])
    # round 1: m's pod is evicted (gracefully), not re-created yet; g waits for n1
    gone = deleted(first)
    assert set(gone) == {"m-worker-0"} and gone["m-worker-0"].evict
    assert "m-worker-0" not in created(first)
    moved = status(first, "m")
    assert moved["phase"] == "Preempted"
    assert moved["message"] == (
        "moved to n2 to make room for ns/g (the moves losing the least work, proven)"
    )
    assert moved["lastMovedTime"] == iso(NOW)
    (cond,) = [c for c in moved["conditions"] if c["type"] == "Moved"]
    assert cond["status"] == "True" and "ns/g" in cond["message"]
    events = [
        (w.reason, w.obj["metadata"]["name"]) for w in first.writes if isinstance(w, RecordEvent)
    ]
    assert ("Moved", "m") in events
    assert "n1 once the preempted pods there have terminated" in status(first, "g")["message"]

    # round 2: m's pod is gone; m is placed first (on n2), g on n1, in the same round
    m["status"], g["status"] = moved, status(first, "g")
    g_pods = [pod_of(g, 0)]  # created gated in round 1
    second = run([node("n1"), node("n2")], [m, f, g], [f_pod, *g_pods])
    assert created(second, placed=True) == {"m-worker-0": "n2"}
    (pin,) = [w for w in second.writes if isinstance(w, PinPod)]
    assert pin.name == "g-worker-0"
    assert "n1" in str(pin.patch[0]["value"])
    # placed again: the move is done (Moved False, its reason kept), the cooldown stays
    (cond,) = [c for c in status(second, "m")["conditions"] if c["type"] == "Moved"]
    assert cond["status"] == "False" and "ns/g" in cond["message"]
    assert status(second, "m")["lastMovedTime"] == iso(NOW)


def test_a_moved_job_preempted_later_is_not_planned_first_again() -> None:
    # m was moved 10 minutes ago and placed again (Moved False); then h (priority 100)
    # preempted it. m waits like any preempted job: it must not evict h back (a loop)
    done = {"type": "Moved", "status": "False", "reason": "Replaced", "message": "x"}
    m = gang(
        "m",
        1,
        8,
        movable=True,
        preemptible=True,
        status={"phase": "Preempted", "lastMovedTime": iso(NOW - 600), "conditions": [done]},
    )
    h = gang("h", 1, 8, priority=100, preemptible=True)
    d = run([node("n1")], [m, h], [_started(pod_of(h, 0, "n1"), 60)])
    assert not deleted(d)
    assert "m-worker-0" not in created(d, placed=True)


def test_a_job_that_is_not_movable_is_not_touched() -> None:
    m = gang("m", 1, 4)
    f = gang("f", 1, 4)
    g = gang("g", 1, 8)
    d = run(
        [node("n1"), node("n2")],
        [m, f, g],
        [_started(pod_of(m, 0, "n1"), 3600), _started(pod_of(f, 0, "n2"), 3600)],
    )
    assert not deleted(d)
    assert status(d, "g")["phase"] == "Unschedulable"


def test_a_waiting_job_message_carries_what_would_unblock_it() -> None:
    g = gang("g", 2, 8, status={"phase": "Unschedulable", "unblock": {"message": "evict ns/m"}})
    d = run([node("n1")], [g])
    assert status(d, "g")["message"].endswith("; to run now: evict ns/m")
    assert status(d, "g")["phase"] == "Unschedulable"
