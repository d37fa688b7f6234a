"""Kopf handlers: watch what can change the best plan and wake the planning loop.

Handlers only mark the cluster dirty (no writes), so every replica may run them; the
loop plans and acts only on the replica holding the leader lease. Shared state lives in
Kopf's `memo`, not in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from typing import Any

import kopf
import kubernetes.client

from gpualloc.controller.leader import JITTER as LEASE_JITTER
from gpualloc.controller.leader import LeaderElector, follow_leadership
from gpualloc.controller.liveness import Liveness
from gpualloc.controller.liveness import round_deadline as liveness_round_deadline
from gpualloc.controller.observe import Observer
from gpualloc.controller.prometheus_input import PrometheusInput
from gpualloc.controller.reconcile import Reconciler
from gpualloc.controller.unblocker import Unblocker
from gpualloc.k8s.client import Kube, load_config
from gpualloc.metrics import exported as metrics

log = logging.getLogger("gpualloc.controller")


class Controller:
    """The debounced planning loop plus leader election."""

    def __init__(
        self,
        kube: Kube,
        elector: LeaderElector,
        debounce: float,
        resync: float,
        round_deadline: float | None = None,
    ) -> None:
        self.kube = kube
        self.elector = elector
        self.reconciler = Reconciler(kube)
        self.debounce = debounce
        self.resync = resync
        self.dirty = asyncio.Event()
        self.fingerprints: dict[str, Any] = {}
        self.rounds = 0
        self.planning = False  # a round is running
        self.unblocker: Unblocker | None = None  # answers status.unblock between rounds
        self.last_change = 0.0  # event-loop time of the latest poke
        # lambdas: read when /healthz is asked (the policy may change resync)
        self.liveness = Liveness(
            liveness_round_deadline(lambda: self.resync, round_deadline),
            lease_progress=lambda: self.elector.attempted_at,
        )

    def poke(self, key: str | None = None, fingerprint: Any = None) -> None:
        """Mark dirty; with a key, only when what matters about that object changed."""
        if key is not None:
            if self.fingerprints.get(key) == fingerprint:
                return
            if fingerprint is None:
                self.fingerprints.pop(key, None)
            else:
                self.fingerprints[key] = fingerprint
        self.last_change = asyncio.get_running_loop().time()
        self.dirty.set()

    async def run(self) -> None:
        while True:
            # a timeout is the periodic re-plan, or sooner when a placed pod's bind deadline
            # passes (nothing else would wake the loop for a pod that stays unbound)
            wait = min(self.resync, self.reconciler.recheck_in or self.resync)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.dirty.wait(), timeout=max(0.1, wait))
            await self._quiet()
            elector = self.elector
            # a round starts only right after a successful renew (within a retry period), so
            # it has most of a renew deadline ahead before its writes must stop (may_write)
            if elector.still_leading() and not elector.renewed_within(elector.retry_period):
                await elector.renew_now()
            if not elector.still_leading():
                continue  # a follower: the lease loop wakes us when we lead
            try:
                self.planning = True
                try:
                    stats = await asyncio.to_thread(self.reconciler.run_round)
                finally:
                    self.planning = False
                if self.unblocker is not None:
                    self.unblocker.offer(stats)
                metrics.record_round(stats)
                self.rounds += 1
                self.liveness.round_completed()
                self._apply_policy_timing(stats.policy_spec)
            except Exception:
                log.exception("planning round failed; retrying")
                metrics.ROUND_ERRORS.inc()
                await asyncio.sleep(1)
                self.dirty.set()

    async def _quiet(self) -> None:
        """Batch a burst: wait until nothing changed for `debounce` seconds (at most 10x).

        Sleeps exactly until the last change is `debounce` old, so a burst is planned as
        soon as it is over, not up to a whole extra `debounce` later."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10 * self.debounce
        while True:
            self.dirty.clear()
            wake = min(self.last_change + self.debounce, deadline)
            if wake <= loop.time():
                return
            await asyncio.sleep(wake - loop.time())

    async def renew(self) -> None:
        """The lease loop, as client-go's: the leader renews every retry period, followers
        try to acquire every 1 to 2.2 retry periods (jittered). A new leader plans at once."""
        elector = self.elector
        while True:
            was = elector.still_leading()
            now = await elector.renew_now()
            if now and not was:
                self.dirty.set()
            jitter = 0.0 if now else random.uniform(0, LEASE_JITTER)
            await asyncio.sleep(elector.retry_period * (1 + jitter))

    def _apply_policy_timing(self, spec: dict[str, Any]) -> None:
        self.debounce = float(spec.get("debounceSeconds", self.debounce))
        self.resync = float(spec.get("resyncSeconds", self.resync))


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf deep-copies every watched object on every event to diff it against the last
    handled state, for on.create/on.update handlers. gpualloc has none (it only reacts to
    raw events), and in a burst that copying took more CPU than the rest of Kopf."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo:
    """Kopf's watches use the same credentials as our client: --kubeconfig, $KUBECONFIG,
    ~/.kube/config or the in-cluster service account (read when the login happens)."""
    load_config(os.environ.get("KUBECONFIG"))
    cfg = kubernetes.client.Configuration.get_default_copy()
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _sep, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or ("Bearer" if token else None),
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.watching.server_timeout = int(os.environ.get("GPUALLOC_WATCH_TIMEOUT", "60"))
    # Kopf's own requests get deadlines too: a stalled connection fails and is retried
    settings.watching.connect_timeout = 10
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    # no Kopf resource handlers are left (informers watch everything); Kopf's CRD watch gives
    # up after ~1 min of apiserver outage, and a Kopf root task ending stops the operator
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = NoDiffBase()
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    kube_agent = f"gpualloc/{identity}"
    kube = Kube(user_agent=kube_agent)
    namespace = os.environ.get("GPUALLOC_LEASE_NAMESPACE", "default")
    renew_deadline = float(os.environ.get("GPUALLOC_RENEW_DEADLINE_SECONDS", "10"))
    # the lease on connections of its own, with a read timeout well inside the renew deadline:
    # a stale pooled connection costs one retry, not the leadership
    lease_kube = Kube(threads=1, user_agent=kube_agent, timeout=(2.0, renew_deadline / 3))
    elector = LeaderElector(
        lease_kube,
        namespace,
        identity,
        lease_duration=float(os.environ.get("GPUALLOC_LEASE_SECONDS", "15")),
        renew_deadline=renew_deadline,
        retry_period=float(os.environ.get("GPUALLOC_RETRY_PERIOD_SECONDS", "2")),
    )
    controller = Controller(
        kube,
        elector,
        debounce=float(os.environ.get("GPUALLOC_DEBOUNCE_SECONDS", "1")),
        resync=float(os.environ.get("GPUALLOC_RESYNC_SECONDS", "60")),
        round_deadline=float(os.environ.get("GPUALLOC_ROUND_DEADLINE_SECONDS") or 0) or None,
    )
    memo.controller = controller
    prometheus = PrometheusInput(
        kube, controller.reconciler, controller.poke, lambda: controller.elector.leading
    )
    # nodes, pods, jobs, Services and the policy are watched by informers (observe.py),
    # which poke the loop from their threads
    loop = asyncio.get_running_loop()

    def wake(key: str, fingerprint: Any) -> None:
        loop.call_soon_threadsafe(controller.poke, key, fingerprint)

    observer = Observer(kube, wake, int(os.environ.get("GPUALLOC_WATCH_TIMEOUT", "60")))
    controller.reconciler.observer = observer
    controller.reconciler.may_write = elector.still_leading

    def leadership(leading: bool) -> None:
        metrics.leadership_changed(leading)  # a former leader stops exporting leader gauges
        controller.liveness.leadership(leading)

    memo.observer = observer
    unblock_seconds = float(os.environ.get("GPUALLOC_UNBLOCK_SECONDS", "10"))
    if unblock_seconds > 0:
        controller.unblocker = Unblocker(
            kube,
            elector.still_leading,
            busy=lambda: controller.planning or controller.dirty.is_set(),
            pass_seconds=unblock_seconds,
        )
    liveness = controller.liveness
    for name, thread in observer.start().items():
        liveness.watch_thread(name, thread)
    loops = {
        "planning": controller.run(),
        "lease": controller.renew(),
        "leadership": follow_leadership(elector, leadership),
        "prometheus-input": prometheus.run(),
    }
    if controller.unblocker is not None:
        loops["unblock"] = controller.unblocker.run()
    memo.tasks = [asyncio.create_task(coro, name=name) for name, coro in loops.items()]
    for task in memo.tasks:
        liveness.watch_task(task.get_name(), task)
    health_port = int(os.environ.get("GPUALLOC_HEALTH_PORT") or 0)
    if health_port:  # 0.0.0.0: the kubelet probes the pod IP
        memo.tasks.append(asyncio.create_task(liveness.serve("0.0.0.0", health_port)))
    controller.dirty.set()
    log.info("gpualloc controller started as %s (lease %s/gpualloc-leader)", identity, namespace)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    for task in getattr(memo, "tasks", []):
        task.cancel()
    if getattr(memo, "observer", None) is not None:
        memo.observer.stop()
    controller = getattr(memo, "controller", None)
    if controller is not None:  # a hung lease call must not hold up the shutdown
        with contextlib.suppress(Exception):
            await asyncio.wait_for(controller.elector.release_async(), timeout=5)
