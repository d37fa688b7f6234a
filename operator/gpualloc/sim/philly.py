"""Gang benchmark on the Microsoft Philly trace (Jeon et al., ATC'19).

Protocol (ours; the trace has GPUs per job but no placement constraints):
- cluster: `nodes` identical nodes of 8 GPUs (CPU and memory never bind);
- a job of g GPUs is a gang of identical workers, all-or-nothing: one worker of g GPUs
  when g <= 8, else g / w workers of w GPUs, w the largest divisor of g up to 8 (16 -> 2x8,
  12 -> 2x6); workers of one gang may sit on different nodes;
- jobs: all of them, or (`min_gpus=2`, the gang-heavy variant) the multi-GPU ones only;
- windows: jobs in timestamp order, starting at `windows` evenly spaced offsets of the
  trace, each taken until the GPUs asked reach `arrival` x capacity; within a window jobs
  arrive in order, are placed once, never moved, and nothing departs;
- gpualloc: the operator's planner (`solver.plan`, gang-aware), `batch` arrivals per plan,
  earlier placements as running pods; best-fit and spread: kube-scheduler-like, one pod
  at a time, gang-unaware, so a gang can end up half placed.
Metrics per window: allocated GPU ratio (GPUs of fully placed gangs / capacity), stranded
GPUs (held by half-placed gangs: they cannot start), and held GPU ratio.
"""

from __future__ import annotations

import csv
import math
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from gpualloc.model import Job, JobKind, Node, Policy, RunningPod, Snapshot
from gpualloc.solver import plan

GPUS_PER_NODE = 8


@dataclass(frozen=True)
class Gang:
    key: str
    workers: int
    gpus_per_worker: int

    @property
    def gpus(self) -> int:
        return self.workers * self.gpus_per_worker


