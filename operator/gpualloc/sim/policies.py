"""The placement policies `gpualloc simulate --policy` can replay, by name."""

from __future__ import annotations

from collections.abc import Sequence

from gpualloc.model.devices import DevicePlacement, PodRequest
from gpualloc.sim.openb import BatchPlannerBase
from gpualloc.solver.device_policies import FGD, BestFit, DevicePolicy, FirstFit, Spread
from gpualloc.solver.devicestate import DeviceState
from gpualloc.solver.fragmentation import Workload, typical_workload
from gpualloc.solver.mix import MixPlan, plan_mix
from gpualloc.solver.sharing import BatchOptions, plan_batch

GPU_WEIGHT = 1.0
POLICIES = ("gpualloc", "fgd", "best-fit", "first-fit", "spread")


class GpuallocBatch(BatchPlannerBase):
    """Joint CP-SAT placement of each batch (`solver/sharing.py`)."""

    def __init__(self, workload: Workload, options: BatchOptions, mix: MixPlan) -> None:
        self.workload = workload
        self.options = options
        self.mix = mix

    def plan_batch(
        self, state: DeviceState, pods: Sequence[PodRequest]
    ) -> list[DevicePlacement | None]:
        where = plan_batch(state, pods, self.workload, self.options, self.mix)
        for pod, spot in zip(pods, where, strict=True):
            self.mix.observe(pod, spot.node if spot is not None else None)
        return where


def make_policy(
    name: str,
    pod_list: Sequence[PodRequest],
    state: DeviceState,
    options: BatchOptions | None = None,
    load: float = 1.3,
) -> DevicePolicy | BatchPlannerBase:
    """The expected workload (for FGD and gpualloc) is the pod list's shape distribution;
    gpualloc also plans the mix for `load` x capacity of it (the trace's arrival)."""
    if name == "gpualloc":
        # the whole shape distribution, multi-GPU pods weighted by their GPUs (FGD keeps
        # the shapes covering 95% of pods, unweighted); chosen on seeds 43-44
        workload = typical_workload(pod_list, state.models, popularity=1.0, gpu_weight=GPU_WEIGHT)
        mix = plan_mix(state, pod_list, load)
        return GpuallocBatch(workload, options or BatchOptions(), mix)
    if name == "fgd":
        return FGD(typical_workload(pod_list, state.models))
    if name == "best-fit":
        return BestFit()
    if name == "first-fit":
        return FirstFit()
    if name == "spread":
        return Spread()
    raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
