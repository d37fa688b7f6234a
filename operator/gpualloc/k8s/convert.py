"""Kubernetes objects (as plain dicts, from YAML or the API) -> the planner's model. Pure.

Errors name the object and the field, so `gpualloc plan` and the operator can say exactly
what to fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from gpualloc.model import (
    Defragmentation,
    Job,
    JobKind,
    Node,
    NodeRequirements,
    Policy,
    Queue,
    QueueQuota,
    Requirement,
    RunningPod,
    Taint,
    Toleration,
    TopologyRequest,
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


class SizingWait(Exception):
    """A job sized from its model cannot be sized yet: no node it may use exists. It waits
    (Unschedulable, with this reason) instead of being sized against made-up GPUs."""


# Pod template settings that give a pod more than its namespace's defaults. A job's pods are
# created by the operator's service account, so each is refused unless the policy allows it
# (the namespace's Pod Security admission still applies on top: the pods are created there).
POD_SETTINGS = ("serviceAccountName", "privileged", "hostPath", "hostNetwork", "hostPID", "hostIPC")
MAX_ESTIMATED_GPU_HOURS = 1e8  # the CRD's bound on spec.estimatedGPUHours
MAX_TOPOLOGY_LEVELS = 8  # the CRD's bound on AllocationPolicy spec.topology.levels
# A label key (hack/crd_schema.py LABEL_KEY): optional DNS-subdomain prefix and '/', a name.
LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
LABEL_KEY_MAX = 317


def _mapping(value: Any, obj: Obj, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(ref(obj), field, f"must be an object (got {type(value).__name__})")
    return value


def _list(value: Any, obj: Obj, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(ref(obj), field, f"must be a list (got {type(value).__name__})")
    return value


def _objects(value: Any, obj: Obj, field: str) -> list[Mapping[str, Any]]:
    items = _list(value, obj, field)
    for i, item in enumerate(items):
        _mapping(item, obj, f"{field}[{i}]")
    return items


def pod_settings(pod_spec: Mapping[str, Any]) -> list[str]:
    """The POD_SETTINGS a pod template uses, by the names in AllocationPolicy spec.security."""
    used = []
    if pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount"):
        used.append("serviceAccountName")
    containers = [
        c
        for key in ("containers", "initContainers", "ephemeralContainers")
        for c in pod_spec.get(key) or []
        if isinstance(c, Mapping)
    ]
    if any(((c.get("securityContext") or {}).get("privileged")) for c in containers):
        used.append("privileged")
    if any(isinstance(v, Mapping) and "hostPath" in v for v in pod_spec.get("volumes") or []):
        used.append("hostPath")
    used += [key for key in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(key)]
    return used


def _template_spec(obj: Obj) -> Mapping[str, Any]:
    """A job's pod template spec, refused when malformed where gpualloc reads or copies it."""
    spec = _mapping(obj.get("spec"), obj, "spec")
    template = _mapping(spec.get("template"), obj, "spec.template")
    meta = _mapping(template.get("metadata"), obj, "spec.template.metadata")
    for key in ("labels", "annotations"):
        values = _mapping(meta.get(key), obj, f"spec.template.metadata.{key}")
        if not all(isinstance(v, str) for v in values.values()):
            raise SpecError(ref(obj), f"spec.template.metadata.{key}", "values must be strings")
    pod = _mapping(template.get("spec"), obj, "spec.template.spec")
    for key in ("containers", "initContainers", "volumes", "tolerations"):
        _objects(pod.get(key), obj, f"spec.template.spec.{key}")
    for i, container in enumerate(pod.get("containers") or []):
        where = f"spec.template.spec.containers[{i}]"
        resources = _mapping(container.get("resources"), obj, f"{where}.resources")
        for key in ("requests", "limits"):
            _mapping(resources.get(key), obj, f"{where}.resources.{key}")
        _objects(container.get("env"), obj, f"{where}.env")
    return pod


