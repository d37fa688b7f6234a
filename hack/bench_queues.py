"""GPU queues on the Philly trace, in the time-driven simulator (operator/gpualloc/sim/).

Each Philly virtual cluster (VC) is a team: a GPUQueue `vc-<id>` listing its namespace, with a
nominal quota of `*` GPUs in proportion to the VC's share of the whole trace's GPU-hours
(the quotas add up to the cluster) and that share as its weight. Policies, on the same jobs
and cluster, under the same event loop:
- gpualloc-queues: the controller's decide step with these GPUQueues (guarantees, weighted
  max-min borrowing, reclaim: README "GPU queues");
- gpualloc: the same decide step without queues (priorities alone; all jobs priority 0);
- kueue-like: sim/time_baselines.py's Kueue (a ClusterQueue per VC with the same nominal,
  one cohort, FIFO admission, borrowing, reclaim, best-fit placement);
- fifo-bestfit: no queues, gangs in FIFO order, best fit.
Measured, over the arrival window:
- share vs entitlement over time: per hour, each active VC's GPU-hours against its weighted
  max-min fair share of that hour's GPU-hours (capped by what it asked); Jain's index over the
  VCs, averaged over the hours (1 = every VC got its fair share every hour);
- starved VC-hours: time a VC had a job waiting that fits in its unused nominal quota while
  other VCs borrowed at least that many GPUs beyond theirs (target 0);
- GPU utilisation, mean JCT and queueing, preemptions (from sim/time_metrics.py).

    .venv/bin/python hack/bench_queues.py --hours 48 --load 1.3 --seeds 42,43,44 \\
        --out bench-results/queues.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpualloc.controller.state import ClusterState
from gpualloc.sim.time_baselines import FifoBestFit, KueueLike, quotas_of
from gpualloc.sim.time_gpualloc import GpuallocScheduler, policy_object
from gpualloc.sim.time_metrics import jain, run_metrics, water_fill
from gpualloc.sim.time_run import TraceOptions, Window, prepare, sim_jobs
from gpualloc.sim.timeline import Scheduler, SimJob, SimNode, Simulation

HOUR = 3600.0
GRACE = 30.0  # seconds a preempted pod keeps its GPUs (the simulator's default)
POLICIES = ("gpualloc-queues", "gpualloc", "kueue-like", "fifo-bestfit")
Obj = dict[str, Any]


def queue_objects(nominal: Mapping[str, int], weights: Mapping[str, float]) -> list[Obj]:
    top = max(weights.values())
    return [
        {
            "apiVersion": "gpualloc.io/v1alpha1",
            "kind": "GPUQueue",
            "metadata": {"name": name, "generation": 1},
            "spec": {
                "namespaces": [name],
                "quota": [{"product": "*", "nominal": gpus}],
                "weight": max(0.01, round(1000 * weights[name] / top, 2)),
            },
        }
        for name, gpus in sorted(nominal.items())
    ]


class QueuedGpualloc(GpuallocScheduler):
    """The controller's decide step with the VCs' GPUQueues in the cluster state."""

    name = "gpualloc-queues"

    def __init__(self, nodes: Sequence[SimNode], policy: Obj, queues: list[Obj]) -> None:
        super().__init__(nodes, policy)
        self.queues = tuple(queues)

    def state(self, sim: Simulation) -> ClusterState:
        return replace(super().state(sim), queues=self.queues)


def schedulers(window: Window, options: TraceOptions) -> dict[str, tuple[Scheduler, Obj]]:
    weights = {f"vc-{vc}": w for vc, w in window.weights.items()}
    nominal = quotas_of(weights, window.capacity)
    policy = policy_object(options.time_limit, debounceSeconds=options.debounce)
    return {
        "gpualloc-queues": (
            QueuedGpualloc(window.nodes, policy, queue_objects(nominal, weights)),
            nominal,
        ),
        "gpualloc": (GpuallocScheduler(window.nodes, policy), nominal),
        "kueue-like": (KueueLike(nominal), nominal),
        "fifo-bestfit": (FifoBestFit(), nominal),
    }


def _intervals(job: SimJob, end: float) -> tuple[list[tuple[float, float]], float]:
    """(runs, leaving time) of a job, cut at `end`."""
    leaves = min(job.finished if job.finished is not None else end, end)
    return [(a, min(b, end)) for a, b in job.runs if a < end], leaves


def hourly_jain(
    jobs: Sequence[SimJob], weights: Mapping[str, float], start: float, end: float
) -> float:
    """Mean over the window's hours of Jain's index of got / fair share among active VCs."""
    values = []
    t = start
    while t < end:
        h_end = min(t + HOUR, end)
        got: dict[str, float] = defaultdict(float)
        asked: dict[str, float] = defaultdict(float)
        for job in jobs:
            runs, leaves = _intervals(job, h_end)
            got[job.namespace] += job.gpus * sum(
                max(0.0, min(b, h_end) - max(a, t)) for a, b in runs
            )
            present = max(0.0, min(leaves, h_end) - max(job.arrival, t))
            asked[job.namespace] += job.gpus * present
        active = [vc for vc in asked if asked[vc] > 0]
        if len(active) >= 2:
            share = {vc: weights.get(vc, 0.0) or 1e-6 for vc in active}
            fair = water_fill(sum(got.values()), share, asked)
            values.append(jain([got[vc] / fair[vc] if fair[vc] > 0 else 1.0 for vc in active]))
        t = h_end
    return statistics.fmean(values) if values else 1.0


def _overlap(a: float, b: float, windows: Sequence[tuple[float, float]]) -> float:
    """Seconds of [a, b] inside the union of the sorted, disjoint windows."""
    return sum(max(0.0, min(b, hi) - max(a, lo)) for lo, hi in windows if lo < b and hi > a)


def _in_flight(jobs: Sequence[SimJob], grace: float) -> list[tuple[float, float]]:
    """When some preempted pod was still within its grace period (sorted, merged)."""
    cuts = sorted(b for job in jobs for _, b in job.runs if b != job.finished)
    merged: list[tuple[float, float]] = []
    for at in cuts:
        if merged and at <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], at + grace))
        else:
            merged.append((at, at + grace))
    return merged


def starved_hours(
    jobs: Sequence[SimJob],
    nominal: Mapping[str, int],
    start: float,
    end: float,
    grace: float = GRACE,
) -> tuple[float, dict[str, float], float]:
    """VC-hours a VC had a job waiting that fits its unused nominal while the others borrowed
    at least that job's GPUs beyond their nominal; and how much of that fell while some
    preempted pod was still within its grace period (a reclaim under way: a victim is no
    longer counted as running, its GPUs are not free yet)."""
    flight = _in_flight(jobs, grace)
    during = 0.0
    events: list[tuple[float, int, int, str]] = []  # (time, order within the job, job, state)
    for index, job in enumerate(jobs):
        if job.arrival >= end:
            continue
        runs, leaves = _intervals(job, end)
        changes = [(job.arrival, "wait")]
        for a, b in runs:
            changes += [(a, "run"), (b, "wait")]
        changes.append((leaves, "gone"))
        events += [(at, k, index, what) for k, (at, what) in enumerate(changes)]
    events.sort()
    used: Counter[str] = Counter()
    waiting: dict[str, Counter[int]] = defaultdict(Counter)
    now: dict[int, str] = {}
    starved: dict[str, float] = defaultdict(float)
    last = start
    for at, _, index, what in events:
        span = max(0.0, min(at, end) - max(last, start))
        if span > 0:
            borrowed = {v: max(0, used[v] - nominal.get(v, 0)) for v in used}
            others = sum(borrowed.values())
            for v, sizes in waiting.items():
                small = min((g for g, n in sizes.items() if n > 0), default=None)
                room = nominal.get(v, 0) - used[v]
                if small is not None and small <= room and others - borrowed.get(v, 0) >= small:
                    starved[v] += span
                    during += _overlap(max(last, start), min(at, end), flight)
        last = max(last, at)
        job = jobs[index]
        before = now.get(index)
        if before == "wait":
            waiting[job.namespace][job.gpus] -= 1
        elif before == "run":
            used[job.namespace] -= job.gpus
        if what == "wait":
            waiting[job.namespace][job.gpus] += 1
        elif what == "run":
            used[job.namespace] += job.gpus
        now[index] = what
    total = sum(starved.values()) / HOUR
    per_vc = {v: round(s / HOUR, 2) for v, s in sorted(starved.items()) if s > 0}
    return total, per_vc, during / HOUR


def run(options: TraceOptions, policies: Sequence[str]) -> dict[str, Any]:
    window = prepare(options)
    weights = {f"vc-{vc}": w for vc, w in window.weights.items()}
    out: dict[str, Any] = {
        "window": {
            "start": window.start,
            "hours": options.hours,
            "jobs": len(window.jobs),
            "gpus": window.capacity,
            "offered_load": window.offered_load,
        }
    }
    for name, (scheduler, nominal) in schedulers(window, options).items():
        if name not in policies:
            continue
        jobs = sim_jobs(window, options)
        nodes = [SimNode(n.name, n.gpus, n.product, n.gpu_memory_mib) for n in window.nodes]
        sim = Simulation(
            nodes,
            jobs,
            checkpoint_seconds=options.checkpoint_minutes * 60,
            debounce=options.debounce,
            start=window.start,
        )
        began = time.monotonic()
        sim.run(scheduler)
        metrics = run_metrics(
            jobs, sim.series, sim.capacity, window.start, window.end, window.weights
        )
        starved, per_vc, in_flight = starved_hours(jobs, nominal, window.start, window.end)
        out[name] = {
            "hourly_jain": round(hourly_jain(jobs, weights, window.start, window.end), 4),
            "window_jain": metrics["fairness"]["jain"],
            "starved_vc_hours": round(starved, 2),
            "starved_per_vc": per_vc,
            "starved_vc_hours_in_grace": round(in_flight, 2),
            "utilisation": metrics["utilisation"],
            "jct_mean_hours": metrics["jct_hours"]["mean"],
            "queueing_mean_hours": metrics["queueing_hours"]["mean"],
            "preemptions": metrics["preemptions"],
            "wall_seconds": round(time.monotonic() - began, 1),
        }
        print(f"  {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


def table(results: Sequence[dict[str, Any]], policies: Sequence[str]) -> str:
    rows = [
        "| policy | hourly Jain (share vs entitled) | starved VC-hours (in a victim's grace "
        "period) | utilisation | mean JCT h "
        "| mean queueing h | preemptions |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in policies:
        runs = [r[name] for r in results if name in r]

        def mean(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.fmean(float(r[key]) for r in runs)

        rows.append(
            f"| {name} | {mean('hourly_jain'):.3f} | {mean('starved_vc_hours'):.2f} "
            f"({mean('starved_vc_hours_in_grace'):.2f}) | "
            f"{mean('utilisation'):.3f} | {mean('jct_mean_hours'):.2f} | "
            f"{mean('queueing_mean_hours'):.2f} | {mean('preemptions'):.1f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", default=TraceOptions.trace)
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--load", type=float, default=1.3)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--out", default="bench-results/queues.json")
    args = parser.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        options = TraceOptions(
            trace=args.trace,
            hours=args.hours,
            load=args.load,
            seed=seed,
            time_limit=args.time_limit,
        )
        print(f"seed {seed}:", file=sys.stderr, flush=True)
        results.append({"seed": seed, **run(options, policies)})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "runs": results}, indent=1))
    print(table(results, policies))


if __name__ == "__main__":
    main()
