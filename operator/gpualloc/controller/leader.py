"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

Only the holder plans and actuates; other replicas keep watching, ready to take over when
the lease is not renewed within its duration. Time is judged on the local monotonic clock
only, never by comparing our wall clock with a timestamp another host wrote:

- another holder's lease has expired when its record has not changed for leaseDurationSeconds
  since WE first saw it (client-go's observedTime);
- we lead while less than `renew_deadline` has passed since the start of our last successful
  renew. renew_deadline < lease_duration, so we stop acting before anyone may take over: the
  other replica's clock for our lease starts no earlier than our renew request was sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from gpualloc.k8s.client import Kube

log = logging.getLogger("gpualloc.leader")
Obj = dict[str, Any]
# client-go's JitterFactor: followers retry after retry_period * (1 + up to 1.2)
JITTER = 1.2


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        identity: str,
        name: str = "gpualloc-leader",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_duration > renew_deadline > JITTER * retry_period > 0:
            raise ValueError(
                "need lease_duration > renew_deadline > 1.2 * retry_period > 0, got "
                f"{lease_duration}, {renew_deadline}, {retry_period}"
            )
        self.kube = kube
        self.namespace = namespace
        self.identity = identity
        self.name = name
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self._renewed_at: float | None = None  # clock() when our last successful renew began
        self._observed: str | None = None  # the lease spec as last seen (raw, for comparison)
        self._observed_at = 0.0  # clock() when that spec was first seen
        self._reported = False  # for the "acquired"/"lost" log lines
        self.attempted_at = clock()  # when the last attempt ended, well or not (liveness)
        # one thread for every lease request: attempts never overlap, and a hung one holds
        # up only the next attempt, not the worker threads of the planning round
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._inflight: asyncio.Future[bool] | None = None

    # -- our own leadership (no I/O) ------------------------------------------------------
    def still_leading(self) -> bool:
        """True while less than renew_deadline has passed since our last successful renew
        began. Every write of a round checks this; it turns False on its own when renews
        stop succeeding, before another replica may take the lease."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() < renewed + self.renew_deadline

    @property
    def leading(self) -> bool:
        return self.still_leading()

    def renewed_within(self, seconds: float) -> bool:
        """Leading, and the last successful renew began less than `seconds` ago."""
        renewed = self._renewed_at
        return self.still_leading() and renewed is not None and self.clock() - renewed < seconds

    # -- one attempt -----------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One acquire-or-renew (blocking). True when the lease is ours now. An API error
        keeps the time of the last good renew, so still_leading() runs out by itself."""
        started = self.clock()
        try:
            ok = self._attempt(started)
            if ok:
                self._renewed_at = started
            return ok
        finally:
            self.attempted_at = self.clock()
            self._report()

    def _attempt(self, started: float) -> bool:
        lease = self.kube.read_lease(self.namespace, self.name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None, 0),
            }
            return self._wrote(self.kube.create_lease(self.namespace, body), body, started)
        spec: Obj = lease.get("spec") or {}
        raw = json.dumps(spec, sort_keys=True)
        if raw != self._observed:  # a change: the holder's lease runs from now, on OUR clock
            self._observed, self._observed_at = raw, started
        holder = spec.get("holderIdentity")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and started < self._observed_at + duration:
            self._renewed_at = None  # someone else holds a valid lease: we do not lead
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            lease["spec"] = self._spec(spec.get("acquireTime"), transitions)
        else:  # free or expired: take it over
            lease["spec"] = self._spec(None, transitions + 1)
        # optimistic: a 409 (someone else wrote first, e.g. took it over) is a failed attempt
        ok = self.kube.replace_lease(self.namespace, self.name, lease)
        return self._wrote(ok, lease, started)

    def _wrote(self, ok: bool, lease: Obj, started: float) -> bool:
        if ok:
            self._observed = json.dumps(lease["spec"], sort_keys=True)
            self._observed_at = started
        return ok

    def _spec(self, acquired: str | None, transitions: int) -> Obj:
        now = _micro(datetime.now(UTC))  # for people reading the lease, never for decisions
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.lease_duration),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def _report(self) -> None:
        leading = self.still_leading()
        if leading != self._reported:
            log.info(
                "%s leadership of lease %s/%s",
                "acquired" if leading else "lost",
                self.namespace,
                self.name,
            )
            self._reported = leading

    async def renew_now(self, timeout: float | None = None) -> bool:
        """try_acquire_or_renew on the lease thread; False on an API error or after
        `timeout` (default: the renew deadline) without an answer. While an attempt is
        still out, callers wait for that one instead of queueing more behind it."""
        if self._inflight is None or self._inflight.done():
            loop = asyncio.get_running_loop()
            self._inflight = loop.run_in_executor(self._pool, self.try_acquire_or_renew)
        limit = self.renew_deadline if timeout is None else timeout
        try:
            # shield: a caller giving up must not cancel the attempt another caller awaits
            return await asyncio.wait_for(asyncio.shield(self._inflight), limit)
        except TimeoutError:
            log.warning("lease %s/%s: no answer within %.0fs", self.namespace, self.name, limit)
        except Exception as err:
            log.warning("lease %s/%s: attempt failed: %s", self.namespace, self.name, err)
        return False

    def release(self) -> None:
        """Hand over at once on a clean shutdown instead of waiting for expiry. Stops
        acting first, then frees the lease (client-go's ReleaseOnCancel)."""
        if not self.still_leading():
            return
        self._renewed_at = None
        self._report()
        lease = self.kube.read_lease(self.namespace, self.name)
        if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            # free: the next replica takes it at once
            lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1)
            self.kube.replace_lease(self.namespace, self.name, lease)

    async def release_async(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.release)


async def follow_leadership(
    elector: LeaderElector, on_change: Callable[[bool], object], period: float = 0.5
) -> None:
    """Call on_change(leading) at start and whenever still_leading() flips. It flips to
    False also while a renew hangs, which no lease call would report."""
    leading = elector.still_leading()
    on_change(leading)
    while True:
        await asyncio.sleep(period)
        now = elector.still_leading()
        if now != leading:
            leading = now
            on_change(leading)
