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
import socket
from typing import Any

import kopf
import kubernetes.client

from gpualloc.controller.leader import LeaderElector
from gpualloc.controller.podwatch import PodWatch, pod_fingerprint, pod_key
from gpualloc.controller.prometheus_input import PrometheusInput
from gpualloc.controller.reconcile import Reconciler
from gpualloc.k8s.client import Kube, load_config
from gpualloc.metrics import exported as metrics

log = logging.getLogger("gpualloc.controller")


class Controller:
    """The debounced planning loop plus leader election."""

    def __init__(self, kube: Kube, elector: LeaderElector, debounce: float, resync: float) -> None:
        self.kube = kube
        self.elector = elector
        self.reconciler = Reconciler(kube)
        self.debounce = debounce
        self.resync = resync
        self.dirty = asyncio.Event()
        self.fingerprints: dict[str, Any] = {}
        self.rounds = 0
        self.last_change = 0.0  # event-loop time of the latest poke

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
            with contextlib.suppress(TimeoutError):  # a timeout is the periodic re-plan
                await asyncio.wait_for(self.dirty.wait(), timeout=self.resync)
            await self._quiet()
            try:
                leading = await asyncio.to_thread(self.elector.try_acquire_or_renew)
            except Exception:
                log.exception("leader election failed")
                leading = False
            metrics.IS_LEADER.set(1 if leading else 0)
            if not leading:
                continue
            try:
                stats = await asyncio.to_thread(self.reconciler.run_round)
                metrics.record_round(stats)
                self.rounds += 1
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
        """Keep the lease while idle; a new leader plans at once."""
        while True:
            await asyncio.sleep(self.elector.duration / 3)
            was = self.elector.leading
            try:
                now = await asyncio.to_thread(self.elector.try_acquire_or_renew)
            except Exception:
                log.exception("lease renewal failed")
                continue
            metrics.IS_LEADER.set(1 if now else 0)
            if now and not was:
                self.dirty.set()

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


def _controller(memo: Any) -> Controller:
    controller: Controller = memo.controller
    return controller


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
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = NoDiffBase()
    kube = Kube()
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    namespace = os.environ.get("GPUALLOC_LEASE_NAMESPACE", "default")
    elector = LeaderElector(kube, namespace, identity)
    controller = Controller(
        kube,
        elector,
        debounce=float(os.environ.get("GPUALLOC_DEBOUNCE_SECONDS", "1")),
        resync=float(os.environ.get("GPUALLOC_RESYNC_SECONDS", "60")),
    )
    memo.controller = controller
    prometheus = PrometheusInput(
        kube, controller.reconciler, controller.poke, lambda: controller.elector.leading
    )
    # pods are watched outside Kopf (podwatch.py); the watch pokes the loop from its thread
    loop = asyncio.get_running_loop()

    def pod_event(event_type: str, pod: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(controller.poke, pod_key(pod), pod_fingerprint(event_type, pod))

    memo.pod_watch = PodWatch(kube, pod_event)
    memo.pod_watch.start()
    memo.tasks = [
        asyncio.create_task(controller.run()),
        asyncio.create_task(controller.renew()),
        asyncio.create_task(prometheus.run()),
    ]
    controller.dirty.set()
    log.info("gpualloc controller started as %s (lease %s/gpualloc-leader)", identity, namespace)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    for task in getattr(memo, "tasks", []):
        task.cancel()
    if getattr(memo, "pod_watch", None) is not None:
        memo.pod_watch.stop.set()
    controller = getattr(memo, "controller", None)
    if controller is not None:
        await asyncio.to_thread(controller.elector.release)


@kopf.on.event("gpualloc.io", "v1alpha1", "llmtrainingjobs")
@kopf.on.event("gpualloc.io", "v1alpha1", "llminferencejobs")
async def job_changed(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    meta = body.get("metadata", {})
    key = f"job/{meta.get('namespace')}/{meta.get('name')}"
    # spec changes (incl. kubectl scale) bump the generation; our status writes do not
    fingerprint = None if type == "DELETED" else meta.get("generation")
    _controller(memo).poke(key, fingerprint)


@kopf.on.event("gpualloc.io", "v1alpha1", "allocationpolicies")
async def policy_changed(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    meta = body.get("metadata", {})
    fingerprint = None if type == "DELETED" else meta.get("generation")
    _controller(memo).poke(f"policy/{meta.get('name')}", fingerprint)


@kopf.on.event("", "v1", "nodes")
async def node_changed(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
    fingerprint = (
        None
        if type == "DELETED"
        else (
            tuple(sorted((meta.get("labels") or {}).items())),
            bool(spec.get("unschedulable")),
            tuple(
                sorted(
                    (t.get("key"), t.get("value"), t.get("effect"))
                    for t in spec.get("taints") or []
                )
            ),
            tuple(sorted((status.get("allocatable") or {}).items())),
        )
    )
    _controller(memo).poke(f"node/{meta.get('name')}", fingerprint)
