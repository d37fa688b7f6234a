"""Which nodes a job may use, ignoring capacity, and why not.

Mirrors the kube-scheduler filters that matter for GPU placement: cordon, taints,
nodeSelector, required node affinity, plus gpualloc's product and GPU-memory rules.
"""

from __future__ import annotations

from gpualloc.model import Node, NodeRequirements, Requirement

# Effects that keep new pods off a node; PreferNoSchedule is only a preference.
_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def _requirement_matches(req: Requirement, node: Node) -> bool:
    if req.field:
        value: str | None = node.name if req.key == "metadata.name" else None
    else:
        value = node.labels.get(req.key)
    op = req.operator
    if op == "In":
        return value is not None and value in req.values
    if op == "NotIn":
        return value is None or value not in req.values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and req.values:
        try:
            left, right = int(value), int(req.values[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False


def rejection(req: NodeRequirements, node: Node) -> str | None:
    """The first rule that keeps a job with `req` off `node`, or None if it may go there."""
    if node.cordoned:
        return "cordoned"
    if req.products and node.product not in req.products:
        return "product"
    if node.gpu_memory_mib < req.min_gpu_memory_mib:
        return "gpu memory"
    for taint in node.taints:
        if taint.effect in _BLOCKING_EFFECTS and not any(
            t.tolerates(taint) for t in req.tolerations
        ):
            return "taint"
    for key, value in req.node_selector:
        if node.labels.get(key) != value:
            return "nodeSelector"
    if req.affinity_terms and not any(
        all(_requirement_matches(r, node) for r in term) for term in req.affinity_terms
    ):
        return "node affinity"
    return None


def eligible(req: NodeRequirements, node: Node) -> bool:
    return rejection(req, node) is None
