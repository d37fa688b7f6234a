"""Free capacity per node after the pods that already hold resources there."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gpualloc.model import Job, Node, RunningPod
from gpualloc.solver.eligibility import eligible


@dataclass(frozen=True)
class Free:
    gpus: int
    cpu_milli: int
    memory_mib: int

    def __add__(self, other: Free) -> Free:
        return Free(
            self.gpus + other.gpus,
            self.cpu_milli + other.cpu_milli,
            self.memory_mib + other.memory_mib,
        )

    def __sub__(self, other: Free) -> Free:
        return Free(
            self.gpus - other.gpus,
            self.cpu_milli - other.cpu_milli,
            self.memory_mib - other.memory_mib,
        )

    def holds(self, need: Free) -> bool:
        return (
            self.gpus >= need.gpus
            and self.cpu_milli >= need.cpu_milli
            and self.memory_mib >= need.memory_mib
        )


NOTHING = Free(0, 0, 0)


def per_replica(job: Job) -> Free:
    return Free(job.gpus_per_replica, job.cpu_milli, job.memory_mib)


def fitting(free: Mapping[str, Free], job: Job, nodes: Iterable[Node]) -> list[Node]:
    """The nodes one more replica of `job` fits on: its GPUs, CPU and memory free there, and
    the node one the job may use."""
    need = per_replica(job)
    return [n for n in nodes if free[n.name].holds(need) and eligible(job.requirements, n)]


def usage_by_node(pods: Iterable[RunningPod]) -> dict[str, Free]:
    gpus: dict[str, int] = defaultdict(int)
    cpu: dict[str, int] = defaultdict(int)
    mem: dict[str, int] = defaultdict(int)
    for pod in pods:
        gpus[pod.node] += pod.gpus
        cpu[pod.node] += pod.cpu_milli
        mem[pod.node] += pod.memory_mib
    return {n: Free(gpus[n], cpu[n], mem[n]) for n in gpus}


def free_capacity(node: Node, used: Free | None) -> Free:
    """What new pods may use; unhealthy GPUs are taken out (pods on them stay)."""
    used = used or NOTHING
    return Free(
        gpus=max(0, node.gpus - node.unhealthy_gpus - used.gpus),
        cpu_milli=max(0, node.cpu_milli - used.cpu_milli),
        memory_mib=max(0, node.memory_mib - used.memory_mib),
    )
