"""What a run of the time-driven simulator measured: utilisation, JCT, queueing, preemption,
half-placed gangs, and each virtual cluster's share against its entitlement (Jain's index).

Utilisation and shares are measured over the arrival window [start, end); job figures over
the window's jobs, each followed to completion (the run goes on until the last one leaves).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from gpualloc.sim.timeline import SimJob

HOUR = 3600.0
BIG_GANG_GPUS = 8


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_hours(seconds: Sequence[float]) -> dict[str, float | int]:
    """Mean, p50 and p95 in hours (NaN-free: empty gives zeros and n = 0)."""
    if not seconds:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "n": 0}
    return {
        "mean": round(statistics.fmean(seconds) / HOUR, 4),
        "p50": round(percentile(seconds, 50) / HOUR, 4),
        "p95": round(percentile(seconds, 95) / HOUR, 4),
        "n": len(seconds),
    }


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one has everything."""
    if not values or not any(values):
        return 1.0
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def water_fill(
    total: float, weights: Mapping[str, float], caps: Mapping[str, float]
) -> dict[str, float]:
    """Weighted max-min fair division of `total`: each gets in proportion to its weight, never
    more than its cap; what a capped one leaves goes to the others."""
    out = dict.fromkeys(weights, 0.0)
    open_ = {k for k, w in weights.items() if w > 0 and caps.get(k, 0.0) > 0}
    left = total
    while open_ and left > 1e-9:
        weight = sum(weights[k] for k in open_)
        share = {k: left * weights[k] / weight for k in open_}
        capped = {k for k in open_ if out[k] + share[k] >= caps[k]}
        if not capped:
            for k in open_:
                out[k] += share[k]
            break
        for k in capped:
            left -= caps[k] - out[k]
            out[k] = caps[k]
        open_ -= capped
    return out


def _overlap(a: float, b: float, start: float, end: float) -> float:
    return max(0.0, min(b, end) - max(a, start))


def time_average(
    series: Sequence[tuple[float, int, int]], start: float, end: float
) -> tuple[float, float]:
    """Time averages of (allocated, busy) GPUs over [start, end) of a step series."""
    allocated = busy = 0.0
    for (t, a, b), (t_next, _, _) in zip(series, [*series[1:], (math.inf, 0, 0)], strict=True):
        span = _overlap(t, t_next, start, end)
        allocated += a * span
        busy += b * span
    length = max(end - start, 1e-9)
    return allocated / length, busy / length


def vc_shares(
    jobs: Sequence[SimJob], weights: Mapping[str, float], start: float, end: float
) -> dict[str, Any]:
    """Per virtual cluster: GPU-hours run in the window against its fair entitlement.

    Entitlement: the GPU-hours all VCs got together, divided by weighted max-min fairness
    (weight = the VC's share of the whole trace, cap = what its jobs asked inside the
    window), so a VC asking for less than its weight is not counted as starved."""
    got: dict[str, float] = {}
    asked: dict[str, float] = {}
    for job in jobs:
        vc = job.namespace
        got[vc] = got.get(vc, 0.0) + job.gpus * sum(_overlap(a, b, start, end) for a, b in job.runs)
        wanted = job.gpus * max(0.0, min(job.trace.duration, end - job.arrival))
        asked[vc] = asked.get(vc, 0.0) + wanted
    active = sorted(vc for vc in asked if asked[vc] > 0)
    share = {vc: weights.get(vc.removeprefix("vc-"), 0.0) for vc in active}
    if not any(share.values()):
        share = dict.fromkeys(active, 1.0)
    entitled = water_fill(sum(got.values()), share, asked)
    per_vc = {}
    ratios = []
    for vc in active:
        ratio = got.get(vc, 0.0) / entitled[vc] if entitled[vc] > 0 else 1.0
        ratios.append(ratio)
        per_vc[vc] = {
            "weight": round(share[vc] / (sum(share.values()) or 1.0), 4),
            "asked_gpu_hours": round(asked[vc] / HOUR, 1),
            "got_gpu_hours": round(got.get(vc, 0.0) / HOUR, 1),
            "entitled_gpu_hours": round(entitled[vc] / HOUR, 1),
            "ratio": round(ratio, 3),
        }
    return {"jain": round(jain(ratios), 4), "per_vc": per_vc}


def run_metrics(
    jobs: Sequence[SimJob],
    series: Sequence[tuple[float, int, int]],
    capacity: int,
    start: float,
    end: float,
    weights: Mapping[str, float],
) -> dict[str, Any]:
    done = [j for j in jobs if j.finished is not None]
    started = [j for j in jobs if j.first_start is not None]
    big = [j for j in done if j.gpus >= BIG_GANG_GPUS]
    allocated, busy = time_average(series, start, end)
    return {
        "jobs": len(jobs),
        "finished": len(done),
        "utilisation": round(allocated / capacity, 4),
        "busy_utilisation": round(busy / capacity, 4),
        "jct_hours": summary_hours([j.finished - j.arrival for j in done if j.finished]),
        # no scheduler can do better than every job starting on arrival
        "jct_floor_mean_hours": round(
            statistics.fmean(j.trace.duration for j in done) / HOUR if done else 0.0, 4
        ),
        "queueing_hours": summary_hours(
            [j.first_start - j.arrival for j in started if j.first_start is not None]
        ),
        "big_gangs": {
            "jct_hours": summary_hours([j.finished - j.arrival for j in big if j.finished]),
            "queueing_hours": summary_hours(
                [j.first_start - j.arrival for j in big if j.first_start is not None]
            ),
        },
        "makespan_hours": round(
            (max((j.finished or 0.0 for j in done), default=start) - start) / HOUR, 2
        ),
        "preemptions": sum(j.preemptions for j in jobs),
        "preempted_jobs": sum(1 for j in jobs if j.preemptions),
        "lost_gpu_hours": round(sum(j.lost_gpu_seconds for j in jobs) / HOUR, 2),
        "half_placed_gangs": sum(1 for j in jobs if j.half_placed),
        "fairness": vc_shares(jobs, weights, start, end),
    }
