"""Tables of time-driven simulator results: the CLI's text table, and the verdict against the
issue's goal (gpualloc's mean JCT >= 20% below the best baseline's, utilisation at least as
high, no half-placed gang, at a load where fifo-bestfit queues >= 1 h on average)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpualloc.sim.time_oracle import ORACLE

BASELINES = ("fifo-bestfit", "kueue-like", "kai-like")
COLUMNS = (
    ("policy", "{}"),
    ("util", "{:.3f}"),
    ("busy", "{:.3f}"),
    ("JCT mean/p50/p95 h", "{}"),
    ("queue mean/p50/p95 h", "{}"),
    (">=8 GPU JCT/queue h", "{}"),
    ("makespan h", "{:.1f}"),
    ("preempt", "{}"),
    ("lost GPU-h", "{:.1f}"),
    ("half-placed", "{}"),
    ("Jain", "{:.3f}"),
    ("rounds", "{}"),
    ("wall s", "{:.1f}"),
    ("sim h/wall s", "{:.2f}"),
)


def _triple(s: Mapping[str, float]) -> str:
    return f"{s['mean']:.2f}/{s['p50']:.2f}/{s['p95']:.2f}"


def row(name: str, run: Mapping[str, Any]) -> list[str]:
    big = run["big_gangs"]
    values = (
        name,
        run["utilisation"],
        run["busy_utilisation"],
        _triple(run["jct_hours"]),
        _triple(run["queueing_hours"]),
        f"{big['jct_hours']['mean']:.2f}/{big['queueing_hours']['mean']:.2f}",
        run["makespan_hours"],
        run["preemptions"],
        run["lost_gpu_hours"],
        run["half_placed_gangs"],
        run["fairness"]["jain"],
        run["run"]["rounds"],
        run["run"]["wall_seconds"],
        run["run"]["sim_hours_per_wall_second"],
    )
    return [fmt.format(v) for (_, fmt), v in zip(COLUMNS, values, strict=True)]


def verdict(policies: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """gpualloc against the best baseline run (lowest mean JCT), or None without both."""
    baselines = {n: r for n, r in policies.items() if n in BASELINES}
    if "gpualloc" not in policies or not baselines:
        return None
    ours = policies["gpualloc"]
    best_name = min(baselines, key=lambda n: baselines[n]["jct_hours"]["mean"])
    best = baselines[best_name]
    lower = 1 - ours["jct_hours"]["mean"] / max(best["jct_hours"]["mean"], 1e-9)
    # the most any scheduler could cut: down to every job starting on arrival
    reachable = 1 - ours["jct_floor_mean_hours"] / max(best["jct_hours"]["mean"], 1e-9)
    fifo = policies.get("fifo-bestfit")
    out = {
        "best_baseline": best_name,
        "jct_lower_than_best": round(lower, 4),
        "most_reachable": round(reachable, 4),
        "utilisation_vs_best": round(ours["utilisation"] - best["utilisation"], 4),
        "utilisation_at_least_best_baseline": ours["utilisation"]
        >= max(r["utilisation"] for r in baselines.values()) - 1e-4,
        "half_placed_gangs": ours["half_placed_gangs"],
        "fifo_queueing_mean_hours": fifo["queueing_hours"]["mean"] if fifo else None,
    }
    out["load_qualifies"] = bool(fifo and fifo["queueing_hours"]["mean"] >= 1.0)
    oracle = policies.get(ORACLE)
    if oracle is not None:  # true durations: what ordering alone could reach
        out["oracle_lower_than_best"] = round(
            1 - oracle["jct_hours"]["mean"] / max(best["jct_hours"]["mean"], 1e-9), 4
        )
    out["goal_met"] = bool(
        lower >= 0.20
        and out["utilisation_at_least_best_baseline"]
        and ours["half_placed_gangs"] == 0
    )
    return out


def trace_table(result: Mapping[str, Any]) -> str:
    w = result["window"]
    lines = [
        f"philly {w['start']} + {w['hours']:g} h: {w['jobs']} jobs ({w['gang_jobs_8_plus']} of "
        f">= 8 GPUs, {w['unfit_jobs']} too large left out), {w['nodes']} nodes / {w['gpus']} "
        f"GPUs, offered load {w['offered_load']:.2f}",
    ]
    rows = [[c for c, _ in COLUMNS]] + [row(n, r) for n, r in result["policies"].items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines += ["  ".join(c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows]
    v = verdict(result["policies"])
    if v is not None:
        change = v["jct_lower_than_best"]
        parts = [
            f"gpualloc mean JCT {abs(change):.1%} {'lower' if change >= 0 else 'higher'} than the",
            f"best baseline ({v['best_baseline']}); utilisation {v['utilisation_vs_best']:+.3f};",
            f"half-placed gangs {v['half_placed_gangs']}; goal (>= 20% lower, utilisation at",
            f"least as high, 0 half-placed) {'met' if v['goal_met'] else 'NOT met'};",
            f"no scheduler could cut more than {v['most_reachable']:.1%} (JCT floor: every job",
            "starting on arrival)",
        ]
        if not v["load_qualifies"]:
            parts.append("(fifo-bestfit queues < 1 h here: load too low)")
        lines.append(" ".join(parts))
    return "\n".join(lines)
