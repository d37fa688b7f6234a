"""Leader election on the local monotonic clock: takeover only after the holder's lease has
not changed for its duration as WE observed it, and a leader that cannot renew stops acting
(still_leading() False) before anyone may take over. Two electors share an in-memory Lease
store with the apiserver's optimistic concurrency (resourceVersion, 409 on a stale write)."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any, cast

import pytest

from gpualloc.controller.leader import LeaderElector

Obj = dict[str, Any]


class Leases:
    """The apiserver's side of one namespace's Leases: get, create (409 if it exists),
    update (409 unless the resourceVersion matches). `down` makes every call raise."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.version = 0
        self.writes: list[str] = []  # the identity in each accepted write
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("apiserver unreachable")

    def read_lease(self, namespace: str, name: str) -> Obj | None:
        self._check()
        found = self.objects.get(name)
        return copy.deepcopy(found) if found else None

    def _store(self, name: str, lease: Obj) -> None:
        self.version += 1
        lease = copy.deepcopy(lease)
        lease["metadata"]["resourceVersion"] = str(self.version)
        self.objects[name] = lease
        self.writes.append(lease["spec"].get("holderIdentity") or "")

    def create_lease(self, namespace: str, lease: Obj) -> bool:
        self._check()
        name = lease["metadata"]["name"]
        if name in self.objects:
            return False
        self._store(name, lease)
        return True

    def replace_lease(self, namespace: str, name: str, lease: Obj) -> bool:
        self._check()
        current = self.objects.get(name)
        if current is None or current["metadata"]["resourceVersion"] != lease["metadata"].get(
            "resourceVersion"
        ):
            return False
        self._store(name, lease)
        return True


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def elector(leases: Leases, identity: str, clock: Clock, **timing: float) -> LeaderElector:
    return LeaderElector(cast(Any, leases), "ns", identity, clock=clock, **timing)


def test_the_first_replica_leads_and_the_second_follows() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew() and a.still_leading()
    assert not b.try_acquire_or_renew() and not b.still_leading()
    assert leases.objects["gpualloc-leader"]["spec"]["holderIdentity"] == "a"


