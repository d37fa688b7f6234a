"""GPU-model scarcity (pure): free capacity of each model held for the pods that need it.

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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gpualloc.model.devices import PodRequest
from gpualloc.solver.devices.devicestate import DeviceState, FloatArray

# milli of F charged per reserved milli taken (tuning seeds 1-6 only; see docs/benchmarks.md)
RHO = 1.0
_ROOMS_LIMIT = 100_000  # states remembered (a few MB), then forgotten


@dataclass(frozen=True)
class ModelDemand:
    """Restricted classes of a pod list: which models each may use, and its share of all
    the GPU milli the pod list asks for."""

    allowed: npt.NDArray[np.bool_]  # [classes, models]
    share: FloatArray  # [classes]
    # room per model (free minus reserved) by free milli per model: a batch's passes and
    # the cost of its plans meet the same states again
    rooms: dict[bytes, FloatArray] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    @property
    def restricted(self) -> bool:
        return bool(self.share.size)


def model_demand(pods: Iterable[PodRequest], models: tuple[str, ...]) -> ModelDemand:
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
    return ModelDemand(allowed, share)


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
    """Per node, the reserved GPU milli this pod would take there (beyond its model's room),
    times RHO: what it is charged, as growth of F. None when it is charged nowhere (CPU-only
    pods never are: openb's CPU-roomy nodes are T4 nodes, a restricted model, and pushing
    CPU-only pods off them strands G2 GPUs)."""
    if not demand.restricted or not pod.gpu_request_milli:
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
