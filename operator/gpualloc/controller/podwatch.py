"""The pod watch: which pod changes can change the best plan.

Pods change by the thousand in a burst (created, bound, marked running). Kopf's per-event
machinery (an object worker, loggers, cause detection) cost more of the operator's CPU than
creating the pods did, so pods are watched by a plain informer (k8s/informer.py) instead,
which pokes the loop only when the pod's fingerprint changed.
(hack/bench_operator.py times bindings with the same watch.)
"""

from __future__ import annotations

from typing import Any

from gpualloc.k8s.client import Kube
from gpualloc.k8s.convert import GPU_RESOURCE, JOB_LABEL
from gpualloc.k8s.informer import Informer, Notify, Resource

Obj = dict[str, Any]
PODS = Resource("/api/v1/pods", "Pod")
_KEPT_ENV = {"WORLD_SIZE"}


def pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"pod/{meta.get('namespace')}/{meta.get('name')}"


def matters(pod: Obj) -> bool:
    """gpualloc's pods and pods asking for GPUs change the plan; a web server's pod on a CPU
    node does not, and must not wake the loop."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if JOB_LABEL in labels:
        return True
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        if GPU_RESOURCE in (resources.get("requests") or {}) or GPU_RESOURCE in (
            resources.get("limits") or {}
        ):
            return True
    return False


def pod_fingerprint(event_type: str | None, pod: Obj) -> Any:
    """What about a pod matters to the plan (None: gone). Bound, finished, failed, being
    deleted: capacity changed. Running after bound: no news."""
    if event_type == "DELETED":
        return None
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    phase = status.get("phase")
    return (
        spec.get("nodeName"),
        phase if phase in ("Succeeded", "Failed") else None,
        bool(meta.get("deletionTimestamp")),
    )


def slim_pod(pod: Obj) -> Obj:
    """What the planner and the status read of a pod: the store holds thousands of them."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}

    def container(c: Obj) -> Obj:
        env = [e for e in c.get("env") or [] if e.get("name") in _KEPT_ENV]
        return {"name": c.get("name"), "resources": c.get("resources") or {}, "env": env}

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            k: meta[k]
            for k in (
                "name",
                "namespace",
                "uid",
                "labels",
                "ownerReferences",
                "deletionTimestamp",
                "resourceVersion",
                "creationTimestamp",
            )
            if k in meta
        }
        | {
            "annotations": {
                k: v
                for k, v in (meta.get("annotations") or {}).items()
                if k.startswith("gpualloc.io/")
            }
        },
        "spec": {k: spec[k] for k in ("nodeName", "schedulingGates", "affinity") if k in spec}
        | {
            "containers": [container(c) for c in spec.get("containers") or []],
            "initContainers": [container(c) for c in spec.get("initContainers") or []],
        },
        "status": {
            "phase": (pod.get("status") or {}).get("phase"),
            # victims are chosen newest first, and lost work counted, from it
            "startTime": (pod.get("status") or {}).get("startTime"),
            # kube-scheduler's verdict: a pinned pod it found unschedulable is re-planned
            "conditions": [
                c
                for c in (pod.get("status") or {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ],
        },
    }


class PodWatch(Informer):
    """Every pod in the cluster (unmanaged pods use GPUs too), slimmed."""

    def __init__(
        self, kube: Kube, notify: Notify, timeout_seconds: int = 60, slim: bool = True
    ) -> None:
        super().__init__(kube, PODS, notify, timeout_seconds, slim=slim_pod if slim else None)
