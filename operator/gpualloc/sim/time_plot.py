"""The time-driven simulator's figure: GPU utilisation over the window and the JCT CDF, one
line per policy (matplotlib, from the dev extras; imported only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

BIN_SECONDS = 1800.0


def binned_utilisation(
    series: Sequence[Sequence[float]], start: float, end: float, capacity: int
) -> tuple[list[float], list[float]]:
    """(hours since start, allocated share) averaged over BIN_SECONDS bins of [start, end)."""
    hours: list[float] = []
    shares: list[float] = []
    points = [*series, [float("inf"), 0, 0]]
    t = start
    i = 0
    while t < end:
        stop = min(t + BIN_SECONDS, end)
        area = 0.0
        while i + 1 < len(points) and points[i + 1][0] <= t:
            i += 1
        j = i
        while j + 1 < len(points) and points[j][0] < stop:
            lo, hi = max(points[j][0], t), min(points[j + 1][0], stop)
            area += points[j][1] * max(0.0, hi - lo)
            j += 1
        hours.append((t - start) / 3600)
        shares.append(area / ((stop - t) * max(capacity, 1)))
        t = stop
    return hours, shares


def plot(result: Mapping[str, Any], path: str) -> None:
    """`result` as `simulate_trace` returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = result["window"]
    start, end = window["start_unix"], window["end_unix"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, run in result["policies"].items():
        hours, shares = binned_utilisation(run["series"], start, end, window["gpus"])
        # the last bin drawn to the window's end
        hours, shares = [*hours, (end - start) / 3600], [*shares, shares[-1] if shares else 0.0]
        left.step(hours, shares, where="post", label=f"{name} ({run['utilisation']:.1%})")
        jct = [s / 3600 for s in run["jct_seconds"]]
        fraction = [(k + 1) / len(jct) for k in range(len(jct))]
        right.step(
            jct, fraction, where="post", label=f"{name} (mean {run['jct_hours']['mean']:.2f} h)"
        )
    left.set(
        xlabel="hours since window start",
        ylabel="GPUs allocated / capacity (30 min mean)",
        ylim=(0, 1.02),
        title=f"Utilisation, {window['start']} + {window['hours']:g} h, {window['gpus']} GPUs",
    )
    right.set(
        xscale="log",
        xlabel="job completion time (hours, log)",
        ylabel="fraction of jobs",
        ylim=(0, 1.0),
        title=f"JCT CDF, {window['jobs']} jobs, offered load {window['offered_load']:.2f}",
    )
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
