"""Which job wins a tie: the order the planner ranks jobs in within one priority level.

The planner first maximises GPUs per priority level; among plans that place as many GPUs,
the job earlier in this order is preferred (its bonus in the `age` objective is larger).
"""

from __future__ import annotations

from collections.abc import Iterable

from gpualloc.model import Job


def planning_order(jobs: Iterable[Job]) -> list[Job]:
    """Highest priority first; within a priority, oldest first (then by name, for a stable
    plan)."""
    return sorted(jobs, key=lambda j: (-j.priority, j.created, j.key))
