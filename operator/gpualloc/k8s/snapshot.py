"""Build the planner's immutable Snapshot from lists of Kubernetes objects. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gpualloc.k8s.convert import Obj, job_from_k8s, node_from_k8s, pod_from_k8s
from gpualloc.model import JobKind, Node, Snapshot

JOB_KINDS = (str(JobKind.TRAINING), str(JobKind.INFERENCE))


def build_snapshot(
    nodes: Iterable[Obj],
    pods: Iterable[Obj],
    jobs: Iterable[Obj],
    unhealthy_gpus: Mapping[str, int] | None = None,
    desired_replicas: Mapping[str, int] | None = None,
) -> Snapshot:
    """`unhealthy_gpus` (node -> count) and `desired_replicas` (job key -> replicas) come
    from Prometheus when the operator has it."""
    unhealthy = unhealthy_gpus or {}
    desired = desired_replicas or {}
    model_nodes: list[Node] = []
    for obj in nodes:
        name = (obj.get("metadata") or {}).get("name", "")
        node = node_from_k8s(obj, unhealthy.get(name, 0))
        if node is not None:
            model_nodes.append(node)
    node_names = {n.name for n in model_nodes}
    running = [p for p in (pod_from_k8s(o) for o in pods) if p and p.node in node_names]
    model_jobs = []
    for obj in jobs:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace', 'default')}/{meta.get('name')}"
        model_jobs.append(job_from_k8s(obj, model_nodes, desired.get(key)))
    return Snapshot(tuple(model_nodes), tuple(running), tuple(model_jobs))
