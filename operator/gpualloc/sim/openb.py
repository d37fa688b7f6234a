"""The openb trace protocol (Weng et al., ATC'23; see ../shared/data/README.md).

1. The GPU nodes of the node list make the cluster.
2. Pods are drawn with replacement from the pod list (seeded) until one more would take the
   requested GPU milli (num_gpu * 1000, or the share) past `arrival` x capacity; that pod
   is not taken. The draws are then shuffled with the same seeded generator, which then
   renames the nodes: the published simulator prefixes each node name with a number from
   a seeded permutation (`syncClusterResourceList`, `rand.Perm`), and its scheduler gives a
   tie between nodes to the smallest name, so ties go to a seeded random node order.
3. Pods arrive one by one in that order; each is placed once (or, with a batch planner, up
   to N arrivals are planned together) and never moved; nothing departs. A pod that does
   not fit is dropped.
4. Unallocated GPU % = 100 - allocated GPU milli / (GPUs x 1000) x 100, read at each level
   L (90, 95, ..., 130): right after the first arrival that brings the arrived request to
   L% of capacity (or at the end of the trace if the request stops just short of L).
   Batches never span a reading: a batch ends at the arrival that crosses a level.
"""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gpualloc.model.devices import MILLI, DevicePlacement, GpuNode, PodRequest
from gpualloc.solver.devices.device_policies import DevicePolicy
from gpualloc.solver.devices.devicestate import DeviceState

LEVELS = tuple(range(90, 131, 5))


class BatchPlanner(Protocol):
    def plan_batch(
        self, state: DeviceState, pods: Sequence[PodRequest]
    ) -> list[DevicePlacement | None]: ...


class TraceFormatError(ValueError):
    """A node or pod list that does not follow the openb CSV format; names file, line, column."""