def check_pod_template(obj: Obj, allowed: frozenset[str]) -> None:
    """Refuse a job's pod template that is malformed where gpualloc reads it, or that uses a
    setting the policy does not allow."""
    pod = _template_spec(obj)
    for key in ("containers", "initContainers"):
        for i, container in enumerate(pod.get(key) or []):
            resources = container.get("resources") or {}
            if any(GPU_RESOURCE in (resources.get(k) or {}) for k in ("requests", "limits")):
                raise SpecError(
                    ref(obj),
                    f"spec.template.spec.{key}[{i}].resources",
                    f"must not ask for {GPU_RESOURCE}: gpualloc gives each pod its GPUs "
                    "(gpusPerWorker / gpusPerReplica) and plans exactly those",
                )
    refused = [s for s in pod_settings(pod) if s not in allowed]
    if refused:
        raise SpecError(
            ref(obj),
            "spec.template.spec",
            f"uses {', '.join(refused)}, which AllocationPolicy spec.security does not allow "
            "(creating a job must not grant more than creating a pod)",
        )


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


def rfc3339_seconds(stamp: object) -> float | None:
    """Unix seconds of an RFC 3339 time (a string, or the datetime a YAML loader makes of
    one); None when it is absent or not a time."""
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def created_at(obj: Obj) -> float:
    return rfc3339_seconds((obj.get("metadata") or {}).get("creationTimestamp")) or 0.0


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
        # when it started, for choosing the victim that loses least
        started=rfc3339_seconds((obj.get("status") or {}).get("startTime")) or 0.0,
    )


# -- jobs --------------------------------------------------------------------------------
def _requirements(spec: Mapping[str, Any], obj: Obj) -> NodeRequirements:
    gpu = _mapping(spec.get("gpu"), obj, "spec.gpu")
    pod = _mapping(
        _mapping(spec.get("template"), obj, "spec.template").get("spec"), obj, "spec.template.spec"
    )
    products = gpu.get("products") or []
    if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
        raise SpecError(ref(obj), "spec.gpu.products", "must be a list of product names")
    min_mem = _int(gpu, "minMemoryMiB", obj, "spec.gpu", 0) or 0
    field = (
        "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    )
    affinity = _mapping(pod.get("affinity"), obj, "spec.template.spec.affinity")
    required = _mapping(
        _mapping(affinity.get("nodeAffinity"), obj, "spec.template.spec.affinity.nodeAffinity").get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ),
        obj,
        field,
    )
    terms = _objects(required.get("nodeSelectorTerms"), obj, f"{field}.nodeSelectorTerms")
    selector = _mapping(pod.get("nodeSelector"), obj, "spec.template.spec.nodeSelector")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items()):
        raise SpecError(ref(obj), "spec.template.spec.nodeSelector", "must map strings to strings")
    return NodeRequirements(
        products=tuple(products),
        min_gpu_memory_mib=min_mem,
        node_selector=tuple(sorted(selector.items())),
        affinity_terms=tuple(
            tuple(
                _requirement(e, f, obj, f"{field}.nodeSelectorTerms[{i}].{key}")
                for f, key in ((False, "matchExpressions"), (True, "matchFields"))
                for e in _objects(term.get(key), obj, f"{field}.nodeSelectorTerms[{i}].{key}")
            )
            for i, term in enumerate(terms)
        ),
        tolerations=tuple(
            Toleration(
                str(t.get("key") or ""),
                str(t.get("operator") or "Equal"),
                str(t.get("value") or ""),
                str(t.get("effect") or ""),
            )
            for t in _objects(pod.get("tolerations"), obj, "spec.template.spec.tolerations")
        ),
    )


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")


def _requirement(expr: Mapping[str, Any], field: bool, obj: Obj, where: str) -> Requirement:
    key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if not isinstance(key, str) or operator not in _OPERATORS:
        raise SpecError(ref(obj), where, f"needs a key and an operator in {_OPERATORS}")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SpecError(ref(obj), f"{where}.values", "must be a list of strings")
    return Requirement(key, operator, tuple(values), field=field)


