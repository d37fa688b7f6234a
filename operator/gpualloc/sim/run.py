"""One openb replay run: the function behind `gpualloc simulate` and `make bench-sim`."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from gpualloc.sim.openb import (
    LEVELS,
    TraceFormatError,
    read_nodes,
    read_pods,
    replay,
    sample_trace,
)
from gpualloc.sim.policies import make_policy
from gpualloc.solver.devices.devicestate import DeviceState
from gpualloc.solver.devices.sharing import BatchOptions


def simulate(
    nodes_path: str,
    pods_path: str,
    arrival: float,
    seed: int,
    policy: str,
    batch: int,
    time_limit: float = BatchOptions.time_limit_seconds,
    progress: bool = True,
) -> dict[str, Any]:
    """One run of the protocol; the JSON contract of DESIGN.md section 6 plus details.

    Raises TraceFormatError for a malformed or empty node or pod list.
    """
    nodes = read_nodes(nodes_path)
    pod_list = read_pods(pods_path)
    if not nodes:
        raise TraceFormatError(f"{nodes_path}: no GPU nodes")
    if not pod_list:
        raise TraceFormatError(f"{pods_path}: no pods")
    # nodes in the order of their seeded names: how the published simulator breaks ties
    arrivals, nodes = sample_trace(pod_list, nodes, arrival, seed)
    state = DeviceState(nodes)
    placer = make_policy(policy, pod_list, state, BatchOptions(time_limit_seconds=time_limit))
    levels = [lv for lv in LEVELS if lv <= round(arrival * 100)]
    # only gpualloc plans arrivals jointly; the per-pod policies see one at a time
    batch = batch if policy == "gpualloc" else 1
    with tqdm(
        total=len(arrivals), desc=f"{policy} seed {seed}", unit="pod", disable=not progress
    ) as bar:

        def advance(count: int) -> None:
            bar.update(count)

        result = replay(nodes, arrivals, placer, batch=batch, levels=levels, progress=advance)
    failed_gpu = [p for p in result.failed if p.gpu_request_milli]
    return {
        "policy": policy,
        "seed": seed,
        "unallocated_gpu_pct": result.unallocated_gpu_pct,
        "seconds": round(result.seconds, 2),
        "cpu_seconds": round(result.cpu_seconds, 2),
        "batch": batch,
        "arrival": arrival,
        "pods": result.pods,
        "nodes": len(nodes),
        "gpus": result.capacity_milli // 1000,
        "failed_pods": len(result.failed),
        "failed_gpu_pods": len(failed_gpu),
        "failed_cpu_only_pods": len(result.failed) - len(failed_gpu),
    }
