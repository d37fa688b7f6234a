"""Which job wins a tie: the order the planner ranks jobs in within one priority level.

The planner first maximises GPUs per priority level; among plans that place as many GPUs,
the job earlier in this order is preferred (its bonus per GPU in the `age` objective is
larger, so GPUs go to the earliest-ranked jobs, not to the most jobs).

Within a level, jobs go by their *estimated finish had they started on arrival*: creation
time plus estimated run time (spec.estimatedGPUHours spread over the job's GPUs). So a job
that is short by its estimate goes ahead of longer ones submitted not much earlier (shortest
first cuts mean completion time), and no job starves: once the clock passes a job's
estimated finish, every job submitted after that ranks behind it, so a job is passed only by
jobs submitted before its own creation time plus its estimated run time. The planner never
sees true durations, only what users wrote. A job without an estimate is ranked as if it had
the longest estimated run time of its level (leaving the estimate out never moves a job
ahead); where no job of a level has an estimate this is oldest first, as before estimates.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpualloc.model import Job


def estimated_run_seconds(job: Job) -> float | None:
    """spec.estimatedGPUHours over the job's GPUs (all its replicas), in seconds."""
    if job.estimated_gpu_hours is None:
        return None
    return job.estimated_gpu_hours * 3600.0 / max(1, job.replicas * job.gpus_per_replica)


def planning_order(jobs: Iterable[Job]) -> list[Job]:
    """Highest priority first; within a priority, earliest estimated finish first (creation
    time + estimated run time), then oldest, then by name, for a stable plan."""
    jobs = list(jobs)
    longest: dict[int, float] = {}  # priority -> longest estimated run time at that level
    for job in jobs:
        run = estimated_run_seconds(job)
        if run is not None:
            longest[job.priority] = max(longest.get(job.priority, 0.0), run)

    def finish(job: Job) -> float:
        run = estimated_run_seconds(job)
        return job.created + (run if run is not None else longest.get(job.priority, 0.0))

    return sorted(jobs, key=lambda j: (-j.priority, finish(j), j.created, j.key))
