"""The observe step: informers (list once, then watch) over everything a plan depends on,
and the one `ClusterState` a round reads from them. No full LIST per round.

Each informer pokes the loop only when what matters about an object changed (its
fingerprint): a job's generation, a pod bound/finished/deleted, a node's labels, taints,
cordon or allocatable. Pods that are not gpualloc's and ask for no GPU never wake it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from gpualloc.controller.podwatch import PodWatch, matters, pod_fingerprint, pod_key
from gpualloc.controller.state import ClusterState
from gpualloc.k8s.client import PLURALS, VERSION, Kube
from gpualloc.k8s.convert import GROUP, JOB_LABEL
from gpualloc.k8s.informer import Informer, Resource, object_key

log = logging.getLogger("gpualloc.observe")
Obj = dict[str, Any]
Wake = Callable[[str, Any], None]  # (object key, fingerprint or None when gone); thread-safe

NODES = Resource("/api/v1/nodes", "Node")
SERVICES = Resource("/api/v1/services", "Service", label_selector=JOB_LABEL)
POLICIES = Resource(f"/apis/{GROUP}/{VERSION}/allocationpolicies", "AllocationPolicy")
JOBS = tuple(Resource(f"/apis/{GROUP}/{VERSION}/{p}", k) for k, p in PLURALS.items())
QUEUES = Resource(f"/apis/{GROUP}/{VERSION}/gpuqueues", "GPUQueue")


def node_fingerprint(node: Obj) -> Any:
    meta, spec, status = node.get("metadata", {}), node.get("spec", {}), node.get("status", {})
    return (
        tuple(sorted((meta.get("labels") or {}).items())),
        bool(spec.get("unschedulable")),
        tuple(
            sorted(
                (t.get("key"), t.get("value"), t.get("effect")) for t in spec.get("taints") or []
            )
        ),
        tuple(sorted((status.get("allocatable") or {}).items())),
    )


def slim_node(node: Obj) -> Obj:
    """Node status carries images and conditions the planner never reads."""
    status = node.get("status") or {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": node.get("metadata") or {},
        "spec": node.get("spec") or {},
        "status": {"allocatable": status.get("allocatable") or {}},
    }


class Observer:
    """The informers of one operator replica; `state()` is what a round plans from."""

    def __init__(self, kube: Kube, wake: Wake, timeout_seconds: int = 60) -> None:
        def woken(prefix: str, fingerprint: Callable[[Obj], Any]) -> Callable[[str, Obj], None]:
            def notify(event: str, obj: Obj) -> None:
                wake(
                    f"{prefix}/{object_key(obj)}", None if event == "DELETED" else fingerprint(obj)
                )

            return notify

        def generation(obj: Obj) -> Any:  # spec changes, kubectl scale; not our status writes
            meta = obj.get("metadata") or {}
            return (meta.get("generation"), bool(meta.get("deletionTimestamp")))

        def pod_changed(event: str, pod: Obj) -> None:
            if matters(pod):
                wake(pod_key(pod), pod_fingerprint(event, pod))

        self.pods = PodWatch(kube, pod_changed, timeout_seconds)
        self.nodes = Informer(
            kube, NODES, woken("node", node_fingerprint), timeout_seconds, slim=slim_node
        )
        self.jobs = [
            Informer(kube, r, woken(f"job/{r.kind}", generation), timeout_seconds) for r in JOBS
        ]
        self.services = Informer(
            kube,
            SERVICES,
            woken("service", lambda o: o.get("metadata", {}).get("uid")),
            timeout_seconds,
        )
        self.policies = Informer(kube, POLICIES, woken("policy", generation), timeout_seconds)
        self.queues = Informer(kube, QUEUES, woken("queue", generation), timeout_seconds)
        self.by_kind: dict[str, Informer] = {
            i.resource.kind: i
            for i in (self.pods, self.nodes, *self.jobs, self.services, self.policies, self.queues)
        }

    def start(self) -> dict[str, threading.Thread]:
        return {f"informer-{k}": i.start() for k, i in self.by_kind.items()}

    def stop(self) -> None:
        for informer in self.by_kind.values():
            informer.stop.set()

    def synced(self, timeout: float = 0.0) -> bool:
        """Every informer has listed once (before that a round would see a partial cluster
        and, say, take a node it has not seen yet for a deleted one)."""
        deadline = time.monotonic() + timeout
        return all(
            i.listed.wait(max(0.0, deadline - time.monotonic())) for i in self.by_kind.values()
        )

    def jobs_now(self) -> tuple[Obj, ...]:
        return tuple(j for i in self.jobs for j in i.store())

    def lists(self) -> int:
        """LIST requests made so far (one per informer, plus one per expired watch)."""
        return sum(i.lists for i in self.by_kind.values())

    def state(
        self,
        seen: Mapping[str, int],
        unhealthy_gpus: Mapping[str, int],
        desired_replicas: Mapping[str, int],
        write_failures: Mapping[str, str],
        wait: float = 5.0,
    ) -> ClusterState:
        """The cluster as the informers hold it, once they have seen the versions this
        replica wrote last round (`seen`: kind -> resourceVersion), or after `wait` s."""
        deadline = time.monotonic() + wait
        for kind, version in seen.items():
            informer = self.by_kind.get(kind)
            if informer is not None and not informer.wait_for(
                version, max(0.0, deadline - time.monotonic())
            ):
                log.warning(
                    "%s informer has not seen version %d yet; planning anyway", kind, version
                )
        policies = [p for p in self.policies.store() if p["metadata"].get("name") == "default"]
        return ClusterState(
            nodes=self.nodes.store(),
            pods=self.pods.store(),
            jobs=self.jobs_now(),
            services=self.services.store(),
            policy=policies[0] if policies else None,
            unhealthy_gpus=dict(unhealthy_gpus),
            desired_replicas=dict(desired_replicas),
            now=time.time(),
            write_failures=dict(write_failures),
            queues=self.queues.store(),
        )
