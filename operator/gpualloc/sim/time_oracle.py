"""ORACLE, not a policy: what ordering alone could reach on a window, for the verdict's bound.

`oracle-srpt` reads the trace's true durations, which no scheduler may: waiting gangs in order
of their true remaining GPU-time (GPUs x (duration - work kept)), smallest first, each bound
whole by best-fit or passed over (fifo-bestfit's placement, no preemption). Shortest
remaining processing time first is the order that minimises mean completion time on one
machine; here it is a reference for non-preemptive gang scheduling with exact knowledge,
against which a policy that sees only estimates is judged. It is never a baseline to beat.
"""

from __future__ import annotations

from gpualloc.sim.time_baselines import FreeMap, best_fit_in_order
from gpualloc.sim.timeline import Action, SimJob, Simulation

ORACLE = "oracle-srpt"


def remaining_gpu_seconds(job: SimJob) -> float:
    """The truth: what the oracle reads and every policy must not."""
    return job.gpus * (job.trace.duration - job.work_done)


class OracleSrpt:
    name = ORACLE

    def round(self, sim: Simulation) -> list[Action]:
        waiting = [j for j in sim.active.values() if j.waiting]
        waiting.sort(key=lambda j: (remaining_gpu_seconds(j), j.arrival))
        return best_fit_in_order(waiting, FreeMap(sim.nodes.values()))

    def wake_at(self) -> float | None:
        return None
