"""Kubernetes objects (as plain dicts, from YAML or the API) -> the planner's model. Pure.

Errors name the object and the field, so `gpualloc plan` and the operator can say exactly
what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from gpualloc.model import (
    Job,
    JobKind,
    Node,
    NodeRequirements,
    Policy,
    Requirement,
    RunningPod,
    Taint,
    Toleration,
)
from gpualloc.model.sizing import SizingError, parse_parameters, size_inference, size_training

GROUP = "gpualloc.io"
GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
MEMORY_LABEL = "nvidia.com/gpu.memory"
JOB_LABEL = "gpualloc.io/job"
KIND_LABEL = "gpualloc.io/kind"
REPLICA_LABEL = "gpualloc.io/replica"
GATE = "gpualloc.io/placement"

Obj = Mapping[str, Any]


class SpecError(ValueError):
    """A Kubernetes object that cannot be used; names the object and the field."""

    def __init__(self, obj: str, field: str, message: str) -> None:
        super().__init__(f"{obj}: {field}: {message}")
        self.obj, self.field, self.message = obj, field, message


def ref(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "<unnamed>")
    ns = meta.get("namespace")
    return f"{obj.get('kind', 'object')} {ns + '/' if ns else ''}{name}"


def _quantity(value: Any, obj: Obj, field: str) -> float:
    try:
        return float(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        raise SpecError(ref(obj), field, f"not a Kubernetes quantity: {value!r}") from None


def _int(spec: Mapping[str, Any], key: str, obj: Obj, field: str, minimum: int) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(ref(obj), f"{field}.{key}", f"must be an integer (got {value!r})")
    if value < minimum:
        raise SpecError(ref(obj), f"{field}.{key}", f"must be >= {minimum} (got {value})")
    return value


def created_at(obj: Obj) -> float:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return 0.0


# -- nodes -------------------------------------------------------------------------------
def node_from_k8s(obj: Obj, unhealthy_gpus: int = 0) -> Node | None:
    """A GPU node, or None for nodes without allocatable GPUs."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    alloc = status.get("allocatable") or {}
    gpus = int(_quantity(alloc.get(GPU_RESOURCE, 0), obj, f"status.allocatable[{GPU_RESOURCE}]"))
    if gpus <= 0:
        return None
    labels = dict(meta.get("labels") or {})
    spec = obj.get("spec") or {}
    memory_label = labels.get(MEMORY_LABEL, "0")
    try:
        gpu_memory = int(memory_label)
    except ValueError:
        raise SpecError(ref(obj), f"metadata.labels[{MEMORY_LABEL}]", "must be MiB") from None
    return Node(
        name=meta["name"],
        product=labels.get(PRODUCT_LABEL, "unknown"),
        gpus=gpus,
        gpu_memory_mib=gpu_memory,
        cpu_milli=int(_quantity(alloc.get("cpu", 0), obj, "status.allocatable.cpu") * 1000),
        memory_mib=int(_quantity(alloc.get("memory", 0), obj, "status.allocatable.memory") / 2**20),
        labels=labels,
        taints=tuple(
            Taint(t.get("key", ""), t.get("value") or "", t.get("effect", "NoSchedule"))
            for t in spec.get("taints") or []
        ),
        cordoned=bool(spec.get("unschedulable")),
        unhealthy_gpus=min(unhealthy_gpus, gpus),
    )


# -- pods --------------------------------------------------------------------------------
def pod_requests(pod_spec: Mapping[str, Any], obj: Obj) -> tuple[int, int, int]:
    """(GPUs, CPU milli, memory MiB) a pod asks for: the sum over its containers, or the
    largest init container if bigger (how kube-scheduler counts)."""

    def total(containers: Iterable[Mapping[str, Any]]) -> list[float]:
        sums = [0.0, 0.0, 0.0]
        for c in containers:
            res = c.get("resources") or {}
            req = {**(res.get("limits") or {}), **(res.get("requests") or {})}
            for i, name in enumerate((GPU_RESOURCE, "cpu", "memory")):
                if name in req:
                    sums[i] += _quantity(req[name], obj, f"resources.requests.{name}")
        return sums

    main = total(pod_spec.get("containers") or [])
    for init in pod_spec.get("initContainers") or []:
        main = [max(a, b) for a, b in zip(main, total([init]), strict=True)]
    return int(main[0]), math.ceil(main[1] * 1000), math.ceil(main[2] / 2**20)


