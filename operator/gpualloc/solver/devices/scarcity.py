"""Scarcity (pure): free capacity of each GPU model, and whole nodes, held for the pods
that need them.

Pods restricted to some GPU models (`gpu_spec`) keep arriving at their share of the GPU
demand. If pods that could run anywhere fill a small model first, the restricted ones find
no room later (openb `gpuspec20`: under FGD, pods restricted to P100, V100 and G3 fail from
about 60% arrival). So each model holds back the restricted demand expected until the
cluster is full: a restricted class (a set of allowed models) brings its share of the pod
list's GPU milli times the cluster's free GPU milli, split over its models in proportion
to their free milli. A placement that takes reserved capacity (beyond its model's room) is
charged for it as growth of F: a reserved GPU taken counts as a GPU of fragment, which is
what it becomes when the restricted pod that needed it arrives and finds no room. A pod
still takes reserved capacity when that is cheaper than its other options, or the only one
(so nothing is dropped for the reserve).

Whole nodes are held the same way for pods of several whole GPUs that FGD's target
workload leaves out (its F does not see them) and that only some nodes can hold (GPUs,
CPU, memory, model): openb `default` has no multi-GPU shape in its target workload, and
its 8-GPU pods of 120 CPUs fit only the 39 G3 nodes, which other pods had all broken
before 90% arrival on two of ten seeds. Such a class expects its share of the GPU demand
times the cluster's free GPU milli, in nodes; while the nodes that can take one of its
pods now are not more than that, breaking one (leaving it fewer whole GPUs, CPU or memory
than the class needs) is charged the node's worth of the class's GPU milli, in proportion
to how far the hold is short.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gpualloc.model.devices import MILLI, PodRequest
from gpualloc.solver.devices.devicestate import BoolArray, DeviceState, FloatArray, IntArray
from gpualloc.solver.devices.fragmentation import Workload

# milli of F charged per reserved milli taken (tuning seeds 1-6 only; see docs/benchmarks.md)
RHO = 1.0
_ROOMS_LIMIT = 100_000  # states remembered (a few MB), then forgotten


@dataclass(frozen=True)
class ModelDemand:
    """Restricted classes of a pod list: which models each may use, and its share of all
    the GPU milli the pod list asks for."""

    allowed: npt.NDArray[np.bool_]  # [classes, models]
    share: FloatArray  # [classes]
    holds: WholeNodeHolds | None = None
    # room per model (free minus reserved) by free milli per model: a batch's passes and
    # the cost of its plans meet the same states again
    rooms: dict[bytes, FloatArray] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @property
    def restricted(self) -> bool:
        return bool(self.share.size or (self.holds is not None and self.holds.shapes))


Shape = tuple[int, int, int, tuple[str, ...]]  # CPU milli, memory MiB, GPUs, gpu_spec


def _shape(pod: PodRequest) -> Shape:
    return (pod.cpu_milli, pod.memory_mib, pod.num_gpu, pod.gpu_spec)


@dataclass(frozen=True)
class WholeNodeHolds:
    """Classes of pods of several whole GPUs that only some nodes can hold (see the module
    docstring), one row each; a held node must take any pod of its class, so a class asks
    the largest CPU and memory of its pods."""

    gpus: IntArray  # [classes]
    cpu_milli: IntArray  # [classes]
    memory_mib: IntArray  # [classes]
    nodes: BoolArray  # [classes, nodes]: can hold one of its pods when empty
    share: FloatArray  # [classes], of the pod list's GPU milli
    shapes: tuple[frozenset[Shape], ...]  # its pods: not charged for their own hold


def model_demand(
    pods: Iterable[PodRequest], models: tuple[str, ...], holds: WholeNodeHolds | None = None
) -> ModelDemand:
    """The pod list's classes that cannot use every model of the cluster."""
    milli: Counter[tuple[bool, ...]] = Counter()
    total = 0
    for p in pods:
        total += p.gpu_request_milli
        if p.gpu_spec and p.gpu_request_milli:
            access = tuple(m in p.gpu_spec for m in models)
            if not all(access):
                milli[access] += p.gpu_request_milli
    keys = sorted(milli)
    allowed = np.array(keys, dtype=np.bool_).reshape(len(keys), len(models))
    share = np.array([milli[k] / max(total, 1) for k in keys], dtype=np.float64)
    return ModelDemand(allowed, share, holds)


