"""One planning round: watch -> snapshot -> plan -> actuate -> report.

The round reads everything fresh from the API (so it always sees its own writes and a
restarted operator starts from the cluster's state, never from memory), then acts.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from gpualloc.controller.pods import (
    build_pod,
    build_service,
    is_gated,
    pinned,
    placement_patch,
    pod_name,
    replica_index,
)
from gpualloc.controller.status import Outcome, job_report, status_changed
from gpualloc.k8s.client import Kube, now
from gpualloc.k8s.convert import (
    JOB_LABEL,
    SpecError,
    committed_node,
    job_from_k8s,
    node_from_k8s,
    policy_from_k8s,
)
from gpualloc.k8s.snapshot import build_snapshot
from gpualloc.model import JobKind, Plan, Policy, Snapshot
from gpualloc.solver import plan as solve

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
    plan: Plan | None = None
    snapshot: Snapshot = field(default_factory=lambda: Snapshot((), (), ()))
    policy: Policy = field(default_factory=Policy)
    policy_spec: Obj = field(default_factory=dict)
    nodes: list[Obj] = field(default_factory=list)
    jobs: list[Obj] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)  # job key -> phase


def _key(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['name']}"


def _finished(job: Obj, pods: list[Obj], workers: int) -> bool:
    """A training gang that failed or completed needs no GPUs any more."""
    if job["kind"] != JobKind.TRAINING:
        return False
    if (job.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return True
    phases = [(p.get("status") or {}).get("phase") for p in pods]
    return "Failed" in phases or (len(phases) >= workers and all(p == "Succeeded" for p in phases))


class Reconciler:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.previous: Plan | None = None
        self.unhealthy_gpus: dict[str, int] = {}  # node -> count, from Prometheus
        self.desired_replicas: dict[str, int] = {}  # inference job key -> autoscaled count

    # -- 1. watch: read the cluster -------------------------------------------------------
    def run_round(self) -> RoundStats:
        started = time.monotonic()
        stats = RoundStats()
        # the reads at once: a burst waits on them
        kube = self.kube
        nodes, pods, jobs, policy_obj = kube.map(
            lambda read: read(), [kube.list_nodes, kube.list_pods, kube.list_jobs, kube.get_policy]
        )
        stats.policy = policy_from_k8s(policy_obj)
        stats.policy_spec = (policy_obj or {}).get("spec") or {}
        stats.nodes, stats.jobs = nodes, jobs
        node_names = {n["metadata"]["name"] for n in nodes}
        gpu_nodes = [m for m in (node_from_k8s(n) for n in nodes) if m is not None]

        pods_of: dict[str, list[Obj]] = defaultdict(list)
        for pod in pods:
            if ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_LABEL):
                pods_of[_job_key(pod)].append(pod)

        outcomes: dict[str, Outcome] = {}
        active: list[Obj] = []
        to_create: list[Obj] = []
        services: list[Obj] = []
        desired_of: dict[str, int] = {}
        for job in jobs:
            key = _key(job)
            try:
                model = job_from_k8s(job, gpu_nodes, self.desired_replicas.get(key))
            except SpecError as err:
                outcomes[key] = Outcome(invalid=str(err))
                continue
            desired_of[key] = model.replicas
            if _finished(job, pods_of[key], model.replicas):
                continue
            # -- pods bound or pinned to a node that is gone are lost: re-place them
            # (a training gang restarts whole)
            lost = [
                p
                for p in pods_of[key]
                if (node := committed_node(p)) is not None and node not in node_names
            ]
            failed_replicas = [
                p
                for p in pods_of[key]
                if job["kind"] == JobKind.INFERENCE
                and (p.get("status") or {}).get("phase") == "Failed"
            ]
            if lost or failed_replicas:
                doomed = (
                    pods_of[key]
                    if (lost and job["kind"] == JobKind.TRAINING)
                    else [*lost, *failed_replicas]
                )
                self._delete_pods(doomed, grace=0)
                gone = {p["metadata"]["name"] for p in doomed}
                pods_of[key] = [p for p in pods_of[key] if p["metadata"]["name"] not in gone]
                outcomes[key] = Outcome(lost=bool(lost))
            to_create += self._missing_pods(
                job, pods_of[key], model.replicas, model.gpus_per_replica
            )
            if job["kind"] == JobKind.TRAINING and not pods_of[key]:
                services.append(build_service(job))
            active.append(job)

        marks = {"read": time.monotonic()}
        # -- 2. snapshot
        # the same desired counts as above: autoscaling's, else what the spec asks for
        snapshot = build_snapshot(nodes, pods, active, self.unhealthy_gpus, self.desired_replicas)

        stats.snapshot = snapshot
        # -- 3. plan
        result = solve(snapshot, stats.policy, self.previous)
        self.previous = result
        stats.plan, stats.status = result, result.status
        stats.solve_seconds, stats.gap = result.solve_seconds, result.gap

        if policy_obj and (policy_obj.get("status") or {}).get("lastStatus") != result.status:
            self.kube.patch_policy_status(
                policy_obj["metadata"]["name"], {"lastStatus": result.status}
            )
        marks["plan"] = time.monotonic()
        # -- 4. actuate: evict whole victim gangs, then pin and ungate placed pods
        evicted = {e.job: e.reason for e in result.evictions}
        for key in evicted:
            self._delete_pods(pods_of[key], grace=0)
            pods_of[key] = []
        stats.evicted_jobs = len(evicted)
        # Missing pods are created now: pinned if the plan places them, gated otherwise.
        # Existing gated pods the plan places get one patch each.
        by_name = {_key(p): p for p in pods}
        missing = {_key(p): p for p in to_create}
        patches: list[tuple[Obj, str]] = []
        creates: dict[str, Obj] = dict(missing)
        placed: dict[str, dict[int, tuple[str, int]]] = defaultdict(dict)
        kinds = {_key(j): j["kind"] for j in active}
        for p in result.placements:
            ns, name = p.job.split("/", 1)
            pod_key = f"{ns}/{pod_name(name, kinds[p.job], p.replica)}"
            if pod_key in missing:
                creates[pod_key] = pinned(missing[pod_key], p.node)
            elif pod_key in by_name and is_gated(by_name[pod_key]):
                patches.append((by_name[pod_key], p.node))
            else:
                continue
            placed[p.job][p.replica] = (p.node, p.gpus)
        # Placed pods first, all at once: they are what users wait for. Then the gated ones,
        # which only show the queue, a few at a time, leaving the apiserver to the bindings.
        placed_first = [p for p in creates.values() if not is_gated(p)]
        queued = [p for p in creates.values() if is_gated(p)]
        list(self.kube.map(self._pin, patches))
        created = self._create_pods(placed_first)
        # The rendezvous Services are only looked up once a worker runs (torch.distributed
        # retries the name), so they need not delay the placed pods.
        list(self.kube.map(self.kube.create_service, services, in_flight=4))
        created += self._create_pods(queued, in_flight=4)
        for pod in created:
            pods_of[_job_key(pod)].append(pod)
        stats.created = len(created)
        stats.placed = sum(len(replicas) for replicas in placed.values())

        marks["act"] = time.monotonic()
        # -- 5. report (status writes and events in parallel: hundreds of jobs per burst)
        reasons = {u.job: u.reason for u in result.unscheduled}
        stamp = now()
        writes: list[tuple[Obj, Obj | None, list[tuple[str, str, str]]]] = []
        for job in jobs:
            key = _key(job)
            outcome = outcomes.get(key, Outcome())
            outcome = replace(
                outcome,
                placed=placed.get(key, {}),
                unscheduled=reasons.get(key),
                evicted=evicted.get(key),
            )
            report = job_report(job, pods_of[key], outcome, desired_of.get(key, 0), stamp)
            stats.phases[key] = report.status["phase"]
            changed = status_changed(job.get("status") or {}, report.status)
            if changed or report.events:
                writes.append((job, report.status if changed else None, report.events))
        list(self.kube.map(self._report, writes))
        marks["report"] = time.monotonic()
        stats.seconds = time.monotonic() - started
        phases, last = [], started
        for name, mark in marks.items():
            phases.append(f"{name} {mark - last:.2f}s")
            last = mark
        log.info(
            "round: %s in %.2fs (%s; solve %.2fs): %d jobs, %d pods created, %d placed, "
            "%d evicted, %d unscheduled",
            result.status,
            stats.seconds,
            ", ".join(phases),
            result.solve_seconds,
            len(jobs),
            stats.created,
            stats.placed,
            len(evicted),
            len(result.unscheduled),
        )
        return stats

    # -- helpers ----------------------------------------------------------------------------
    def _missing_pods(self, job: Obj, pods: list[Obj], replicas: int, gpus: int) -> list[Obj]:
        """The gated pods to create (existing ones are adopted by name); extras of a
        scaled-down inference job are deleted, highest replicas first."""
        kind = job["kind"]
        existing = {p["metadata"]["name"] for p in pods}
        extras = [p for p in pods if replica_index(p) >= replicas]
        if extras:
            self._delete_pods(extras, grace=None)
        return [
            build_pod(job, i, gpus, replicas)
            for i in range(replicas)
            if pod_name(job["metadata"]["name"], kind, i) not in existing
        ]

    def _create_pods(self, pods: list[Obj], in_flight: int | None = None) -> list[Obj]:
        """The pods actually created: one that exists already is adopted, not duplicated."""
        news = self.kube.map(self.kube.create_pod, pods, in_flight)
        return [p for p, new in zip(pods, news, strict=True) if new]

    def _report(self, item: tuple[Obj, Obj | None, list[tuple[str, str, str]]]) -> None:
        job, status, events = item
        meta = job["metadata"]
        if status is not None:
            self.kube.patch_job_status(
                job["kind"], meta.get("namespace", "default"), meta["name"], status
            )
        for type_, reason, message in events:
            self.kube.event(job, reason, message, type_)

    def _pin(self, item: tuple[Obj, str]) -> None:
        pod, node = item
        meta = pod["metadata"]
        self.kube.json_patch_pod(meta["namespace"], meta["name"], placement_patch(pod, node))

    def _delete_pods(self, pods: list[Obj], grace: int | None) -> None:
        def delete(pod: Obj) -> None:
            meta = pod["metadata"]
            self.kube.delete_pod(meta["namespace"], meta["name"], grace)

        list(self.kube.map(delete, pods))


def _job_key(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', 'default')}/{meta['labels'][JOB_LABEL]}"
