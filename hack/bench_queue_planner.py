"""How long one queued plan takes, and where the time goes: model build and every stage of
the lexicographic solve, on a seeded synthetic snapshot (sim/synthetic.py) whose jobs are
spread over GPUQueues, half of them already running (so reclaim and borrowing are live).

    nice -n 10 .venv/bin/python hack/bench_queue_planner.py --nodes 200 --jobs 200 \\
        --queues 5 --time-limit 20 --out bench-results/queue-planner.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpualloc.model import Policy, Queue, QueueQuota, RunningPod, Snapshot
from gpualloc.sim.synthetic import PRODUCTS, synthetic_snapshot
from gpualloc.solver import plan
from gpualloc.solver.baselines import plan_greedy
from gpualloc.solver.cpsat import AllocationModel
from gpualloc.solver.instance import build_instance
from gpualloc.solver.lexicographic import solve_lexicographic
from gpualloc.solver.queues import QueueTree


def queued_snapshot(nodes: int, jobs: int, queues: int, seed: int, star: bool) -> Snapshot:
    """The synthetic snapshot with its jobs spread round-robin over `queues` queues (weights
    1, 2, 1, 2, ...), whose nominal quotas add up to 80% of each product's GPUs that
    unmanaged pods leave (or of all of them, `star`: one `*` entry); the first half of
    the jobs run where best fit puts them (started in job order), the rest wait."""
    base = synthetic_snapshot(nodes, jobs, seed=seed)
    names = [f"team-{i}" for i in range(queues)]
    spread = [
        replace(j, queue=names[i % queues], preemptible=j.preemptible or i % 3 != 0)
        for i, j in enumerate(base.jobs)
    ]
    capacity: dict[str, int] = defaultdict(int)  # GPUs not held by unmanaged pods
    busy = defaultdict(int, {pod.node: pod.gpus for pod in base.pods})
    for n in base.nodes:
        capacity[n.product] += n.gpus - busy[n.name]
    quota: list[tuple[QueueQuota, ...]]
    if star:
        total = sum(capacity.values())
        quota = [(QueueQuota("*", int(0.8 * total) // queues),) for _ in names]
    else:
        quota = [
            tuple(QueueQuota(p, int(0.8 * capacity[p]) // queues) for p in sorted(PRODUCTS))
            for _ in names
        ]
    qs = tuple(
        Queue(name, (name,), quota=quota[i], weight=1.0 + i % 2) for i, name in enumerate(names)
    )
    first = Snapshot(base.nodes, base.pods, tuple(spread[: jobs // 2]))
    placed = plan_greedy(first, "best-fit", explain=False)
    pods = [
        RunningPod(f"{p.job}-{p.replica}", p.node, p.gpus, job=p.job, replica=p.replica)
        for p in placed.placements
    ]
    started = {j.key: float(i + 1) for i, j in enumerate(spread)}
    pods = [replace(p, started=started[str(p.job)]) for p in pods]
    return Snapshot(base.nodes, (*base.pods, *pods), tuple(spread), qs)


def profile(snapshot: Snapshot, policy: Policy) -> dict[str, Any]:
    """Model build and per-stage solve times (the planner's steps, without decoding)."""
    t0 = time.monotonic()
    tree = QueueTree(snapshot.queues, {n.product for n in snapshot.nodes})
    inst = build_instance(snapshot, policy)
    t1 = time.monotonic()
    model = AllocationModel(inst, policy)
    t2 = time.monotonic()
    objectives = model.objectives()
    t3 = time.monotonic()
    _, stages = solve_lexicographic(
        model.model,
        objectives,
        time_limit=policy.time_limit_seconds,
        relative_gap=policy.relative_gap,
        num_workers=policy.num_workers,
    )
    t4 = time.monotonic()
    proto = model.model.proto
    return {
        "queues": len(tree.nodes),
        "instance_seconds": round(t1 - t0, 3),
        "model_seconds": round(t2 - t1, 3),
        "objectives_seconds": round(t3 - t2, 3),
        "solve_seconds": round(t4 - t3, 3),
        "variables": len(proto.variables),
        "constraints": len(proto.constraints),
        "stages": [
            {
                "names": list(s.names)[:3] + (["..."] if len(s.names) > 3 else []),
                "status": s.status,
                "objective": s.objective,
                "bound": s.bound,
                "seconds": round(s.seconds, 3),
            }
            for s in stages
        ],
    }


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"args": vars(args), "runs": []}
    policy = replace(Policy(), time_limit_seconds=args.time_limit)
    for seed in (int(s) for s in args.seeds.split(",")):
        s = queued_snapshot(args.nodes, args.jobs, args.queues, seed, args.star)
        row: dict[str, Any] = {"seed": seed}
        for name, snapshot in (("queues", s), ("no-queues", replace(s, queues=()))):
            if args.profile and name == "queues":
                row["profile"] = profile(snapshot, policy)
            wall, c = time.monotonic(), cpu()
            p = plan(snapshot, policy)
            row[name] = {
                "status": p.status,
                "gap": round(p.gap, 4),
                "wall_seconds": round(time.monotonic() - wall, 2),
                "cpu_seconds": round(cpu() - c, 2),
                "placed_gpus": sum(x.gpus for x in p.placements),
                "evictions": len(p.evictions),
            }
            print(f"seed {seed} {name}: {row[name]}", file=sys.stderr, flush=True)
        row["load_average"] = round(os.getloadavg()[0], 1)
        out["runs"].append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--queues", type=int, default=5)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument("--star", action="store_true", help="one `*` quota entry per queue")
    parser.add_argument("--profile", action="store_true", help="per-stage times as well")
    parser.add_argument("--out", default="bench-results/queue-planner.json")
    args = parser.parse_args()
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for row in result["runs"]:
        for stage in row.get("profile", {}).get("stages", []):
            name = stage["names"][0][:60]
            print(
                f"  {name:60} {stage['status']:9} {stage['objective']:>20} "
                f"{stage['bound']:>20} {stage['seconds']:6.2f}s"
            )
        print(json.dumps({k: v for k, v in row.items() if k != "profile"}))


if __name__ == "__main__":
    main()