def committed_node(obj: Obj) -> str | None:
    """The node a pod holds resources on: bound, or ungated and pinned there by gpualloc."""
    spec = obj.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    if any(g.get("name") == GATE for g in spec.get("schedulingGates") or []):
        return None
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    if JOB_LABEL in ((obj.get("metadata") or {}).get("labels") or {}) and len(terms) == 1:
        for field in terms[0].get("matchFields") or []:
            if field.get("key") == "metadata.name" and len(field.get("values") or []) == 1:
                return str(field["values"][0])
    return None


def pod_from_k8s(obj: Obj) -> RunningPod | None:
    """A pod holding node resources, or None (finished, or not on a node yet)."""
    phase = (obj.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return None
    node = committed_node(obj)
    if node is None:
        return None
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    gpus, cpu, mem = pod_requests(obj.get("spec") or {}, obj)
    job = labels.get(JOB_LABEL)
    replica = labels.get(REPLICA_LABEL)
    return RunningPod(
        name=f"{meta.get('namespace', 'default')}/{meta.get('name')}",
        node=node,
        gpus=gpus,
        cpu_milli=cpu,
        memory_mib=mem,
        job=f"{meta.get('namespace', 'default')}/{job}" if job else None,
        replica=int(replica) if replica is not None and str(replica).isdigit() else None,
    )


# -- jobs --------------------------------------------------------------------------------
def _requirements(spec: Mapping[str, Any], obj: Obj) -> NodeRequirements:
    gpu = spec.get("gpu") or {}
    pod = ((spec.get("template") or {}).get("spec")) or {}
    products = gpu.get("products") or []
    if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
        raise SpecError(ref(obj), "spec.gpu.products", "must be a list of product names")
    min_mem = _int(gpu, "minMemoryMiB", obj, "spec.gpu", 0) or 0
    terms = (
        ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    return NodeRequirements(
        products=tuple(products),
        min_gpu_memory_mib=min_mem,
        node_selector=tuple(sorted((pod.get("nodeSelector") or {}).items())),
        affinity_terms=tuple(
            tuple(
                Requirement(e["key"], e["operator"], tuple(e.get("values") or ()), field=f)
                for f, key in ((False, "matchExpressions"), (True, "matchFields"))
                for e in term.get(key) or []
            )
            for term in terms
        ),
        tolerations=tuple(
            Toleration(
                t.get("key") or "",
                t.get("operator") or "Equal",
                t.get("value") or "",
                t.get("effect") or "",
            )
            for t in pod.get("tolerations") or []
        ),
    )


def _sizing_gpu(nodes: Sequence[Node], req: NodeRequirements) -> tuple[int, int]:
    """(smallest GPU memory, largest GPUs per node) over the nodes a job may use."""
    usable = [
        n
        for n in nodes
        if (not req.products or n.product in req.products)
        and n.gpu_memory_mib >= req.min_gpu_memory_mib
    ]
    if not usable:
        return max(req.min_gpu_memory_mib, 1), 8
    return min(n.gpu_memory_mib for n in usable), max(n.gpus for n in usable)


def job_from_k8s(obj: Obj, nodes: Sequence[Node] = (), desired: int | None = None) -> Job:
    """An LLMTrainingJob or LLMInferenceJob. `desired` overrides the inference replica count
    (autoscaling decides it)."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        raise SpecError(ref(obj), "metadata.name", "is required")
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError(ref(obj), "spec", "is required")
    training = kind == JobKind.TRAINING
    if kind not in (JobKind.TRAINING, JobKind.INFERENCE):
        raise SpecError(ref(obj), "kind", f"must be {JobKind.TRAINING} or {JobKind.INFERENCE}")
    req = _requirements(spec, obj)
    count_key, gpus_key = (
        ("workers", "gpusPerWorker") if training else ("replicas", "gpusPerReplica")
    )
    count = _int(spec, count_key, obj, "spec", 1 if training else 0)
    gpus = _int(spec, gpus_key, obj, "spec", 1)
    model = spec.get("model")
    if gpus is None or (training and count is None):
        if not isinstance(model, Mapping) or "parameters" not in model:
            raise SpecError(
                ref(obj), f"spec.{gpus_key}", "is required when spec.model is not given"
            )
        try:
            params = parse_parameters(model["parameters"])
            memory, node_gpus = _sizing_gpu(nodes, req)
            precision = str(model.get("precision", "bf16"))
            if training:
                size = size_training(params, precision, memory, node_gpus)
                gpus = gpus or size.gpus_per_replica
                count = count or size.replicas
            else:
                gpus = size_inference(params, precision, memory, node_gpus)
        except SizingError as err:
            raise SpecError(ref(obj), "spec.model", str(err)) from None
    pod = ((spec.get("template") or {}).get("spec")) or {}
    _, cpu, mem = pod_requests(pod, obj)
    if training:
        replicas = count or 1
        minimum = _int(spec, "minWorkers", obj, "spec", 1) or replicas
        if minimum > replicas:
            raise SpecError(ref(obj), "spec.minWorkers", f"must be <= workers ({replicas})")
    else:
        lo = _int(spec, "minReplicas", obj, "spec", 0)
        hi = _int(spec, "maxReplicas", obj, "spec", 1)
        if lo is not None and hi is not None and lo > hi:
            raise SpecError(ref(obj), "spec.minReplicas", f"must be <= maxReplicas ({hi})")
        if desired is None:  # what the user asked for (kubectl scale), 0 included
            replicas = count if count is not None else 1
        else:  # autoscaling decides within minReplicas..maxReplicas
            replicas = max(lo or 0, min(hi if hi is not None else desired, desired))
        minimum = min(max(1, lo or 1), replicas)
    priority = spec.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise SpecError(ref(obj), "spec.priority", f"must be an integer (got {priority!r})")
    return Job(
        key=f"{meta.get('namespace', 'default')}/{meta['name']}",
        kind=JobKind(kind),
        priority=priority,
        replicas=replicas,
        min_replicas=minimum,
        gpus_per_replica=gpus,
        cpu_milli=cpu,
        memory_mib=mem,
        preemptible=bool(spec.get("preemptible", False)),
        created=created_at(obj),
        requirements=req,
    )


# -- policy ------------------------------------------------------------------------------
def policy_from_k8s(obj: Obj | None) -> Policy:
    """The AllocationPolicy named `default`; built-in defaults when absent."""
    if not obj:
        return Policy()
    spec = obj.get("spec") or {}
    solver = spec.get("solver") or {}
    preemption = spec.get("preemption") or {}
    weights = spec.get("weights") or {}
    throughput = spec.get("throughput") or {}
    try:
        return Policy(
            time_limit_seconds=float(solver.get("timeLimitSeconds", 10.0)),
            relative_gap=float(solver.get("relativeGap", 0.0)),
            num_workers=int(solver.get("workers", 2)),
            preemption=bool(preemption.get("enabled", True)),
            max_evictions_per_round=preemption.get("maxEvictionsPerRound"),
            throughput={str(k): float(v) for k, v in throughput.items()},
            fragmentation_weight=int(weights.get("fragmentation", 1)),
            throughput_weight=int(weights.get("throughput", 1)),
        )
    except (TypeError, ValueError) as err:
        raise SpecError(ref(obj), "spec", str(err)) from None
