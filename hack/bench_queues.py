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
  other VCs borrowed at least that many GPUs beyond theirs (target 0); the part while a
  victim evicted for that VC was still in its grace period, and of it the part in repeated
  reclaims (hack/queue_starvation.py);
- GPU utilisation, mean JCT and queueing, preemptions (from sim/time_metrics.py).
With --explain DIR, DIR/starved-seed<N>.txt splits gpualloc-queues' starved time outside its
grace periods stretch by stretch: waiting for the next round, or a round's reasons, the free
GPUs and what the borrowers held.

    nice -n 10 .venv/bin/python hack/bench_queues.py --hours 24 --load 1.3 --seeds 42,43,44 \\
        --explain bench-results/queues-starved --out bench-results/queues.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from queue_starvation import (
    Reclaims,
    Round,
    explain,
    intervals,
    report,
    starved_hours,
    starved_spans,
)

from gpualloc.controller.state import ClusterState
from gpualloc.sim.time_baselines import FifoBestFit, KueueLike, quotas_of
from gpualloc.sim.time_gpualloc import GpuallocScheduler, policy_object
from gpualloc.sim.time_metrics import jain, run_metrics, water_fill
from gpualloc.sim.time_run import TraceOptions, Window, new_simulation, prepare
from gpualloc.sim.timeline import Action, Scheduler, SimJob, SimNode, Simulation

HOUR = 3600.0
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

    def __init__(
        self, nodes: Sequence[SimNode], policy: Obj, queues: list[Obj], record: bool = False
    ) -> None:
        super().__init__(nodes, policy)
        self.queues = tuple(queues)
        self.reclaims = Reclaims()
        self.record = record
        self.rounds: list[Round] = []

    def state(self, sim: Simulation) -> ClusterState:
        return replace(super().state(sim), queues=self.queues)

    def round(self, sim: Simulation) -> list[Action]:
        free = {n.name: n.free for n in sim.nodes.values()}
        held = {j.key: tuple(j.bound.values()) for j in sim.active.values() if j.bound}
        actions = super().round(sim)
        assert self.last is not None
        plan = self.last.plan
        evicted = {
            e.job: plan.holds[e.job].for_jobs if e.job in plan.holds else () for e in plan.evictions
        }
        for victim, made_room in evicted.items():
            self.reclaims.log.append((sim.now, victim, made_room))
        if self.record:
            self.rounds.append(
                Round(
                    sim.now,
                    free,
                    held,
                    {u.job: u.reason for u in plan.unscheduled},
                    evicted,
                    frozenset(p.job for p in plan.placements if p.job not in held),
                )
            )
        return actions


class RecordedKueue(KueueLike):
    """Kueue-like, noting for which ClusterQueue each reclaim evicts."""

    def __init__(self, quotas: Mapping[str, int]) -> None:
        super().__init__(quotas)
        self.reclaims = Reclaims()

    def _reclaim(
        self, sim: Simulation, usage: dict[str, int], preemptor: str, gpus: int, capacity: int
    ) -> list[Action]:
        actions = super()._reclaim(sim, usage, preemptor, gpus, capacity)
        for victim in sorted({a.job for a in actions}):
            self.reclaims.log.append((sim.now, victim, (f"{preemptor}/",)))
        return actions


def schedulers(
    window: Window, options: TraceOptions, record: bool = False
) -> dict[str, tuple[Scheduler, dict[str, int]]]:
    weights = {f"vc-{vc}": w for vc, w in window.weights.items()}
    nominal = quotas_of(weights, window.capacity)
    policy = policy_object(options.time_limit, debounceSeconds=options.debounce)
    return {
        "gpualloc-queues": (
            QueuedGpualloc(window.nodes, policy, queue_objects(nominal, weights), record),
            nominal,
        ),
        "gpualloc": (GpuallocScheduler(window.nodes, policy), nominal),
        "kueue-like": (RecordedKueue(nominal), nominal),
        "fifo-bestfit": (FifoBestFit(), nominal),
    }


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
            runs, leaves = intervals(job, h_end)
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


def run(
    options: TraceOptions, policies: Sequence[str], explain_to: Path | None = None
) -> dict[str, Any]:
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
    for name, (scheduler, nominal) in schedulers(window, options, explain_to is not None).items():
        if name not in policies:
            continue
        jobs, sim = new_simulation(window, options)
        began = time.monotonic()
        sim.run(scheduler)
        metrics = run_metrics(
            jobs, sim.series, sim.capacity, window.start, window.end, window.weights
        )
        reclaims = getattr(scheduler, "reclaims", Reclaims())
        starved, per_vc, parts = starved_hours(jobs, nominal, window.start, window.end, reclaims)
        out[name] = {
            "hourly_jain": round(hourly_jain(jobs, weights, window.start, window.end), 4),
            "window_jain": metrics["fairness"]["jain"],
            "starved_vc_hours": round(starved, 2),
            "starved_per_vc": per_vc,
            "starved_vc_hours_in_grace": round(parts["own_grace"], 3),
            "starved_vc_hours_in_repeated_reclaim": round(parts["repeated_grace"], 3),
            "starved_vc_hours_in_any_grace": round(parts["any_grace"], 3),
            "reclaim_evictions": len(reclaims.log),
            "utilisation": metrics["utilisation"],
            "jct_mean_hours": metrics["jct_hours"]["mean"],
            "queueing_mean_hours": metrics["queueing_hours"]["mean"],
            "preemptions": metrics["preemptions"],
            "wall_seconds": round(time.monotonic() - began, 1),
            "rounds_by_solver_status": dict(getattr(scheduler, "statuses", {})),
        }
        print(f"  {name}: {out[name]}", file=sys.stderr, flush=True)
        if explain_to is not None and isinstance(scheduler, QueuedGpualloc):
            spans = starved_spans(jobs, nominal, window.start, window.end)
            pieces = explain(jobs, spans, scheduler.rounds, reclaims)
            lines = report(pieces, window.start)
            explain_to.mkdir(parents=True, exist_ok=True)
            path = explain_to / f"starved-seed{options.seed}.txt"
            path.write_text("\n".join(lines) + "\n")
            print("\n".join(lines[:12]), file=sys.stderr, flush=True)
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
    parser.add_argument(
        "--explain",
        type=Path,
        help="directory: per seed, gpualloc-queues' starved time outside its grace periods, "
        "stretch by stretch (hack/queue_starvation.py)",
    )
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
        results.append({"seed": seed, **run(options, policies, args.explain)})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"args": vars(args), "runs": results}, indent=1, default=str)
    )
    print(table(results, policies))


if __name__ == "__main__":
    main()