def _sizing_gpu(nodes: Sequence[Node], req: NodeRequirements) -> tuple[int, int]:
    """(smallest GPU memory, largest GPUs per node) over the nodes a job may use."""
    usable = [  # a node that does not say its GPU memory cannot size anything
        n
        for n in nodes
        if (not req.products or n.product in req.products)
        and n.gpu_memory_mib > 0
        and n.gpu_memory_mib >= req.min_gpu_memory_mib
    ]
    if not usable:
        wanted = ", ".join(req.products) or "any product"
        memory = f" with >= {req.min_gpu_memory_mib} MiB" if req.min_gpu_memory_mib else ""
        raise SizingWait(
            f"no node has GPUs it may use ({wanted}{memory}) to size spec.model against; "
            "waiting for one"
        )
    return min(n.gpu_memory_mib for n in usable), max(n.gpus for n in usable)


def _label_key(value: Any, obj: Obj, field: str) -> str:
    if not isinstance(value, str) or len(value) > LABEL_KEY_MAX or not LABEL_KEY.fullmatch(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise SpecError(ref(obj), field, f"must be a node label key (got {shown})")
    return value


def unknown_level(topology: TopologyRequest, levels: Sequence[str]) -> tuple[str, str] | None:
    """(field, message) when a job's spec.topology names a level the policy does not list."""
    for key, level in (("required", topology.required), ("preferred", topology.preferred)):
        if level is not None and level not in levels:
            listed = ", ".join(levels) if levels else "none"
            return (
                f"spec.topology.{key}",
                f"{level} is not a topology level of AllocationPolicy spec.topology.levels "
                f"({listed})",
            )
    return None


def _topology(spec: Mapping[str, Any], obj: Obj, levels: Sequence[str] | None) -> TopologyRequest:
    """spec.topology; with `levels` (the policy's), a level it does not list is refused."""
    topo = _mapping(spec.get("topology"), obj, "spec.topology")
    unknown = sorted(str(k) for k in topo if k not in ("required", "preferred"))
    if unknown:
        raise SpecError(
            ref(obj), f"spec.topology.{unknown[0][:64]}", "unknown field (required, preferred)"
        )
    chosen = {
        key: _label_key(topo[key], obj, f"spec.topology.{key}")
        for key in ("required", "preferred")
        if topo.get(key) is not None
    }
    request = TopologyRequest(chosen.get("required"), chosen.get("preferred"))
    refused = unknown_level(request, levels) if levels is not None else None
    if refused:
        raise SpecError(ref(obj), *refused)
    return request


def job_from_k8s(
    obj: Obj,
    nodes: Sequence[Node] = (),
    desired: int | None = None,
    levels: Sequence[str] | None = None,
) -> Job:
    """An LLMTrainingJob or LLMInferenceJob. `desired` overrides the inference replica count
    (autoscaling decides it); `levels`: the policy's topology levels (None: not checked)."""
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
    pod = _template_spec(obj)
    req = _requirements(spec, obj)
    count_key, gpus_key = (
        ("workers", "gpusPerWorker") if training else ("replicas", "gpusPerReplica")
    )
    count = _int(spec, count_key, obj, "spec", 1 if training else 0)
    gpus = _int(spec, gpus_key, obj, "spec", 1)
    model = _mapping(spec.get("model"), obj, "spec.model")
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
        except SizingWait as err:
            raise SizingWait(f"{ref(obj)}: {err}") from None
    topology = _topology(spec, obj, levels)
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
    if not -(2**31) <= priority < 2**31:
        raise SpecError(ref(obj), "spec.priority", f"must be a 32-bit integer (got {priority})")
    queue = spec.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise SpecError(ref(obj), "spec.queue", f"must be a queue name (got {queue!r})")
    estimate = spec.get("estimatedGPUHours")
    if estimate is not None and (
        isinstance(estimate, bool)
        or not isinstance(estimate, int | float)
        or not 0 <= estimate <= MAX_ESTIMATED_GPU_HOURS  # NaN fails both
    ):
        raise SpecError(
            ref(obj),
            "spec.estimatedGPUHours",
            f"must be a number from 0 to {MAX_ESTIMATED_GPU_HOURS:g} (got {estimate!r})",
        )
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
        queue=queue or None,
        estimated_gpu_hours=float(estimate) if estimate is not None else None,
        topology=topology,
        **_movability(spec, obj),
    )