def gang_of(key: str, gpus: int) -> Gang:
    if gpus <= GPUS_PER_NODE:
        return Gang(key, 1, gpus)
    per = max(d for d in range(1, GPUS_PER_NODE + 1) if gpus % d == 0)
    return Gang(key, gpus // per, per)


def read_jobs(path: str, min_gpus: int = 1) -> list[tuple[str, int]]:
    """(timestamp, GPUs) of the jobs asking at least `min_gpus`, in timestamp order."""
    with open(path, newline="") as f:
        rows = [(r["timestamp"], int(float(r["num_gpus"]))) for r in csv.DictReader(f)]
    return sorted((r for r in rows if r[1] >= max(1, min_gpus)), key=lambda r: r[0])


def windows_of(
    jobs: Sequence[tuple[str, int]], capacity: int, arrival: float, count: int
) -> list[list[Gang]]:
    out = []
    for w in range(count):
        start = w * len(jobs) // count
        gangs: list[Gang] = []
        asked = 0
        for i in range(start, len(jobs)):
            gpus = jobs[i][1]
            if asked + gpus > arrival * capacity:
                break
            gangs.append(gang_of(f"philly/job-{i:06d}", gpus))
            asked += gpus
        out.append(gangs)
    return out


def cluster_of(count: int) -> list[Node]:
    """`count` identical 8-GPU nodes."""
    return [
        Node(f"node-{i:03d}", "GPU", GPUS_PER_NODE, 81920, 1_000_000, 1 << 24) for i in range(count)
    ]


def place_gpualloc(nodes: list[Node], gangs: Sequence[Gang], batch: int) -> dict[str, list[int]]:
    """Gang key -> GPUs per placed worker (all or none), via the operator's planner."""
    policy = replace(Policy(), time_limit_seconds=2.0, preemption=False, num_workers=1)
    running: list[RunningPod] = []
    placed: dict[str, list[int]] = {}
    for start in range(0, len(gangs), batch):
        chunk = gangs[start : start + batch]
        jobs = tuple(
            Job(g.key, JobKind.TRAINING, 0, g.workers, g.workers, g.gpus_per_worker,
                created=float(start + k))
            for k, g in enumerate(chunk)
        )  # fmt: skip
        result = plan(Snapshot(tuple(nodes), tuple(running), jobs), policy)
        for p in result.placements:
            running.append(RunningPod(f"{p.job}-{p.replica}", p.node, p.gpus, job=p.job))
            placed.setdefault(p.job, []).append(p.gpus)
    return placed


def place_per_pod(nodes: list[Node], gangs: Sequence[Gang], rule: str) -> dict[str, list[int]]:
    """Each worker placed on its own, best-fit (least free GPUs) or spread (most)."""
    free = [n.gpus for n in nodes]
    placed: dict[str, list[int]] = {}
    for g in gangs:
        for _ in range(g.workers):
            fits = [i for i, f in enumerate(free) if f >= g.gpus_per_worker]
            if not fits:
                continue
            pick = min if rule == "best-fit" else max
            i = pick(fits, key=lambda i: (free[i], i) if rule == "best-fit" else (free[i], -i))
            free[i] -= g.gpus_per_worker
            placed.setdefault(g.key, []).append(g.gpus_per_worker)
    return placed


def score(gangs: Sequence[Gang], placed: dict[str, list[int]], capacity: int) -> dict[str, Any]:
    whole = sum(g.gpus for g in gangs if len(placed.get(g.key, [])) == g.workers)
    held = sum(sum(v) for v in placed.values())
    half = [g for g in gangs if 0 < len(placed.get(g.key, [])) < g.workers]
    return {
        "allocated_gpu_ratio": round(whole / capacity, 4),
        "held_gpu_ratio": round(held / capacity, 4),
        "stranded_gpus": held - whole,
        "half_placed_gangs": len(half),
        "jobs": len(gangs),
        "gang_jobs": sum(1 for g in gangs if g.workers > 1),
    }


def run_philly(
    path: str,
    nodes: int = 32,
    arrival: float = 1.3,
    windows: int = 10,
    batch: int = 8,
    min_gpus: int = 1,
) -> dict[str, Any]:
    capacity = nodes * GPUS_PER_NODE
    cluster = cluster_of(nodes)
    per_window = []
    for gangs in windows_of(read_jobs(path, min_gpus), capacity, arrival, windows):
        started = time.monotonic()
        row = {"gpualloc": score(gangs, place_gpualloc(cluster, gangs, batch), capacity)}
        row["gpualloc"]["seconds"] = round(time.monotonic() - started, 2)
        for rule in ("best-fit", "spread"):
            row[rule] = score(gangs, place_per_pod(cluster, gangs, rule), capacity)
        per_window.append(row)
    summary = {
        policy: {
            "allocated_gpu_ratio": round(
                statistics.mean(w[policy]["allocated_gpu_ratio"] for w in per_window), 4
            ),
            "stranded_gpus": sum(w[policy]["stranded_gpus"] for w in per_window),
            "half_placed_gangs": sum(w[policy]["half_placed_gangs"] for w in per_window),
        }
        for policy in ("gpualloc", "best-fit", "spread")
    }
    return {
        "nodes": nodes,
        "gpus_per_node": GPUS_PER_NODE,
        "arrival": arrival,
        "windows": windows,
        "batch": batch,
        "min_gpus": min_gpus,
        "summary": summary,
        "per_window": per_window,
    }


# -- the time-driven simulator's view of the trace (sim/timeline.py) ----------------------
@dataclass(frozen=True)
class TraceJob:
    """One Philly job as the time-driven simulator replays it."""

    row: int  # position in arrival order (stable job names across policies)
    arrival: float  # unix seconds (the trace's timestamps, read as UTC)
    duration: float  # seconds of work: the truth, never shown to a scheduler
    gpus: int
    vc: str  # Philly virtual cluster: a team's queue

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.duration / 3600


def read_trace(path: str) -> list[TraceJob]:
    """Every job of `philly_jobs.csv`, in arrival order (ties in file order)."""
    with open(path, newline="") as f:
        rows = [
            (
                datetime.fromisoformat(r["timestamp"]).replace(tzinfo=UTC).timestamp(),
                float(r["duration"]),
                int(float(r["num_gpus"])),
                r["cluster"],
            )
            for r in csv.DictReader(f)
        ]
    rows.sort(key=lambda r: r[0])  # stable: equal timestamps keep file order
    return [TraceJob(i, *r) for i, r in enumerate(rows)]


def window_start(jobs: Sequence[TraceJob], hours: float, seed: int) -> float:
    """A window start drawn by `seed`, on the hour, so the window lies between the 2nd and
    98th percentile of arrivals (the trace's first and last weeks hold few jobs a day)."""
    first = jobs[len(jobs) * 2 // 100].arrival
    last = jobs[len(jobs) * 98 // 100].arrival - hours * 3600
    start = random.Random(seed).uniform(first, max(first, last))
    return start - start % 3600


def parse_start(text: str) -> float:
    """`2017-10-05` or `2017-10-05 06:00[:00]` (UTC) -> unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def window_of(jobs: Sequence[TraceJob], start: float, hours: float) -> list[TraceJob]:
    end = start + hours * 3600
    return [j for j in jobs if start <= j.arrival < end]


def offered_gpu_hours(jobs: Sequence[TraceJob], start: float, hours: float) -> float:
    """GPU-hours the window's jobs would run inside the window if each started on arrival."""
    end = start + hours * 3600
    return sum(j.gpus * min(j.duration, end - j.arrival) for j in jobs) / 3600


def nodes_for_load(jobs: Sequence[TraceJob], start: float, hours: float, load: float) -> int:
    """8-GPU nodes such that the window's offered GPU-hours are `load` x its capacity (and
    the largest gang fits)."""
    needed = offered_gpu_hours(jobs, start, hours) / (load * hours * GPUS_PER_NODE)
    largest = max((j.gpus for j in jobs), default=1)
    return max(1, math.ceil(needed), math.ceil(largest / GPUS_PER_NODE))


def vc_weights(jobs: Sequence[TraceJob]) -> dict[str, float]:
    """Each virtual cluster's share of the whole trace's GPU-hours: its entitlement (the
    quota an administrator would give it from history; Philly's own quotas are not public)."""
    total: dict[str, float] = {}
    for j in jobs:
        total[j.vc] = total.get(j.vc, 0.0) + j.gpu_hours
    whole = sum(total.values()) or 1.0
    return {vc: hours / whole for vc, hours in sorted(total.items())}
