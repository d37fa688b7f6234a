"""Free capacity of a cluster at GPU-device level (pure, numpy arrays).

`gpu_left[n, g]` is the free milli of device g on node n (1000 = a whole free GPU); slots
beyond a node's GPU count hold -1 so that no request ever fits them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gpualloc.model.devices import MILLI, DevicePlacement, GpuNode, PodRequest

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ABSENT = -1
# stamps of node states, unique in the process: equal stamps mean the same node state
_STAMPS = itertools.count(1)


class DeviceState:
    """Mutable free capacity; `place` commits a placement, `copy` forks a what-if."""

    def __init__(self, nodes: Sequence[GpuNode]) -> None:
        self.nodes = tuple(nodes)
        width = max((n.gpus for n in self.nodes), default=0) or 1
        self.models: tuple[str, ...] = tuple(sorted({n.model for n in self.nodes}))
        index = {m: i for i, m in enumerate(self.models)}
        self.model = np.array([index[n.model] for n in self.nodes], dtype=np.int64)
        self.gpu_left = np.full((len(self.nodes), width), ABSENT, dtype=np.int64)
        for i, n in enumerate(self.nodes):
            self.gpu_left[i, : n.gpus] = MILLI
        self.cpu_left = np.array([n.cpu_milli for n in self.nodes], dtype=np.int64)
        self.mem_left = np.array([n.memory_mib for n in self.nodes], dtype=np.int64)
        self.gpus = np.array([n.gpus for n in self.nodes], dtype=np.int64)
        self.cpu_total = self.cpu_left.copy()
        # free GPU milli per model, kept up to date by `place` (read once per pod planned)
        capacity = (self.gpus * MILLI).astype(np.float64)
        self.model_free: FloatArray = np.asarray(
            np.bincount(self.model, weights=capacity, minlength=len(self.models)), np.float64
        )
        self.node_free: IntArray = self.gpus * MILLI  # free GPU milli per node, kept by `place`
        # per node, the stamp of its current state: a new one on every change, shared by
        # copies until they change it (what caches of per-node results check)
        self.stamp = np.full(len(self.nodes), next(_STAMPS), dtype=np.int64)

    def copy(self) -> DeviceState:
        other = DeviceState.__new__(DeviceState)
        other.nodes, other.models, other.model = self.nodes, self.models, self.model
        other.gpus, other.cpu_total = self.gpus, self.cpu_total
        other.gpu_left = self.gpu_left.copy()
        other.cpu_left = self.cpu_left.copy()
        other.mem_left = self.mem_left.copy()
        other.model_free = self.model_free.copy()
        other.node_free = self.node_free.copy()
        other.stamp = self.stamp.copy()
        return other

    @property
    def total_gpu_milli(self) -> int:
        return int(self.gpus.sum()) * MILLI

    def model_mask(self, spec: tuple[str, ...]) -> BoolArray:
        """Nodes whose GPU model the spec allows (empty spec = any)."""
        if not spec:
            return np.ones(len(self.nodes), dtype=np.bool_)
        allowed = np.array([m in spec for m in self.models], dtype=np.bool_)
        return allowed[self.model]

    def fits(self, pod: PodRequest, rows: IntArray | None = None) -> BoolArray:
        """Which nodes (or `rows` of them) can take the pod now: model, CPU, memory, GPUs."""
        sel = slice(None) if rows is None else rows
        ok = (self.cpu_left[sel] >= pod.cpu_milli) & (self.mem_left[sel] >= pod.memory_mib)
        if pod.gpu_request_milli == 0:
            return np.asarray(ok, dtype=np.bool_)
        if pod.gpu_spec:
            ok &= self.model_mask(pod.gpu_spec)[sel]
        left = self.gpu_left[sel]
        if pod.is_share:
            ok &= (left >= pod.gpu_milli).any(axis=1)
        else:
            ok &= (left == MILLI).sum(axis=1) >= pod.num_gpu
        return np.asarray(ok, dtype=np.bool_)

    def whole_devices(self, node: int, count: int) -> tuple[int, ...]:
        """The first `count` fully free devices of a node."""
        free = np.flatnonzero(self.gpu_left[node] == MILLI)
        return tuple(int(g) for g in free[:count])

    def place(self, pod: PodRequest, where: DevicePlacement) -> None:
        n = where.node
        if self.cpu_left[n] < pod.cpu_milli or self.mem_left[n] < pod.memory_mib:
            raise ValueError(f"pod {pod.name} does not fit node {self.nodes[n].name}")
        per_device = pod.gpu_milli if pod.num_gpu else 0
        if len(where.devices) != (pod.num_gpu if per_device else 0):
            raise ValueError(f"pod {pod.name}: wrong number of devices {where.devices}")
        for g in where.devices:
            if self.gpu_left[n, g] < per_device:
                raise ValueError(f"pod {pod.name} does not fit device {g} of node {n}")
        for g in where.devices:
            self.gpu_left[n, g] -= per_device
        self.model_free[self.model[n]] -= per_device * len(where.devices)
        self.node_free[n] -= per_device * len(where.devices)
        self.cpu_left[n] -= pod.cpu_milli
        self.mem_left[n] -= pod.memory_mib
        self.stamp[n] = next(_STAMPS)

    def free_gpu_milli(self, rows: IntArray | slice | None = None) -> IntArray:
        return self.node_free.copy() if rows is None else self.node_free[rows]