MAX_CHECKPOINT_SECONDS = 7 * 86400  # the CRD's bound on spec.checkpoint.intervalSeconds


def _movability(spec: Mapping[str, Any], obj: Obj) -> dict[str, Any]:
    """spec.movable, spec.checkpoint.intervalSeconds and the last move (status.lastMovedTime)."""
    movable = spec.get("movable", False)
    if not isinstance(movable, bool):
        raise SpecError(ref(obj), "spec.movable", f"must be true or false (got {movable!r})")
    checkpoint = _mapping(spec.get("checkpoint"), obj, "spec.checkpoint")
    interval = checkpoint.get("intervalSeconds")
    if interval is not None:
        interval = _bounded_field(
            interval, 1, MAX_CHECKPOINT_SECONDS, obj, "spec.checkpoint.intervalSeconds"
        )
    # our own field: a bad value only forgets the cooldown
    moved = rfc3339_seconds((obj.get("status") or {}).get("lastMovedTime")) or 0.0
    return {"movable": movable, "checkpoint_seconds": interval, "moved_at": moved}


# -- policy ------------------------------------------------------------------------------
def _bounded_float(value: Any, lo: float, hi: float) -> float:
    number = float(value)  # NaN and infinities fail the range check below
    if not lo <= number <= hi:
        raise ValueError(f"{value!r} is not a number in [{lo}, {hi}]")
    return number


