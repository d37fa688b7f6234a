"""Prometheus as an input: GPU health from the DCGM exporter and inference demand.

Every `spec.prometheus.intervalSeconds` of the `default` AllocationPolicy the poller asks
Prometheus which GPUs report XID errors and how much demand each autoscaled LLMInferenceJob
has, hands the result to the Reconciler (`unhealthy_gpus`, `desired_replicas`) and pokes the
planning loop when it changed. When Prometheus cannot answer, planning goes on from node
capacity alone (no GPU is taken out for health; autoscaled jobs keep their last decision,
as the HorizontalPodAutoscaler does), and the outage is reported once in the log, as the
policy condition `PrometheusReachable=False` and as `gpualloc_prometheus_up 0`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpualloc.controller.reconcile import Reconciler
from gpualloc.k8s.client import Kube, now
from gpualloc.metrics import exported as metrics
from gpualloc.metrics.prometheus import (
    BAD_RESPONSE,
    UNREACHABLE,
    PrometheusClient,
    PrometheusError,
    Sample,
)

log = logging.getLogger("gpualloc.prometheus")
Obj = dict[str, Any]

CONDITION = "PrometheusReachable"
DEFAULT_INTERVAL = 15.0
DEFAULT_UNHEALTHY_QUERY = "max by (Hostname, gpu) (max_over_time(DCGM_FI_DEV_XID_ERRORS[5m])) > 0"
# The DCGM exporter names the node in `Hostname`; kube-prometheus relabelling often in `node`.
HOST_LABELS = ("Hostname", "node", "kubernetes_node")


# -- pure ---------------------------------------------------------------------------------
def unhealthy_by_node(
    samples: Iterable[Sample], nodes: Iterable[str] | None = None
) -> dict[str, int]:
    """Unhealthy GPUs per node: each series with a non-zero value is one GPU (told apart by
    its `UUID` or `gpu` label). Series of hosts that are not nodes are ignored."""
    known = set(nodes) if nodes is not None else None
    gpus: dict[str, set[str]] = defaultdict(set)
    for i, s in enumerate(samples):
        if s.value == 0:
            continue
        host = next((s.labels[k] for k in HOST_LABELS if s.labels.get(k)), None)
        if host is None or (known is not None and host not in known):
            continue
        gpus[host].add(s.labels.get("UUID") or s.labels.get("gpu") or f"series-{i}")
    return {node: len(ids) for node, ids in sorted(gpus.items())}


# no answer from Prometheus may ask for more replicas than this (the policy's per-job cap
# applies on top); a huge or infinite demand is a broken exporter, not traffic
MAX_AUTOSCALED = 10_000


def desired_replicas(demand: float, target: float, lo: int, hi: int | None) -> int:
    """ceil(demand / target), clamped to lo..hi. Raises ValueError for a demand that is not
    a finite number (NaN, +Inf): that job keeps its last decision."""
    if not math.isfinite(demand):
        raise ValueError(f"demand is {demand}")
    want = math.ceil(max(0.0, demand) / target - 1e-9) if target > 0 else lo
    want = min(want, MAX_AUTOSCALED)
    if hi is not None:
        want = min(want, hi)
    return max(lo, want)


def autoscaled(jobs: Iterable[Obj]) -> list[tuple[str, str, float, int, int | None]]:
    """(job key, query, target per replica, min, max) of each LLMInferenceJob with
    spec.autoscaling."""
    out = []
    for job in jobs:
        if job.get("kind") != "LLMInferenceJob":
            continue
        spec = job.get("spec") or {}
        scaling = spec.get("autoscaling") or {}
        query, target = scaling.get("query"), scaling.get("targetPerReplica")
        if not query or not target:
            continue
        meta = job["metadata"]
        key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        hi = spec.get("maxReplicas")
        try:  # one malformed job is left out, not the others
            target_value, lo = float(target), int(spec.get("minReplicas", 1))
            hi = None if hi is None else int(hi)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(target_value) or target_value <= 0:
            continue
        out.append((key, str(query)[:4096], target_value, lo, hi))
    return out


def condition(
    previous: list[Obj], ok: bool | None, reason: str, message: str, generation: int, stamp: str
) -> list[Obj]:
    """The policy's conditions with PrometheusReachable set (None = Unknown); other condition
    types are kept. lastTransitionTime moves only when the status does."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    old = next((c for c in previous if c.get("type") == CONDITION), None)
    new = {
        "type": CONDITION,
        "status": status,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": (
            old.get("lastTransitionTime", stamp) if old and old.get("status") == status else stamp
        ),
        "observedGeneration": generation,
    }
    return [*(c for c in previous if c.get("type") != CONDITION), new]


# -- the poller ---------------------------------------------------------------------------
@dataclass
class Reading:
    """One poll: what Prometheus said (or why it could not)."""

    configured: bool = False
    url: str = ""
    interval: float = DEFAULT_INTERVAL
    unhealthy: dict[str, int] | None = None  # None: GPU health unknown
    autoscaled: set[str] | None = None  # autoscaled job keys; None: jobs not read
    desired: dict[str, int] = field(default_factory=dict)  # only the jobs that were answered
    demand: dict[str, float] = field(default_factory=dict)
    errors: list[PrometheusError] = field(default_factory=list)
    policy: Obj | None = None


