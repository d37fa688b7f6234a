"""Pure data: nodes, pods, jobs, policy, snapshot and plan."""

from gpualloc.model.types import (
    Eviction,
    Job,
    JobKind,
    Node,
    NodeRequirements,
    Placement,
    Plan,
    Policy,
    Requirement,
    RunningPod,
    Snapshot,
    Taint,
    Toleration,
    Unscheduled,
)

__all__ = [
    "Eviction",
    "Job",
    "JobKind",
    "Node",
    "NodeRequirements",
    "Placement",
    "Plan",
    "Policy",
    "Requirement",
    "RunningPod",
    "Snapshot",
    "Taint",
    "Toleration",
    "Unscheduled",
]
