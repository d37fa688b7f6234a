"""One time-driven simulation: a window of the Philly trace, a cluster, each policy in turn.

The window: `hours` of arrivals from `start` (or a start drawn by `seed`). The cluster: a node
profile (the local cluster's YAML format), `nodes` 8-GPU nodes, or by default as many 8-GPU
nodes as make the window's offered GPU-hours `load` x its capacity. Every policy replays the
same jobs on the same cluster from empty, with the same event loop (sim/timeline.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from gpualloc.sim.philly import (
    GPUS_PER_NODE,
    TraceJob,
    nodes_for_load,
    offered_gpu_hours,
    read_trace,
    vc_weights,
    window_of,
    window_start,
)
from gpualloc.sim.time_baselines import FifoBestFit, KaiLike, KueueLike, quotas_of
from gpualloc.sim.time_gpualloc import GpuallocScheduler, policy_object
from gpualloc.sim.time_metrics import run_metrics
from gpualloc.sim.time_oracle import ORACLE, OracleSrpt
from gpualloc.sim.timeline import Scheduler, SimJob, SimNode, Simulation, job_of

POLICIES = ("fifo-bestfit", "kueue-like", "kai-like", "gpualloc")
# gpualloc with every job movable (spec.movable, checkpointing as the trace's jobs do):
# planned defragmentation at the policy's defaults; a variant, not in the default runs
DEFRAG = "gpualloc-defrag"


@dataclass(frozen=True)
class TraceOptions:
    trace: str = "../shared/data/philly/philly_jobs.csv"
    load: float = 1.0
    hours: float = 72.0
    start: float | None = None  # unix seconds; None: drawn by seed
    seed: int = 42
    nodes: int | None = None  # 8-GPU nodes; None: sized by load
    profile: str | None = None  # a node profile YAML instead
    estimate_error: float = 0.0  # sigma of the log-normal noise on estimatedGPUHours
    checkpoint_minutes: float = 30.0
    time_limit: float = 2.0  # gpualloc's solver budget per round
    debounce: float = 1.0


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    jobs: tuple[TraceJob, ...]
    unfit: int  # jobs larger than every node together: left out
    nodes: tuple[SimNode, ...]
    weights: dict[str, float]  # VC -> share of the whole trace's GPU-hours
    offered_load: float

    @property
    def capacity(self) -> int:
        return sum(n.gpus for n in self.nodes)


def profile_nodes(path: str) -> list[SimNode]:
    """Nodes of a local-cluster profile (hack/profiles/*.yaml: pools of count, namePrefix,
    gpuProduct, gpusPerNode, gpuMemoryMiB)."""
    with open(path) as f:
        profile = yaml.safe_load(f)
    try:
        return [
            SimNode(
                f"{pool['namePrefix']}{i}",
                int(pool.get("gpusPerNode", GPUS_PER_NODE)),
                str(pool.get("gpuProduct", "unknown")),
                int(pool.get("gpuMemoryMiB", 16384)),
            )
            for pool in profile["pools"]
            for i in range(int(pool["count"]))
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: not a node profile (pools of count, namePrefix, ...): {err}"
        ) from None


def eight_gpu_nodes(count: int) -> list[SimNode]:
    return [SimNode(f"node-{i:04d}", GPUS_PER_NODE) for i in range(count)]


def prepare(options: TraceOptions, trace: Sequence[TraceJob] | None = None) -> Window:
    trace = trace if trace is not None else read_trace(options.trace)
    start = (
        options.start
        if options.start is not None
        else window_start(trace, options.hours, options.seed)
    )
    jobs = window_of(trace, start, options.hours)
    if options.profile:
        nodes = profile_nodes(options.profile)
    else:
        count = options.nodes or nodes_for_load(jobs, start, options.hours, options.load)
        nodes = eight_gpu_nodes(count)
    capacity = sum(n.gpus for n in nodes)
    fit = [j for j in jobs if j.gpus <= capacity]
    offered = offered_gpu_hours(fit, start, options.hours) / (options.hours * capacity)
    return Window(
        start,
        start + options.hours * 3600,
        tuple(fit),
        len(jobs) - len(fit),
        tuple(nodes),
        vc_weights(trace),
        round(offered, 4),
    )


def sim_jobs(window: Window, options: TraceOptions) -> list[SimJob]:
    """The jobs as submitted: an estimate of GPU-hours (log-normal noise of sigma
    `estimate_error` around the truth, drawn by seed), never the duration itself."""
    rng = random.Random(options.seed)
    return [
        job_of(j, j.gpu_hours * math.exp(options.estimate_error * rng.gauss(0.0, 1.0)))
        for j in window.jobs
    ]


def scheduler_of(name: str, window: Window, options: TraceOptions) -> Scheduler:
    queues = {f"vc-{vc}": w for vc, w in window.weights.items()}
    if name in ("gpualloc", DEFRAG):
        policy = policy_object(options.time_limit, debounceSeconds=options.debounce)
        every = options.checkpoint_minutes * 60 if name == DEFRAG else None
        return GpuallocScheduler(window.nodes, policy, movable_checkpoint_seconds=every)
    if name == "fifo-bestfit":
        return FifoBestFit()
    if name == "kueue-like":
        return KueueLike(quotas_of(queues, window.capacity))
    if name == "kai-like":
        return KaiLike({q: w * window.capacity for q, w in queues.items()})
    if name == ORACLE:  # reads true durations: a bound for the verdict, never a policy
        return OracleSrpt()
    raise ValueError(f"unknown policy {name!r}; one of {', '.join(POLICIES)}")


def run_policy(
    window: Window, name: str, options: TraceOptions, progress: bool = False
) -> dict[str, Any]:
    return run_scheduler(window, scheduler_of(name, window, options), options, progress)


def new_simulation(window: Window, options: TraceOptions) -> tuple[list[SimJob], Simulation]:
    """The window's jobs (as a scheduler sees them) on a fresh copy of its cluster."""
    jobs = sim_jobs(window, options)
    nodes = [SimNode(n.name, n.gpus, n.product, n.gpu_memory_mib) for n in window.nodes]
    sim = Simulation(
        nodes,
        jobs,
        checkpoint_seconds=options.checkpoint_minutes * 60,
        debounce=options.debounce,
        start=window.start,
    )
    return jobs, sim


def run_scheduler(
    window: Window, scheduler: Scheduler, options: TraceOptions, progress: bool = False
) -> dict[str, Any]:
    """Replay the window with `scheduler` on a fresh copy of its cluster; the metrics."""
    jobs, sim = new_simulation(window, options)
    stats = sim.run(scheduler, progress)
    out = run_metrics(jobs, sim.series, sim.capacity, window.start, window.end, window.weights)
    simulated_hours = (sim.now - window.start) / 3600
    out["run"] = {
        "rounds": stats.rounds,
        "events": stats.events,
        "wall_seconds": round(stats.wall_seconds, 2),
        "cpu_seconds": round(stats.cpu_seconds, 2),
        "scheduler_seconds": round(stats.round_seconds, 2),
        "max_round_seconds": round(stats.max_round_seconds, 3),
        "simulated_hours": round(simulated_hours, 1),
        "sim_hours_per_wall_second": round(simulated_hours / max(stats.wall_seconds, 1e-9), 2),
        "window_hours_per_wall_second": round(
            (window.end - window.start) / 3600 / max(stats.wall_seconds, 1e-9), 2
        ),
        "unfinished": len(jobs) - out["finished"],
    }
    if isinstance(scheduler, GpuallocScheduler):
        out["run"]["solve_seconds"] = round(scheduler.solve_seconds, 2)
        out["run"]["solver_status"] = dict(scheduler.statuses)
    out["series"] = _thin(sim.series)
    out["jct_seconds"] = sorted(round(j.finished - j.arrival) for j in jobs if j.finished)
    return out


def _thin(series: Sequence[tuple[float, int, int]], limit: int = 2000) -> list[list[float]]:
    """At most `limit` points of the step series, for the plot."""
    step = max(1, len(series) // limit)
    return [[round(t, 1), a, b] for t, a, b in series[::step]]


def window_summary(window: Window, options: TraceOptions) -> dict[str, Any]:
    return {
        "start_unix": window.start,
        "end_unix": window.end,
        "start": _stamp(window.start),
        "end": _stamp(window.end),
        "hours": options.hours,
        "jobs": len(window.jobs),
        "unfit_jobs": window.unfit,
        "gang_jobs_8_plus": sum(1 for j in window.jobs if j.gpus >= 8),
        "nodes": len(window.nodes),
        "gpus": window.capacity,
        "offered_load": window.offered_load,
    }


def simulate_trace(
    options: TraceOptions, policies: Sequence[str] = POLICIES, progress: bool = False
) -> dict[str, Any]:
    started = time.monotonic()
    window = prepare(options)
    results = {name: run_policy(window, name, options, progress) for name in policies}
    return {
        "trace": "philly",
        "options": asdict(options),
        "window": window_summary(window, options),
        "policies": results,
        "wall_seconds": round(time.monotonic() - started, 2),
    }


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")