def test_takeover_waits_a_lease_duration_of_the_followers_own_clock() -> None:
    """The holder stopped renewing. Its renewTime, written by its wall clock, says nothing to
    the follower: it waits until the record has been unchanged for 15 s since it saw it."""
    leases, clock_a, clock_b = Leases(), Clock(), Clock(50_000.0)  # unrelated clocks
    a, b = elector(leases, "a", clock_a), elector(leases, "b", clock_b)
    assert a.try_acquire_or_renew()
    # another host's timestamps far in the past (or the future): never compared with ours
    leases.objects["gpualloc-leader"]["spec"]["renewTime"] = "1970-01-01T00:00:00.000000Z"
    assert not b.try_acquire_or_renew()  # first sight: the lease runs from now on b's clock
    for _ in range(7):
        clock_b.now += 2
        assert not b.try_acquire_or_renew()  # 14 s without a change: still a's
    clock_b.now += 1.5
    assert b.try_acquire_or_renew() and b.still_leading()
    spec = leases.objects["gpualloc-leader"]["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)


def test_each_renew_restarts_the_followers_wait() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew()
    for _ in range(20):  # 40 s of renews every 2 s: b never takes over
        assert not b.try_acquire_or_renew()
        clock.now += 2
        assert a.try_acquire_or_renew()
    assert leases.objects["gpualloc-leader"]["spec"]["holderIdentity"] == "a"


def test_a_leader_that_cannot_renew_stops_before_its_lease_can_be_taken() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b observes the lease now
    leases.down = True  # a's renews fail from here on
    acting: list[tuple[float, bool]] = []
    for _ in range(16):
        clock.now += 1
        with pytest.raises(ConnectionError):
            a.try_acquire_or_renew()
        acting.append((clock.now, a.still_leading()))
    leases.down = False
    assert b.try_acquire_or_renew()  # 16 s after b last saw a change: a stopped 6 s before
    stopped = min(t for t, leading in acting if not leading)
    assert stopped == 1000.0 + 10  # the renew deadline, without any answer from the API
    assert all(leading for t, leading in acting if t < stopped)


def test_still_leading_needs_no_io() -> None:
    leases, clock = Leases(), Clock()
    a = elector(leases, "a", clock)
    assert a.try_acquire_or_renew()
    leases.down = True
    clock.now += 9.9
    assert a.still_leading() and a.renewed_within(10) and not a.renewed_within(2)
    clock.now += 0.2
    assert not a.still_leading() and not a.leading


def test_a_paused_leader_that_resumes_learns_it_lost_and_writes_nothing() -> None:
    """SIGSTOP: the clocks run on while the leader is stopped. When it resumes it is not
    leading (no I/O needed), and its next attempt sees b's lease and writes nothing."""
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.now += 15.5  # a is paused
    assert b.try_acquire_or_renew()
    writes = len(leases.writes)
    assert not a.still_leading()  # before any request
    assert not a.try_acquire_or_renew()
    assert len(leases.writes) == writes
    clock.now += 14  # b keeps renewing; a keeps seeing changes and never takes over
    assert b.try_acquire_or_renew() and not a.try_acquire_or_renew()


class ReadsOnce:
    """Answers every read with one snapshot (a read that happened before the others wrote);
    writes go to the real store."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.snapshot = leases.read_lease("ns", "gpualloc-leader")

    def read_lease(self, namespace: str, name: str) -> Obj | None:
        return copy.deepcopy(self.snapshot)

    def replace_lease(self, namespace: str, name: str, lease: Obj) -> bool:
        return self.leases.replace_lease(namespace, name, lease)


def test_two_followers_race_for_an_expired_lease_and_one_wins() -> None:
    leases, clock = Leases(), Clock()
    a, b, c = (elector(leases, x, clock) for x in "abc")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += 16
    b.kube = c.kube = cast(Any, ReadsOnce(leases))  # both read the expired record first
    assert b.try_acquire_or_renew()
    assert not c.try_acquire_or_renew()  # 409: its update carried the old resourceVersion
    assert leases.objects["gpualloc-leader"]["spec"]["holderIdentity"] == "b"
    assert b.still_leading() and not c.still_leading()


def test_release_hands_over_at_once() -> None:
    leases, clock = Leases(), Clock()
    a, b = elector(leases, "a", clock), elector(leases, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.still_leading()
    assert b.try_acquire_or_renew()  # no wait for expiry


def test_timing_must_leave_the_renew_deadline_inside_the_lease() -> None:
    leases, clock = Leases(), Clock()
    for bad in ({"renew_deadline": 15.0}, {"renew_deadline": 2.0, "retry_period": 2.0}):
        with pytest.raises(ValueError):
            elector(leases, "a", clock, **bad)
    short = elector(leases, "a", clock, lease_duration=4, renew_deadline=2.5, retry_period=0.5)
    assert short.try_acquire_or_renew()
    assert leases.objects["gpualloc-leader"]["spec"]["leaseDurationSeconds"] == 4


def test_a_hung_attempt_is_awaited_not_queued_behind() -> None:
    """While one attempt hangs, renew_now gives up after its timeout and later callers wait
    for that same attempt: the lease thread never builds a queue of stale attempts."""
    leases, clock = Leases(), Clock()
    a = elector(leases, "a", clock)
    gate, calls = threading.Event(), []

    def hanging_read(namespace: str, name: str) -> Obj | None:
        calls.append(name)
        gate.wait(5)
        return None

    leases_read = leases.read_lease
    a.kube = cast(Any, type("Hung", (), {})())
    a.kube.read_lease = hanging_read
    a.kube.create_lease = leases.create_lease

    async def scenario() -> tuple[bool, bool, bool]:
        first = await a.renew_now(timeout=0.05)
        second = await a.renew_now(timeout=0.05)
        gate.set()
        third = await a.renew_now(timeout=2)  # the same attempt, now answered
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert (first, second, third) == (False, False, True)
    assert len(calls) == 1 and leases_read("ns", "gpualloc-leader") is not None
