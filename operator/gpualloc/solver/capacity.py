"""Free capacity per node after the pods that already hold resources there."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from gpualloc.model import Node, RunningPod


@dataclass(frozen=True)
class Free:
    gpus: int
    cpu_milli: int
    memory_mib: int


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
    used = used or Free(0, 0, 0)
    return Free(
        gpus=max(0, node.gpus - node.unhealthy_gpus - used.gpus),
        cpu_milli=max(0, node.cpu_milli - used.cpu_milli),
        memory_mib=max(0, node.memory_mib - used.memory_mib),
    )