def whole_node_holds(
    pods: Sequence[PodRequest], state: DeviceState, workload: Workload
) -> WholeNodeHolds:
    """The classes of pods of several whole GPUs outside the target `workload`, one per set
    of the cluster's nodes that can hold them when empty."""
    total = sum(p.gpu_request_milli for p in pods)
    empty = DeviceState(state.nodes)
    seen = {
        (int(c), int(g), int(m), tuple(bool(a) for a in workload.access[:, t]))
        for t, (c, g, m) in enumerate(
            zip(workload.cpu_milli, workload.num_gpu, workload.gpu_milli, strict=True)
        )
    }
    classes: dict[tuple[int, bytes], list[PodRequest]] = {}
    for p in pods:
        access = tuple(not p.gpu_spec or m in p.gpu_spec for m in state.models)
        if p.whole_gpus < 2 or (p.cpu_milli, p.num_gpu, p.gpu_milli, access) in seen:
            continue
        can = empty.fits(p)
        if can.any():
            classes.setdefault((p.num_gpu, can.tobytes()), []).append(p)
    keys = sorted(classes)
    members = [classes[k] for k in keys]
    return WholeNodeHolds(
        np.array([gpus for gpus, _ in keys], dtype=np.int64),
        np.array([max(p.cpu_milli for p in m) for m in members], dtype=np.int64),
        np.array([max(p.memory_mib for p in m) for m in members], dtype=np.int64),
        np.array([np.frombuffer(can, dtype=np.bool_) for _, can in keys], dtype=np.bool_).reshape(
            len(keys), len(state.nodes)
        ),
        np.array([sum(p.gpu_request_milli for p in m) / max(total, 1) for m in members]),
        tuple(frozenset(_shape(p) for p in m) for m in members),
    )


def reserved_milli(state: DeviceState, demand: ModelDemand) -> FloatArray:
    """GPU milli per model held for restricted pods (see the module docstring)."""
    free = state.model_free
    reserve = np.zeros_like(free)
    if not demand.restricted:
        return reserve
    usable = demand.allowed * free[None, :]  # [classes, models]
    reach = usable.sum(axis=1)
    expected = demand.share * free.sum()
    weight = np.divide(expected, reach, out=np.zeros_like(expected), where=reach > 0)
    return np.asarray((weight[:, None] * usable).sum(axis=0), dtype=np.float64)


def reserve_penalty(state: DeviceState, demand: ModelDemand, pod: PodRequest) -> FloatArray | None:
    """Per node, what this pod is charged there, as growth of F: the reserved GPU milli it
    would take (beyond its model's room) and the held whole nodes it would break, times
    RHO. None when it is charged nowhere."""
    models = _model_penalty(state, demand, pod)
    holds = _hold_penalty(state, demand, pod)
    if models is None or holds is None:
        return holds if models is None else models
    return models + holds


def _hold_penalty(state: DeviceState, demand: ModelDemand, pod: PodRequest) -> FloatArray | None:
    holds = demand.holds
    if holds is None or not holds.shapes:
        return None
    expected = holds.share * float(state.node_free.sum()) / (holds.gpus * MILLI)  # in nodes
    # nodes with that much GPU free bound those ready for a class: mostly enough to say
    # that the class has more than it expects
    enough = state.node_free[None, :] >= holds.gpus[:, None] * MILLI
    bound = (enough & holds.nodes).sum(axis=1)
    out: FloatArray | None = None
    uses = pod.whole_gpus or (1 if pod.gpu_request_milli else 0)  # a share: one GPU at most
    for c in np.flatnonzero(bound - 1 < expected):
        if _shape(pod) in holds.shapes[c]:
            continue
        rows = np.flatnonzero(holds.nodes[c])
        gpus, cpu_needed, mem_needed = holds.gpus[c], holds.cpu_milli[c], holds.memory_mib[c]
        whole = (state.gpu_left[rows] == MILLI).sum(axis=1)
        cpu, mem = state.cpu_left[rows], state.mem_left[rows]
        ready = (whole >= gpus) & (cpu >= cpu_needed) & (mem >= mem_needed)
        short = min(1.0, float(expected[c]) - (int(ready.sum()) - 1))
        if short <= 0:
            continue
        broken = ready & (
            (whole - uses < gpus)
            | (cpu - pod.cpu_milli < cpu_needed)
            | (mem - pod.memory_mib < mem_needed)
        )
        if broken.any():
            if out is None:
                out = np.zeros(len(state.nodes), dtype=np.float64)
            out[rows[broken]] += RHO * short * float(gpus) * MILLI
    return out


def _model_penalty(state: DeviceState, demand: ModelDemand, pod: PodRequest) -> FloatArray | None:
    # CPU-only pods are never charged: openb's CPU-roomy nodes are T4 nodes, a restricted
    # model, and pushing CPU-only pods off them strands G2 GPUs
    if not demand.share.size or not pod.gpu_request_milli:
        return None
    key = state.model_free.tobytes()
    room = demand.rooms.get(key)
    if room is None:
        if len(demand.rooms) > _ROOMS_LIMIT:
            demand.rooms.clear()
        room = demand.rooms[key] = state.model_free - reserved_milli(state, demand)
    eaten = np.clip(pod.gpu_request_milli - room, 0.0, float(pod.gpu_request_milli))
    if not eaten.any():
        return None
    return np.asarray(RHO * eaten[state.model], dtype=np.float64)