def _bounded(value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{value!r} is not an integer in [{lo}, {hi}]")
    return value


def _levels(spec: Mapping[str, Any], obj: Obj) -> tuple[str, ...]:
    """spec.topology.levels: distinct node label keys, widest first."""
    topo = _mapping(spec.get("topology"), obj, "spec.topology")
    levels = _list(topo.get("levels"), obj, "spec.topology.levels")
    if len(levels) > MAX_TOPOLOGY_LEVELS:
        raise SpecError(ref(obj), "spec.topology.levels", f"at most {MAX_TOPOLOGY_LEVELS} levels")
    keys = tuple(_label_key(v, obj, f"spec.topology.levels[{i}]") for i, v in enumerate(levels))
    if len(set(keys)) != len(keys):
        raise SpecError(ref(obj), "spec.topology.levels", "lists a label key twice")
    return keys


def policy_from_k8s(obj: Obj | None) -> Policy:
    """The AllocationPolicy named `default`; built-in defaults when absent."""
    if not obj:
        return Policy()
    spec = obj.get("spec") or {}
    solver = spec.get("solver") or {}
    preemption = spec.get("preemption") or {}
    weights = spec.get("weights") or {}
    throughput = spec.get("throughput") or {}
    limits = spec.get("limits") or {}
    security = spec.get("security") or {}
    levels = _levels(spec, obj)
    try:
        return Policy(
            time_limit_seconds=_bounded_float(solver.get("timeLimitSeconds", 10.0), 0.01, 600),
            relative_gap=_bounded_float(solver.get("relativeGap", 0.0), 0.0, 1.0),
            num_workers=_bounded(solver.get("workers", 2), 1, 64),
            preemption=bool(preemption.get("enabled", True)),
            max_evictions_per_round=preemption.get("maxEvictionsPerRound"),
            throughput={str(k): float(v) for k, v in throughput.items()},
            fragmentation_weight=int(weights.get("fragmentation", 1)),
            throughput_weight=int(weights.get("throughput", 1)),
            max_pods_per_job=_bounded(limits.get("maxPodsPerJob", 512), 1, 10000),
            grace_period_seconds=_bounded(preemption.get("gracePeriodSeconds", 30), 0, 3600),
            unbound_timeout_seconds=_bounded(spec.get("unboundTimeoutSeconds", 120), 10, 86400),
            allowed_pod_settings=frozenset(
                setting
                for setting in POD_SETTINGS
                if security.get(f"allow{setting[0].upper()}{setting[1:]}") is True
            ),
            default_queue=str(spec["defaultQueue"]) if spec.get("defaultQueue") else None,
            topology_levels=levels,
            defragmentation=_defragmentation(spec, obj),
        )
    except (TypeError, ValueError) as err:
        raise SpecError(ref(obj), "spec", str(err)) from None


def _defragmentation(spec: Mapping[str, Any], obj: Obj) -> Defragmentation:
    defrag = _mapping(spec.get("defragmentation"), obj, "spec.defragmentation")
    where = "spec.defragmentation"
    enabled = defrag.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SpecError(ref(obj), f"{where}.enabled", f"must be true or false (got {enabled!r})")
    base = Defragmentation()
    return Defragmentation(
        enabled=enabled,
        max_moves_per_round=_bounded_field(
            defrag.get("maxMovesPerRound", base.max_moves_per_round),
            0,
            1000,
            obj,
            f"{where}.maxMovesPerRound",
        ),
        min_runtime_seconds=_bounded_field(
            defrag.get("minRuntimeSeconds", base.min_runtime_seconds),
            0,
            MAX_CHECKPOINT_SECONDS,
            obj,
            f"{where}.minRuntimeSeconds",
        ),
        cooldown_seconds=_bounded_field(
            defrag.get("cooldownSeconds", base.cooldown_seconds),
            0,
            MAX_CHECKPOINT_SECONDS,
            obj,
            f"{where}.cooldownSeconds",
        ),
    )


# -- queues ------------------------------------------------------------------------------
def _limit(entry: Mapping[str, Any], key: str, obj: Obj, where: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    return _bounded_field(value, 0, 10**6, obj, f"{where}.{key}")


def _bounded_field(value: Any, lo: int, hi: int, obj: Obj, field: str) -> int:
    try:
        return _bounded(value, lo, hi)
    except ValueError as err:
        raise SpecError(ref(obj), field, str(err)) from None


def queue_from_k8s(obj: Obj) -> Queue:
    """A GPUQueue (cluster-scoped). The CRD schema refuses most bad specs at admission; this
    names the field of anything it let through."""
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        raise SpecError(ref(obj), "metadata.name", "is required")
    spec = _mapping(obj.get("spec"), obj, "spec")
    namespaces = _list(spec.get("namespaces"), obj, "spec.namespaces")
    if not all(isinstance(n, str) for n in namespaces):
        raise SpecError(ref(obj), "spec.namespaces", "must be a list of namespace names")
    parent = spec.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise SpecError(ref(obj), "spec.parent", "must be a queue name")
    quota = []
    for i, entry in enumerate(_objects(spec.get("quota"), obj, "spec.quota")):
        where = f"spec.quota[{i}]"
        product = entry.get("product")
        if not isinstance(product, str) or not product:
            raise SpecError(ref(obj), f"{where}.product", "must be a GPU product name or *")
        quota.append(
            QueueQuota(
                product,
                _bounded_field(entry.get("nominal", 0), 0, 10**6, obj, f"{where}.nominal"),
                _limit(entry, "borrowingLimit", obj, where),
                _limit(entry, "lendingLimit", obj, where),
            )
        )
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1e3:
        raise SpecError(ref(obj), "spec.weight", f"must be a number in [0, 1000] (got {weight!r})")
    limit = spec.get("maxPriority")
    if limit is not None:
        limit = _bounded_field(limit, -(2**31), 2**31 - 1, obj, "spec.maxPriority")
    preemption = _mapping(spec.get("preemption"), obj, "spec.preemption")
    within = preemption.get("withinQueue", "LowerPriority")
    if within not in ("LowerPriority", "Never"):
        raise SpecError(ref(obj), "spec.preemption.withinQueue", "must be LowerPriority or Never")
    return Queue(
        name=str(meta["name"]),
        namespaces=tuple(namespaces),
        parent=parent or None,
        quota=tuple(quota),
        weight=float(weight),
        max_priority=limit,
        reclaim_within_parent=preemption.get("reclaimWithinParent", True) is not False,
        preempt_within_queue=within == "LowerPriority",
    )
