"""The placement policies `gpualloc simulate --policy` can replay, by name.

`fgd` is Fragmentation Gradient Descent as the paper's experiments ran it (see
`published_fgd`). `gpualloc` knows the same target workload and places each batch of
arrivals jointly (`solver/devices/sharing.py`): FGD's own choice one pod at a time is its warm
start and fallback, and a joint CP-SAT plan replaces it where it places more GPU milli
(or, in a batch with a whole-GPU pod, as much with less fragmentation), so the batch never
places less than FGD's from the same state.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpualloc.model.devices import DevicePlacement, PodRequest
from gpualloc.sim.openb import BatchPlannerBase
from gpualloc.solver.devices.device_policies import FGD, BestFit, DevicePolicy, FirstFit, Spread
from gpualloc.solver.devices.devicestate import DeviceState
from gpualloc.solver.devices.fragmentation import Workload, typical_workload
from gpualloc.solver.devices.scarcity import ModelDemand, model_demand, whole_node_holds
from gpualloc.solver.devices.sharing import BatchOptions, plan_batch

POLICIES = ("gpualloc", "fgd", "best-fit", "first-fit", "spread")


class GpuallocBatch(BatchPlannerBase):
    """Joint placement of each batch (`solver/devices/sharing.py`), with the capacity of
    scarce GPU models held for the pods restricted to them (`solver/devices/scarcity.py`)."""

    def __init__(self, workload: Workload, options: BatchOptions, demand: ModelDemand) -> None:
        self.workload = workload
        self.options = options
        self.demand = demand

    def plan_batch(
        self, state: DeviceState, pods: Sequence[PodRequest]
    ) -> list[DevicePlacement | None]:
        return plan_batch(state, pods, self.workload, self.options, self.demand)


def target_workload(pod_list: Sequence[PodRequest], state: DeviceState) -> Workload:
    """FGD's target workload as in the paper's experiments: the shapes covering 95% of
    the pods, CPU-only pods included."""
    return typical_workload(pod_list, state.models, cpu_pods=True)


def published_fgd(pod_list: Sequence[PodRequest], state: DeviceState) -> FGD:
    """FGD as the paper's experiments ran it: `target_workload`, the simulator's integer
    node scores, ties to the first node by name."""
    return FGD(target_workload(pod_list, state), integer_score=True)


def make_policy(
    name: str,
    pod_list: Sequence[PodRequest],
    state: DeviceState,
    options: BatchOptions | None = None,
) -> DevicePolicy | BatchPlannerBase:
    """The expected workload (for FGD and gpualloc) is the pod list's shape distribution."""
    if name == "gpualloc":
        workload = target_workload(pod_list, state)
        demand = model_demand(pod_list, state.models, whole_node_holds(pod_list, state, workload))
        return GpuallocBatch(workload, options or BatchOptions(), demand)
    if name == "fgd":
        return published_fgd(pod_list, state)
    if name == "best-fit":
        return BestFit()
    if name == "first-fit":
        return FirstFit()
    if name == "spread":
        return Spread()
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
