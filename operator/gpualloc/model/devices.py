"""Plain data for GPU-sharing placement at device level: a GPU is 1000 milli.

A pod asks either for a share of ONE GPU (`num_gpu == 1`, `gpu_milli < 1000`) or for
`num_gpu` whole GPUs on one node (`gpu_milli == 1000`), or for no GPU at all; CPU and
memory always count. Nothing here knows about Kubernetes or files.
"""

from __future__ import annotations

from dataclasses import dataclass

MILLI = 1000  # one whole GPU


@dataclass(frozen=True)
class GpuNode:
    name: str
    model: str  # GPU model, e.g. "V100M16"; empty for CPU-only nodes
    gpus: int
    cpu_milli: int
    memory_mib: int


@dataclass(frozen=True)
class PodRequest:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int  # per GPU: < 1000 is a share of one GPU, 1000 whole GPUs
    gpu_spec: tuple[str, ...] = ()  # allowed GPU models; empty = any

    def __post_init__(self) -> None:
        if self.num_gpu < 0 or not 0 <= self.gpu_milli <= MILLI:
            raise ValueError(f"pod {self.name}: num_gpu/gpu_milli out of range")
        if self.num_gpu > 1 and self.gpu_milli != MILLI:
            raise ValueError(f"pod {self.name}: a share (gpu_milli < 1000) needs num_gpu == 1")

    @property
    def is_share(self) -> bool:
        return self.num_gpu == 1 and 0 < self.gpu_milli < MILLI

    @property
    def whole_gpus(self) -> int:
        """Whole GPUs needed (0 for a share or a CPU-only pod)."""
        return 0 if self.is_share or self.gpu_milli == 0 else self.num_gpu

    @property
    def gpu_request_milli(self) -> int:
        """What the pod asks for in GPU milli: num_gpu * 1000, or the share."""
        return self.num_gpu * self.gpu_milli

    @property
    def shape(self) -> tuple[int, int, int, int, tuple[str, ...]]:
        """Everything placement looks at (pods of one shape are interchangeable)."""
        return (self.cpu_milli, self.memory_mib, self.num_gpu, self.gpu_milli, self.gpu_spec)


@dataclass(frozen=True)
class DevicePlacement:
    """Where a pod went: node index and the GPU devices it uses (empty for CPU-only)."""

    node: int
    devices: tuple[int, ...] = ()
