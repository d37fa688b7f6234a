"""`status.unblock` of waiting jobs: what would let each run now (solver/unblock.py).

Off the planning path: it works between rounds on the last round's snapshot, one job at a
time with a budget per job and per pass, gives way as soon as a new round is due, rests as
long as it worked (at most half the time), uses one solver worker, and writes only while
this replica leads. A job is answered again at most
once per `interval`; an answer is written only when it changed, and cleared once the job
no longer waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gpualloc.controller.decide import key_of
from gpualloc.controller.reconcile import RoundStats
from gpualloc.k8s.client import Kube
from gpualloc.solver.unblock import unblock

log = logging.getLogger("gpualloc.unblock")


class Unblocker:
    def __init__(
        self,
        kube: Kube,
        may_write: Callable[[], bool],
        busy: Callable[[], bool],
        per_job_seconds: float = 2.0,
        pass_seconds: float = 10.0,
        interval: float = 60.0,
    ) -> None:
        self.kube = kube
        self.may_write = may_write
        self.busy = busy  # a round is running or due: give way
        self.per_job_seconds = per_job_seconds
        self.pass_seconds = pass_seconds
        self.interval = interval
        self.latest: RoundStats | None = None
        self.offered = asyncio.Event()
        self.answered: dict[str, float] = {}  # job key -> monotonic time of its last answer
        self.written: dict[str, Any] = {}  # job key -> the status.unblock it has now

    def offer(self, stats: RoundStats) -> None:
        """The round that just finished (replaces one not yet worked on)."""
        self.latest = stats
        self.offered.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.offered.wait(), timeout=self.interval)
            self.offered.clear()
            if self.latest is None:
                continue
            started = time.monotonic()
            try:
                await self._pass(self.latest)
            except Exception:  # one bad answer must not stop the others, nor the operator
                log.exception("unblock pass failed")
            # at most half the time between rounds: a busy cluster plans every few seconds
            await asyncio.sleep(time.monotonic() - started)

    async def _pass(self, stats: RoundStats) -> None:
        if stats.plan is None or not self.may_write():
            return
        objects = {key_of(j): j for j in stats.jobs}
        for gone in (self.written.keys() | self.answered.keys()) - objects.keys():
            self.written.pop(gone, None)
            self.answered.pop(gone, None)
        planned = {j.key for j in stats.snapshot.jobs}
        waiting = [u.job for u in stats.plan.unscheduled if u.job in planned]
        for key, obj in objects.items():  # answers of jobs that no longer wait
            has = ((obj.get("status") or {}).get("unblock")) is not None
            if key not in waiting and (has or self.written.get(key) is not None):
                await self._write(obj, None)
        now = time.monotonic()
        due = sorted(
            (k for k in waiting if now - self.answered.get(k, -1e9) >= self.interval),
            key=lambda k: self.answered.get(k, -1e9),
        )
        deadline = now + self.pass_seconds
        policy = replace(stats.policy, num_workers=1)
        for key in due:
            if self.busy() or self.offered.is_set() or time.monotonic() >= deadline:
                return
            seconds = min(self.per_job_seconds, deadline - time.monotonic())
            answer = await asyncio.to_thread(
                unblock, stats.snapshot, policy, key, time.time(), seconds
            )
            self.answered[key] = time.monotonic()
            if key in objects:
                await self._write(objects[key], answer.as_status())

    async def _write(self, obj: dict[str, Any], status: dict[str, Any] | None) -> None:
        key = key_of(obj)
        if self.written.get(key, "unknown") == status or not self.may_write():
            return
        meta = obj.get("metadata") or {}
        try:
            await asyncio.to_thread(
                self.kube.patch_job_status,
                obj.get("kind", ""),
                meta.get("namespace", "default"),
                meta.get("name", ""),
                {"unblock": status},
            )
        except Exception as err:  # reported; the next pass tries again
            log.warning("could not write status.unblock of %s: %s", key, err)
            return
        self.written[key] = status
