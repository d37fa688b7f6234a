"""Metrics gpualloc exports for Prometheus. Names follow Prometheus conventions: the
`gpualloc_` prefix, base units, `_total` for counters, `_seconds` for durations.

One verb-named helper per event keeps the call sites in the controller one line each.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gpualloc.k8s.convert import created_at
from gpualloc.model import Plan, Snapshot

CLUSTER_GPUS = Gauge(
    "gpualloc_cluster_gpus",
    "Allocatable GPUs on managed nodes, by GPU product (node label nvidia.com/gpu.product).",
    ["product"],
    registry=None,
)
ALLOCATED_GPUS = Gauge(
    "gpualloc_allocated_gpus",
    "GPUs held by gpualloc jobs after the last plan, by GPU product.",
    ["product"],
    registry=None,
)
UNHEALTHY_GPUS = Gauge(
    "gpualloc_unhealthy_gpus",
    "GPUs taken out of capacity for DCGM XID errors, by node.",
    ["node"],
    registry=None,
)
JOB_GPUS = Gauge(
    "gpualloc_job_allocated_gpus",
    "GPUs allocated per job (labels: namespace, job_name, kind LLMTrainingJob|LLMInferenceJob, "
    "priority). `job_name`, not `job`: Prometheus keeps `job` for the scrape job.",
    ["namespace", "job_name", "kind", "priority"],
    registry=None,
)
PENDING_JOBS = Gauge(
    "gpualloc_pending_jobs",
    "Jobs the last plan could not place, by priority.",
    ["priority"],
    registry=None,
)
JOB_WAIT = Gauge(
    "gpualloc_job_wait_seconds",
    "How long each waiting job has waited since creation (labels: namespace, job_name, priority).",
    ["namespace", "job_name", "priority"],
    registry=None,
)
JOBS = Gauge(
    "gpualloc_jobs",
    "Jobs by status.phase (Pending, Unschedulable, Allocated, Running, ...).",
    ["phase"],
    registry=None,
)
SOLVE_DURATION = Histogram(
    "gpualloc_solve_duration_seconds",
    "CP-SAT solve time per round.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
ROUND_DURATION = Histogram(
    "gpualloc_round_duration_seconds",
    "Whole planning round (read, solve, actuate, report).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
SOLVER_GAP = Gauge(
    "gpualloc_solver_gap_ratio",
    "Relative gap between the plan and the solver's proven bound (0 = optimal).",
    registry=None,
)
SOLVER_STATUS = Gauge(
    "gpualloc_solver_status",
    "1 for the CP-SAT status of the last solve (label status: OPTIMAL, FEASIBLE, INFEASIBLE, "
    "UNKNOWN, MODEL_INVALID), 0 for the others.",
    ["status"],
    registry=None,
)
ROUNDS = PromCounter("gpualloc_rounds_total", "Planning rounds run, by solver status.", ["status"])
ROUND_ERRORS = PromCounter("gpualloc_round_errors_total", "Planning rounds that failed.")
PREEMPTIONS = PromCounter("gpualloc_preemptions_total", "Jobs evicted for higher priority.")
PLACED_PODS = PromCounter("gpualloc_placed_pods_total", "Pods pinned to a node and ungated.")
FRAGMENTED = Gauge(
    "gpualloc_fragmented_gpus",
    "Free GPUs on nodes that are partly used (cannot host a whole-node worker).",
    registry=None,
)
FREE_NODES = Gauge("gpualloc_whole_free_nodes", "GPU nodes with every GPU free.", registry=None)
PROMETHEUS_UP = Gauge(
    "gpualloc_prometheus_up",
    "1 if the last Prometheus query worked, 0 if "
    "not (capacity-only mode), -1 if no Prometheus is configured.",
)
PROMETHEUS_ERRORS = PromCounter(
    "gpualloc_prometheus_errors_total",
    "Prometheus queries of the operator's input that failed, by reason "
    "(Unreachable, QueryFailed, BadResponse).",
    ["reason"],
)
AUTOSCALING_DEMAND = Gauge(
    "gpualloc_autoscaling_demand",
    "Demand of an autoscaled LLMInferenceJob, as its spec.autoscaling.query measured it.",
    ["namespace", "job_name"],
    registry=None,
)
AUTOSCALING_DESIRED = Gauge(
    "gpualloc_autoscaling_desired_replicas",
    "Replicas an autoscaled LLMInferenceJob wants: ceil(demand / targetPerReplica) within "
    "minReplicas..maxReplicas.",
    ["namespace", "job_name"],
    registry=None,
)
IS_LEADER = Gauge("gpualloc_leader", "1 on the replica that holds the leader lease.")
# GPU queues (labels queue, product). Without any GPUQueue the whole cluster is one implicit
# queue, IMPLICIT_QUEUE, whose nominal is every managed GPU.
IMPLICIT_QUEUE = "(cluster)"
QUEUE_NOMINAL = Gauge(
    "gpualloc_queue_nominal_gpus",
    "A GPUQueue's nominal (guaranteed) GPUs per quota entry (product: a GPU product or *).",
    ["queue", "product"],
    registry=None,
)
QUEUE_ALLOCATED = Gauge(
    "gpualloc_queue_allocated_gpus",
    "GPUs held by a GPUQueue's jobs (its children's included) after the last plan, by product.",
    ["queue", "product"],
    registry=None,
)
QUEUE_BORROWED = Gauge(
    "gpualloc_queue_borrowed_gpus",
    "GPUs a GPUQueue holds beyond its nominal, per quota entry (product: a GPU product or *).",
    ["queue", "product"],
    registry=None,
)
QUEUE_PENDING = Gauge(
    "gpualloc_queue_pending_jobs",
    "Jobs of a GPUQueue (its children's included) the last plan could not place.",
    ["queue"],
    registry=None,
)
QUEUE_FAIR_SHARE = Gauge(
    "gpualloc_queue_fair_share",
    "A GPUQueue's borrowed GPUs / weight after the last plan: weighted max-min fairness "
    "levels this between sibling queues.",
    ["queue"],
    registry=None,
)
QUEUE_GAUGES: tuple[Gauge, ...] = (
    QUEUE_NOMINAL,
    QUEUE_ALLOCATED,
    QUEUE_BORROWED,
    QUEUE_PENDING,
    QUEUE_FAIR_SHARE,
)

# What a planning round computes: only the leader runs rounds, so a former leader's values are
# stale the moment it loses the lease; they are cleared then.
ROUND_GAUGES: tuple[Gauge, ...] = (
    CLUSTER_GPUS,
    ALLOCATED_GPUS,
    JOB_GPUS,
    PENDING_JOBS,
    JOB_WAIT,
    JOBS,
    SOLVER_GAP,
    SOLVER_STATUS,
    FRAGMENTED,
    FREE_NODES,
    *QUEUE_GAUGES,
)
# Exported by the leader alone (registry=None above, collected through _LeaderOnly): with two
# replicas, sum() over a cluster's series must not count allocation or GPU health twice. Every
# replica reads Prometheus (so a new leader starts informed); only the leader exports it.
LEADER_ONLY: tuple[Gauge, ...] = (
    *ROUND_GAUGES,
    UNHEALTHY_GPUS,
    AUTOSCALING_DEMAND,
    AUTOSCALING_DESIRED,
)


class _LeaderOnly(Collector):
    """Collects the leader-only gauges while this replica leads, nothing otherwise."""

    def __init__(self, gauges: tuple[Gauge, ...]) -> None:
        self.gauges = gauges
        self.leading = False

    def describe(self) -> Iterable[Metric]:
        return [m for g in self.gauges for m in g.describe()]

    def collect(self) -> Iterable[Metric]:
        if not self.leading:
            return []
        return [m for g in self.gauges for m in g.collect()]


_LEADER_ONLY = _LeaderOnly(LEADER_ONLY)
REGISTRY.register(_LEADER_ONLY)


def leadership_changed(leading: bool) -> None:
    """gpualloc_leader, and the leader-only gauges exported only while leading. On losing the
    lease the round's gauges are cleared too, so a later term never shows the last one's."""
    IS_LEADER.set(1 if leading else 0)
    _LEADER_ONLY.leading = leading
    if not leading:
        for gauge in ROUND_GAUGES:
            gauge.clear()  # every labelled series gone (a no-op on the unlabelled ones)
        for gauge in (SOLVER_GAP, FRAGMENTED, FREE_NODES):
            gauge.set(0)


_STATUSES = ("OPTIMAL", "FEASIBLE", "INFEASIBLE", "UNKNOWN", "MODEL_INVALID")


def record_round(stats: Any) -> None:
    """Everything a round learned: capacity, allocation, pending work, solver health."""
    plan: Plan | None = stats.plan
    ROUND_DURATION.observe(stats.seconds)
    ROUNDS.labels(stats.status).inc()
    for status in _STATUSES:
        SOLVER_STATUS.labels(status).set(1 if status == stats.status else 0)
    PREEMPTIONS.inc(stats.evicted_jobs)
    PLACED_PODS.inc(stats.placed)
    if plan is None:
        return
    SOLVE_DURATION.observe(plan.solve_seconds)
    SOLVER_GAP.set(plan.gap)

    snapshot: Snapshot = stats.snapshot
    nodes = snapshot.nodes
    product_of = {n.name: n.product for n in nodes}
    capacity: Counter[str] = Counter()
    for n in nodes:
        capacity[n.product] += n.gpus
    allocated: Counter[str] = Counter({p: 0 for p in capacity})
    used_on: dict[str, int] = defaultdict(int)
    for pod in snapshot.pods:  # unmanaged pods; managed ones are in the plan
        if pod.job is None:
            used_on[pod.node] += pod.gpus
    per_job: dict[tuple[str, str], int] = defaultdict(int)
    for p in plan.placements:
        allocated[product_of.get(p.node, "unknown")] += p.gpus
        used_on[p.node] += p.gpus
        per_job[p.job, p.kind] += p.gpus
    CLUSTER_GPUS.clear()
    ALLOCATED_GPUS.clear()
    for product, gpus in capacity.items():
        CLUSTER_GPUS.labels(product).set(gpus)
        ALLOCATED_GPUS.labels(product).set(allocated[product])

    jobs = {
        f"{j['metadata'].get('namespace', 'default')}/{j['metadata']['name']}": j
        for j in stats.jobs
    }
    JOB_GPUS.clear()
    for (key, kind), gpus in per_job.items():
        ns, name = key.split("/", 1)
        priority = str(((jobs.get(key) or {}).get("spec") or {}).get("priority", 0))
        JOB_GPUS.labels(ns, name, str(kind), priority).set(gpus)

    PENDING_JOBS.clear()
    JOB_WAIT.clear()
    pending: Counter[str] = Counter()
    now = time.time()
    for u in plan.unscheduled:
        job = jobs.get(u.job) or {}
        priority = str((job.get("spec") or {}).get("priority", 0))
        pending[priority] += 1
        ns, name = u.job.split("/", 1)
        JOB_WAIT.labels(ns, name, priority).set(max(0.0, now - created_at(job)))
    for priority, count in pending.items():
        PENDING_JOBS.labels(priority).set(count)
    JOBS.clear()
    for phase, count in Counter(stats.phases.values()).items():
        JOBS.labels(phase).set(count)

    # fragmentation: free GPUs stranded on partly used nodes
    fragmented = whole = 0
    for n in nodes:
        free = max(0, n.gpus - n.unhealthy_gpus - used_on.get(n.name, 0))
        if free == n.gpus:
            whole += 1
        else:
            fragmented += free
    FRAGMENTED.set(fragmented)
    FREE_NODES.set(whole)
    record_queues(plan, capacity, allocated)


def record_queues(plan: Plan, capacity: Mapping[str, int], allocated: Mapping[str, int]) -> None:
    """Per GPUQueue: nominal, allocated and borrowed GPUs, pending jobs, fair share; without
    queues, the implicit one (the cluster)."""
    for gauge in QUEUE_GAUGES:
        gauge.clear()
    if not plan.queues:
        for product, gpus in capacity.items():
            QUEUE_NOMINAL.labels(IMPLICIT_QUEUE, product).set(gpus)
            QUEUE_ALLOCATED.labels(IMPLICIT_QUEUE, product).set(allocated.get(product, 0))
            QUEUE_BORROWED.labels(IMPLICIT_QUEUE, product).set(0)
        QUEUE_PENDING.labels(IMPLICIT_QUEUE).set(len(plan.unscheduled))
        QUEUE_FAIR_SHARE.labels(IMPLICIT_QUEUE).set(0)
        return
    for name, report in plan.queues.items():
        for entry, gpus in report.nominal.items():
            QUEUE_NOMINAL.labels(name, entry).set(gpus)
            QUEUE_BORROWED.labels(name, entry).set(report.borrowed.get(entry, 0))
        for product in capacity:
            QUEUE_ALLOCATED.labels(name, product).set(report.usage.get(product, 0))
        QUEUE_PENDING.labels(name).set(report.pending)
        QUEUE_FAIR_SHARE.labels(name).set(report.fair_share)
