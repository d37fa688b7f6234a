"""Planner benchmark: solve time, proven gap and allocation per priority level against the
greedy baselines, on seeded synthetic clusters (see `synthetic.py`)."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

from gpualloc.model import Plan, Policy, Snapshot
from gpualloc.sim.synthetic import synthetic_snapshot
from gpualloc.solver import plan
from gpualloc.solver.baselines import BASELINES, plan_greedy

# (nodes, pending jobs, time limit in seconds): the targets
CASES = [(1000, 1000, 2.0), (1000, 2000, 2.0), (10000, 10000, 20.0)]


def gpus_by_level(snapshot: Snapshot, result: Plan) -> dict[int, int]:
    priority = {j.key: j.priority for j in snapshot.jobs}
    levels: dict[int, int] = defaultdict(int)
    for p in result.placements:
        levels[priority[p.job]] += p.gpus
    return {lvl: levels.get(lvl, 0) for lvl in sorted(set(priority.values()), reverse=True)}


def run_case(nodes: int, jobs: int, time_limit: float, seed: int = 1) -> dict[str, Any]:
    snapshot = synthetic_snapshot(nodes, jobs, seed=seed)
    started = time.monotonic()
    result = plan(snapshot, replace(Policy(), time_limit_seconds=time_limit))
    wall = time.monotonic() - started
    ours = gpus_by_level(snapshot, result)
    bounds = {lvl: result.level_bounds.get(lvl) for lvl in ours}
    row: dict[str, Any] = {
        "nodes": nodes,
        "gpus": sum(n.gpus for n in snapshot.nodes),
        "pending_jobs": jobs,
        "time_limit_seconds": time_limit,
        "gpualloc": {
            "status": result.status,
            "seconds": round(wall, 3),
            "allocation_gap": round(result.gap, 6),
            "gpus_by_priority": ours,
            "bound_by_priority": bounds,
        },
    }
    for name in BASELINES:
        started = time.monotonic()
        greedy = plan_greedy(snapshot, name)
        levels = gpus_by_level(snapshot, greedy)
        row[name] = {
            "seconds": round(time.monotonic() - started, 3),
            "gpus_by_priority": levels,
            # shortfall against gpualloc's proven bound, per level (0 = optimal)
            "gap_by_priority": {lvl: _gap(bounds.get(lvl), got) for lvl, got in levels.items()},
        }
    return row


def _gap(bound: float | None, got: int) -> float | None:
    return round((bound - got) / bound, 4) if bound else None


def run(cases: list[tuple[int, int, float]] | None = None) -> list[dict[str, Any]]:
    return [run_case(*case) for case in cases or CASES]