class PrometheusInput:
    def __init__(
        self,
        kube: Kube,
        reconciler: Reconciler,
        poke: Callable[[str, Any], None],
        is_leader: Callable[[], bool],
        timeout: float = 5.0,
    ) -> None:
        self.kube = kube
        self.reconciler = reconciler
        self.poke = poke
        self.is_leader = is_leader
        self.timeout = timeout
        self.interval = DEFAULT_INTERVAL
        self.outage: str | None = None  # the reason while Prometheus cannot answer
        metrics.PROMETHEUS_UP.set(-1)

    async def run(self) -> None:
        while True:
            try:
                reading = await asyncio.to_thread(self.read)
                self.apply(reading)
                if self.is_leader():
                    await asyncio.to_thread(self.report, reading)
            except Exception:  # the API server hiccuped: try again next interval
                log.exception("Prometheus input: poll failed")
            await asyncio.sleep(self.interval)

    def read(self) -> Reading:
        """Ask Prometheus (blocking; runs in a worker thread)."""
        policy = self.kube.get_policy()
        prom = ((policy or {}).get("spec") or {}).get("prometheus") or {}
        reading = Reading(policy=policy, url=str(prom.get("url") or ""))
        reading.interval = float(prom.get("intervalSeconds") or DEFAULT_INTERVAL)
        if not reading.url:
            return reading
        reading.configured = True
        client = PrometheusClient(reading.url, timeout=min(self.timeout, reading.interval))
        observer = self.reconciler.observer  # the informers' stores: no LIST per interval
        node_objs = observer.nodes.store() if observer else self.kube.list_nodes()
        nodes = [n["metadata"]["name"] for n in node_objs]
        try:
            samples = client.query(str(prom.get("unhealthyGPUQuery") or DEFAULT_UNHEALTHY_QUERY))
            reading.unhealthy = unhealthy_by_node(samples, nodes)
        except PrometheusError as err:
            reading.errors.append(err)
            if err.reason == UNREACHABLE:  # every other query would wait for the timeout too
                return reading
        jobs = autoscaled(
            [j for i in observer.jobs for j in i.store()] if observer else self.kube.list_jobs()
        )
        reading.autoscaled = {key for key, *_ in jobs}
        for key, query, target, lo, hi in jobs:
            try:
                samples = client.query(query)
            except PrometheusError as err:
                err.message = f"autoscaling of {key}: {err.message}"
                reading.errors.append(err)
                continue
            if samples:  # no series yet (no traffic ever seen): no decision, keep spec.replicas
                demand = sum(s.value for s in samples)
                try:
                    reading.desired[key] = desired_replicas(demand, target, lo, hi)
                except ValueError as err:
                    reading.errors.append(
                        PrometheusError(BAD_RESPONSE, f"autoscaling of {key}: {err}; ignored")
                    )
                    continue
                reading.demand[key] = demand
        return reading

    def apply(self, reading: Reading) -> None:
        """Hand the reading to the planner; poke the loop when what it plans with changed."""
        self.interval = reading.interval
        # Unknown GPU health: plan from capacity alone. A job whose demand could not be read
        # keeps its last decision; jobs gone or no longer autoscaled are forgotten.
        unhealthy = reading.unhealthy or {}
        desired = dict(self.reconciler.desired_replicas) if reading.configured else {}
        if reading.autoscaled is not None:
            desired = {k: v for k, v in desired.items() if k in reading.autoscaled}
        desired.update(reading.desired)
        self.reconciler.unhealthy_gpus = unhealthy
        self.reconciler.desired_replicas = desired
        self.poke("prometheus", (tuple(unhealthy.items()), tuple(sorted(desired.items()))))
        self._export(reading, unhealthy, desired)
        self._log(reading)

    def _export(
        self, reading: Reading, unhealthy: Mapping[str, int], desired: Mapping[str, int]
    ) -> None:
        metrics.PROMETHEUS_UP.set(-1 if not reading.configured else (0 if reading.errors else 1))
        metrics.UNHEALTHY_GPUS.clear()
        for node, count in unhealthy.items():
            metrics.UNHEALTHY_GPUS.labels(node).set(count)
        metrics.AUTOSCALING_DESIRED.clear()
        metrics.AUTOSCALING_DEMAND.clear()
        for key, replicas in desired.items():
            ns, name = key.split("/", 1)
            metrics.AUTOSCALING_DESIRED.labels(ns, name).set(replicas)
        for key, demand in reading.demand.items():
            ns, name = key.split("/", 1)
            metrics.AUTOSCALING_DEMAND.labels(ns, name).set(demand)
        for err in reading.errors:
            metrics.PROMETHEUS_ERRORS.labels(err.reason).inc()

    def _log(self, reading: Reading) -> None:
        """Once per outage, and once when it ends."""
        if reading.configured and reading.errors:
            if self.outage is None:
                log.warning(
                    "Prometheus input down (%s): %s; planning from node capacity alone until "
                    "it answers",
                    reading.errors[0].reason,
                    "; ".join(e.message for e in reading.errors),
                )
            self.outage = reading.errors[0].reason
        elif self.outage is not None:
            log.info("Prometheus input back: %s answers", reading.url)
            self.outage = None

    def report(self, reading: Reading) -> None:
        """The PrometheusReachable condition on the policy, written only when it changes."""
        policy = reading.policy
        if policy is None:
            return
        previous: list[Obj] = list((policy.get("status") or {}).get("conditions") or [])
        if not reading.configured:
            ok, reason, message = None, "NotConfigured", "spec.prometheus.url is not set"
        elif reading.errors:
            ok, reason = False, reading.errors[0].reason
            message = (
                "; ".join(e.message for e in reading.errors)
                + " (planning from node capacity alone)"
            )
        else:
            ok, reason, message = True, "QueriesAnswered", f"{reading.url} answers every query"
        generation = int((policy.get("metadata") or {}).get("generation") or 0)
        conditions = condition(previous, ok, reason, message, generation, now())
        old = next((c for c in previous if c.get("type") == CONDITION), None)
        new = conditions[-1]
        if old and all(old.get(k) == new[k] for k in ("status", "reason", "message")):
            return
        self.kube.patch_policy_status(policy["metadata"]["name"], {"conditions": conditions})
