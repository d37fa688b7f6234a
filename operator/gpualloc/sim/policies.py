"""The placement policies `gpualloc simulate --policy` can replay, by name."""

from __future__ import annotations

from collections.abc import Sequence

from gpualloc.model.devices import DevicePlacement, PodRequest
from gpualloc.sim.openb import BatchPlannerBase
from gpualloc.solver.device_policies import FGD, BestFit, DevicePolicy, FirstFit, Spread
from gpualloc.solver.devicestate import DeviceState
from gpualloc.solver.fragmentation import Workload, typical_workload
from gpualloc.solver.sharing import BatchOptions, plan_batch

POLICIES = ("gpualloc", "fgd", "best-fit", "first-fit", "spread")


class GpuallocBatch(BatchPlannerBase):
    """Joint CP-SAT placement of each batch (`solver/sharing.py`)."""

    def __init__(self, workload: Workload, options: BatchOptions) -> None:
        self.workload = workload
        self.options = options

    def plan_batch(
        self, state: DeviceState, pods: Sequence[PodRequest]
    ) -> list[DevicePlacement | None]:
        return plan_batch(state, pods, self.workload, self.options)


def make_policy(
    name: str,
    pod_list: Sequence[PodRequest],
    models: tuple[str, ...],
    options: BatchOptions | None = None,
) -> DevicePolicy | BatchPlannerBase:
    """The expected workload (for FGD and gpualloc) is the pod list's shape distribution."""
    if name == "gpualloc":
        return GpuallocBatch(typical_workload(pod_list, models), options or BatchOptions())
    if name == "fgd":
        return FGD(typical_workload(pod_list, models))
    if name == "best-fit":
        return BestFit()
    if name == "first-fit":
        return FirstFit()
    if name == "spread":
        return Spread()
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
