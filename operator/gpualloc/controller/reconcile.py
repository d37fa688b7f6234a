"""One planning round: observe -> decide -> actuate.

- observe (controller/observe.py): the informers' stores as one immutable ClusterState,
  once they have seen this replica's own writes of the last round;
- decide (controller/decide.py): pure, ClusterState -> Decision (the plan and the writes);
- actuate (controller/actuate.py): the writes, each job backing off alone on failure, and
  none once this replica may no longer write (lost lease).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpualloc.controller.actuate import Backoff, KubeActuator, actuate
from gpualloc.controller.decide import Memo, decide, key_of
from gpualloc.controller.observe import Observer
from gpualloc.k8s.client import Kube
from gpualloc.model import Plan, Policy, Snapshot

log = logging.getLogger("gpualloc.round")
Obj = dict[str, Any]


@dataclass
class RoundStats:
    status: str = "NONE"
    seconds: float = 0.0
    solve_seconds: float = 0.0
    gap: float = 0.0
    created: int = 0
    placed: int = 0
    evicted_jobs: int = 0
    failed_writes: int = 0
    plan: Plan | None = None
    snapshot: Snapshot = field(default_factory=lambda: Snapshot((), (), ()))
    policy: Policy = field(default_factory=Policy)
    policy_spec: Obj = field(default_factory=dict)
    jobs: list[Obj] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)  # job key -> phase


class NotSynced(Exception):
    """The informers have not listed everything yet: a round now would see half a cluster."""


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        observer: Observer | None = None,
        may_write: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kube = kube
        self.observer = observer
        self.may_write = may_write
        self.previous: Plan | None = None
        self.memo: Memo | None = None
        # from Prometheus (PrometheusInput swaps in new dicts; a round copies them once)
        self.unhealthy_gpus: dict[str, int] = {}  # node -> count
        self.desired_replicas: dict[str, int] = {}  # inference job key -> autoscaled count
        self.backoff = Backoff()
        self.seen: dict[str, int] = {}  # resource kind -> newest version this replica wrote
        self.recheck_in: float | None = None  # seconds until a placed pod's bind deadline

    def run_round(self) -> RoundStats:
        started = time.monotonic()
        if self.observer is None or not self.observer.synced(timeout=30):
            raise NotSynced("the informers have not listed the cluster yet")
        self.backoff.forget_changed(
            {
                key_of(j): (j.get("metadata") or {}).get("generation")
                for j in self.observer.jobs_now()
            }
        )
        state = self.observer.state(
            self.seen, self.unhealthy_gpus, self.desired_replicas, self.backoff.errors
        )
        read = time.monotonic()
        decision = decide(state, self.previous, self.memo)
        self.memo = decision.memo  # job parses reused next round (same result, less work)
        self.previous = decision.plan
        self.recheck_in = decision.recheck_in
        planned = time.monotonic()
        for note in decision.notes:
            log.warning("%s", note)
        jobs = {key_of(j): j for j in state.jobs}
        acted = actuate(
            decision.writes, KubeActuator(self.kube), self.backoff, jobs, self.may_write
        )
        self.seen = acted.versions
        done = time.monotonic()
        plan = decision.plan
        stats = RoundStats(
            status=plan.status,
            seconds=done - started,
            solve_seconds=plan.solve_seconds,
            gap=plan.gap,
            created=acted.created,
            placed=acted.placed,
            evicted_jobs=decision.evicted_jobs,
            failed_writes=acted.failed,
            plan=plan,
            snapshot=decision.snapshot,
            policy=decision.policy,
            policy_spec=((state.policy or {}).get("spec") or {}),
            jobs=list(state.jobs),
            phases=dict(decision.phases),
        )
        log.info(
            "round: %s in %.2fs (read %.2fs, decide %.2fs, act %.2fs; solve %.2fs): %d jobs, "
            "%d pods created, %d placed, %d evicted, %d unscheduled, %d refused, %d writes "
            "failed, %d held back",
            plan.status,
            stats.seconds,
            read - started,
            planned - read,
            done - planned,
            plan.solve_seconds,
            len(state.jobs),
            acted.created,
            acted.placed,
            decision.evicted_jobs,
            len(plan.unscheduled),
            len(decision.refused),
            acted.failed,
            acted.skipped,
        )
        return stats
