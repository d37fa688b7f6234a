"""Pure builders: the pods and Service gpualloc creates for a job, and the placement patch.

Nothing here calls the API; `actuate.py` sends what these return.
"""

from __future__ import annotations

import copy
from typing import Any

from gpualloc.k8s.convert import GATE, GPU_RESOURCE, JOB_LABEL, KIND_LABEL, REPLICA_LABEL
from gpualloc.model import JobKind

Obj = dict[str, Any]
MASTER_PORT = 29500
# when gpualloc pinned and ungated a pod: one still unbound long after is re-planned
PLACED_AT = "gpualloc.io/placed-at"
DEFAULT_IMAGE = "registry.k8s.io/pause:3.10"


def pod_name(job_name: str, kind: str, replica: int) -> str:
    role = "worker" if kind == JobKind.TRAINING else "replica"
    return f"{job_name}-{role}-{replica}"


def owner_reference(job: Obj) -> Obj:
    meta = job["metadata"]
    return {
        "apiVersion": job.get("apiVersion", "gpualloc.io/v1alpha1"),
        "kind": job["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def build_pod(job: Obj, replica: int, gpus: int, world_size: int) -> Obj:
    """Pod `replica` of `job`, held by the scheduling gate until gpualloc places it."""
    meta = job["metadata"]
    kind = job["kind"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    spec: Obj = template.get("spec") or {}
    containers = spec.get("containers") or [{"name": "main", "image": DEFAULT_IMAGE}]
    spec["containers"] = containers
    # The GPUs go to the first container, as device plugins count them per container.
    resources = containers[0].setdefault("resources", {})
    resources.setdefault("limits", {})[GPU_RESOURCE] = str(gpus)
    resources.setdefault("requests", {})[GPU_RESOURCE] = str(gpus)
    spec["schedulingGates"] = [*(spec.get("schedulingGates") or []), {"name": GATE}]
    spec.setdefault("restartPolicy", "Never" if kind == JobKind.TRAINING else "Always")
    if kind == JobKind.TRAINING:
        # Rendezvous for torch.distributed: stable DNS through the headless Service.
        spec["hostname"] = pod_name(name, kind, replica)
        spec["subdomain"] = name
        env = [
            {"name": "WORLD_SIZE", "value": str(world_size)},
            {"name": "RANK", "value": str(replica)},
            {"name": "MASTER_ADDR", "value": f"{pod_name(name, kind, 0)}.{name}.{namespace}.svc"},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        ]
        for container in containers:
            kept = [e for e in container.get("env") or [] if e.get("name") not in _ENV_NAMES]
            container["env"] = kept + env
    labels = {
        **(tmeta.get("labels") or {}),
        JOB_LABEL: name,
        KIND_LABEL: kind,
        REPLICA_LABEL: str(replica),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name, kind, replica),
            "namespace": namespace,
            "labels": labels,
            "annotations": dict(tmeta.get("annotations") or {}),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": spec,
    }


_ENV_NAMES = {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"}


def build_service(job: Obj) -> Obj:
    """Headless Service giving training workers stable names for rendezvous."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", "default"),
            "labels": {JOB_LABEL: meta["name"]},
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_LABEL: meta["name"], KIND_LABEL: job["kind"]},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT}],
            "publishNotReadyAddresses": True,
        },
    }


def placement_patch(pod: Obj, node: str, stamp: str = "") -> list[Obj]:
    """JSON patch pinning a gated pod to `node` and removing gpualloc's gate, in one request.

    Kubernetes lets a gated pod's required node affinity be narrowed only: set it when
    absent, otherwise add the node requirement to every existing term.
    """
    spec = pod.get("spec") or {}
    pin = {"key": "metadata.name", "operator": "In", "values": [node]}
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    ops: list[Obj] = []
    if not terms:
        affinity = copy.deepcopy(spec.get("affinity") or {})
        affinity.setdefault("nodeAffinity", {})[
            "requiredDuringSchedulingIgnoredDuringExecution"
        ] = {"nodeSelectorTerms": [{"matchFields": [pin]}]}
        ops.append({"op": "add", "path": "/spec/affinity", "value": affinity})
    else:
        base = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
        for i, term in enumerate(terms):
            fields = [*(term.get("matchFields") or []), pin]
            ops.append(
                {"op": "add", "path": f"{base}/nodeSelectorTerms/{i}/matchFields", "value": fields}
            )
    gates = [g for g in spec.get("schedulingGates") or [] if g.get("name") != GATE]
    ops.append({"op": "replace", "path": "/spec/schedulingGates", "value": gates})
    if stamp:
        annotations = {**((pod.get("metadata") or {}).get("annotations") or {}), PLACED_AT: stamp}
        ops.append({"op": "add", "path": "/metadata/annotations", "value": annotations})
    return ops


def pinned(pod: Obj, node: str, stamp: str = "") -> Obj:
    """`pod` as it is after `placement_patch`: for pods created when the plan already places
    them (one request instead of a create and a patch)."""
    out = copy.deepcopy(pod)
    for op in placement_patch(pod, node, stamp):
        parts = op["path"].strip("/").split("/")
        target: Any = out
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[parts[-1]] = op["value"]
    return out


def replica_index(pod: Obj) -> int:
    """The replica a pod of gpualloc's plays, from its label (0 if missing)."""
    value = ((pod.get("metadata") or {}).get("labels") or {}).get(REPLICA_LABEL, "0")
    return int(value) if str(value).isdigit() else 0


def is_gated(pod: Obj) -> bool:
    return any(g.get("name") == GATE for g in (pod.get("spec") or {}).get("schedulingGates") or [])