def _rows(path: str | Path, required: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The CSV's rows with where each is (`file:line`), once its header has `required`."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TraceFormatError(f"{path}: missing column(s) {', '.join(missing)}")
        for row in reader:
            yield f"{path}:{reader.line_num}", row


def _count(row: dict[str, str], column: str, where: str) -> int:
    """A non-negative whole number from the row."""
    value = (row.get(column) or "").strip()
    if not value.isdigit():
        raise TraceFormatError(f"{where}: {column} must be a whole number >= 0, got {value!r}")
    return int(value)


def read_nodes(path: str | Path) -> list[GpuNode]:
    """GPU nodes of an openb node list (`sn,cpu_milli,memory_mib,gpu,model`), by name."""
    nodes = []
    for where, row in _rows(path, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        gpus = _count(row, "gpu", where)
        if gpus > 0:
            cpu, memory = _count(row, "cpu_milli", where), _count(row, "memory_mib", where)
            nodes.append(GpuNode(row["sn"], row["model"], gpus, cpu, memory))
    return sorted(nodes, key=lambda n: n.name)


def read_pods(path: str | Path) -> list[PodRequest]:
    """An openb pod list; `gpu_spec` (absent in some lists) is `|`-separated models."""
    pods = []
    columns = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
    for where, row in _rows(path, columns):
        spec = tuple(s for s in (row.get("gpu_spec") or "").split("|") if s)
        num = _count(row, "num_gpu", where)
        milli = _count(row, "gpu_milli", where) if num else 0
        cpu, memory = _count(row, "cpu_milli", where), _count(row, "memory_mib", where)
        try:
            pods.append(PodRequest(row["name"], cpu, memory, num, milli, spec))
        except ValueError as err:  # PodRequest's own range checks, with the place added
            raise TraceFormatError(f"{where}: {err}") from err
    return pods


def sample_arrivals(
    pods: Sequence[PodRequest], capacity_milli: int, arrival: float, seed: int
) -> list[PodRequest]:
    """Step 2 of the protocol: seeded draws with replacement, then a seeded shuffle."""
    return _draw(pods, capacity_milli, arrival, random.Random(seed))


def sample_trace(
    pods: Sequence[PodRequest], nodes: Sequence[GpuNode], arrival: float, seed: int
) -> tuple[list[PodRequest], list[GpuNode]]:
    """Step 2 in full: the arrivals (as `sample_arrivals`) and the nodes in the order their
    seeded names sort in, which is the order in which ties between nodes are broken."""
    rng = random.Random(seed)
    capacity = sum(n.gpus for n in nodes) * MILLI
    arrivals = _draw(pods, capacity, arrival, rng)
    prefix = rng.sample(range(len(nodes)), len(nodes))  # node i is renamed f"{prefix[i]:04d}-..."
    return arrivals, [nodes[i] for i in sorted(range(len(nodes)), key=prefix.__getitem__)]


def _draw(
    pods: Sequence[PodRequest], capacity_milli: int, arrival: float, rng: random.Random
) -> list[PodRequest]:
    if not pods:
        return []
    if not any(p.gpu_request_milli for p in pods):
        raise ValueError("the pod list requests no GPUs; the arrival target is never reached")
    target = arrival * capacity_milli
    drawn: list[PodRequest] = []
    requested = 0
    while True:
        pod = rng.choice(pods)
        if requested + pod.gpu_request_milli > target:
            break
        drawn.append(pod)
        requested += pod.gpu_request_milli
    rng.shuffle(drawn)
    return drawn


def crossings(
    arrivals: Sequence[PodRequest], capacity_milli: int, levels: Sequence[int]
) -> dict[int, int]:
    """Level -> index of the arrival after which it is read (the last arrival if the
    request never quite reaches it; levels above the whole request are left out)."""
    out: dict[int, int] = {}
    requested = 0
    pending = sorted(levels)
    for i, pod in enumerate(arrivals):
        requested += pod.gpu_request_milli
        while pending and requested * 100 >= pending[0] * capacity_milli:
            out[pending.pop(0)] = i
    total = requested
    for level in pending:  # short by less than one pod: read at the end
        if arrivals and (level * capacity_milli - total * 100) < MILLI * 8 * 100:
            out[level] = len(arrivals) - 1
    return out


def unallocated_pct(allocated_milli: int, capacity_milli: int) -> float:
    return 100.0 - allocated_milli / capacity_milli * 100.0


@dataclass
class Replay:
    unallocated_gpu_pct: dict[str, float]
    allocated_milli: int
    capacity_milli: int
    pods: int
    failed: list[PodRequest] = field(default_factory=list)
    seconds: float = 0.0
    failed_at: dict[str, list[PodRequest]] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # this process's CPU time: what the run costs on a busy machine


def replay(
    nodes: Sequence[GpuNode],
    arrivals: Sequence[PodRequest],
    policy: DevicePolicy | BatchPlanner,
    batch: int = 1,
    levels: Sequence[int] = LEVELS,
    progress: Callable[[int], None] | None = None,
) -> Replay:
    """Step 3 and 4 of the protocol: place every arrival once, read the levels."""
    started, cpu_started = time.monotonic(), time.process_time()
    state = DeviceState(nodes)
    capacity = state.total_gpu_milli
    reads = crossings(arrivals, capacity, levels)
    read_after: dict[int, list[int]] = {}
    for level, index in reads.items():
        read_after.setdefault(index, []).append(level)
    allocated = 0
    failed: list[PodRequest] = []
    result: dict[str, float] = {}
    failed_at: dict[str, list[PodRequest]] = {}
    start = 0
    while start < len(arrivals):
        end = min(start + max(1, batch), len(arrivals))
        cut = next((i for i in range(start, end) if i in read_after), None)
        if cut is not None:
            end = cut + 1
        chunk = arrivals[start:end]
        if isinstance(policy, BatchPlannerBase):
            where = policy.plan_batch(state, chunk)
            for pod, spot in zip(chunk, where, strict=True):
                if spot is None:
                    failed.append(pod)
                else:
                    state.place(pod, spot)
                    allocated += pod.gpu_request_milli
        else:
            for pod in chunk:
                spot = policy.choose(state, pod)  # type: ignore[union-attr]
                if spot is None:
                    failed.append(pod)
                else:
                    state.place(pod, spot)
                    allocated += pod.gpu_request_milli
        for level in read_after.get(end - 1, []):
            result[str(level)] = round(unallocated_pct(allocated, capacity), 4)
            failed_at[str(level)] = list(failed)
        if progress is not None:
            progress(end - start)
        start = end
    ordered = {str(lv): result[str(lv)] for lv in sorted(levels) if str(lv) in result}
    return Replay(
        ordered,
        allocated,
        capacity,
        len(arrivals),
        failed,
        time.monotonic() - started,
        failed_at,
        time.process_time() - cpu_started,
    )


class BatchPlannerBase:
    """Marker base for planners that place several arrivals jointly."""

    def plan_batch(
        self, state: DeviceState, pods: Sequence[PodRequest]
    ) -> list[DevicePlacement | None]:
        raise NotImplementedError
