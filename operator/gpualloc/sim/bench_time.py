"""`make bench-sim` (second command): the time-driven simulator over Philly windows.

Usage: python -m gpualloc.sim.bench_time [--seeds 42,43,44] [--hours 72] [--load 1.2]
       [--policies fifo-bestfit,kueue-like,kai-like,gpualloc] [--jobs 2] [--out DIR]
       [--plot docs/simulator-philly.png] [--name bench-time]
Each seed draws one window; every policy replays it (one process per (seed, policy), --jobs
at a time). Writes DIR/<name>.json (every run, without the time series) and DIR/<name>.md
(a table per window, the goal's verdict per window), and plots the first window.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpualloc.sim.time_report import COLUMNS, row, verdict
from gpualloc.sim.time_run import POLICIES, TraceOptions, prepare, run_policy, window_summary


def _run(args: tuple[TraceOptions, str]) -> tuple[int, str, dict[str, Any]]:
    options, policy = args
    window = prepare(options)
    out = run_policy(window, policy, options)
    print(
        f"seed {options.seed} {policy:12}: {out['run']['wall_seconds']} s, "
        f"{out['run']['rounds']} rounds, mean JCT {out['jct_hours']['mean']:.2f} h",
        file=sys.stderr,
        flush=True,
    )
    return options.seed, policy, out


def _lower_or_higher(change: float) -> str:
    return f"{change:.1%} lower" if change >= 0 else f"{-change:.1%} higher"


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for seed, result in report["windows"].items():
        w = result["window"]
        lines += [
            f"**Window seed {seed}**: {w['start']} + {w['hours']:g} h, {w['jobs']} jobs "
            f"({w['gang_jobs_8_plus']} of >= 8 GPUs), {w['nodes']} nodes x 8 GPUs, offered "
            f"load {w['offered_load']:.2f}",
            "",
            "| " + " | ".join(c for c, _ in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        lines += ["| " + " | ".join(row(n, r)) + " |" for n, r in result["policies"].items()]
        v = result.get("verdict")
        if v:
            lines += [
                "",
                f"gpualloc vs best baseline ({v['best_baseline']}): mean JCT "
                f"{_lower_or_higher(v['jct_lower_than_best'])}, utilisation "
                f"{v['utilisation_vs_best']:+.3f}, half-placed gangs {v['half_placed_gangs']}; "
                f"fifo-bestfit mean queueing {v['fifo_queueing_mean_hours']:.2f} h; goal "
                f"{'met' if v['goal_met'] else 'not met'}; the JCT floor (every job starting on "
                f"arrival) is {v['most_reachable']:.1%} below the best baseline"
                + (
                    f"; the oracle (true durations, not a policy) "
                    f"{_lower_or_higher(v['oracle_lower_than_best'])}."
                    if "oracle_lower_than_best" in v
                    else "."
                ),
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--hours", type=float, default=72.0)
    parser.add_argument("--load", type=float, default=1.2)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--name", default="bench-time")
    parser.add_argument("--plot", default="docs/simulator-philly.png")
    parser.add_argument("--estimate-error", type=float, default=0.0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    base = TraceOptions(hours=args.hours, load=args.load, estimate_error=args.estimate_error)
    seeds = [int(s) for s in args.seeds.split(",")]
    policies = args.policies.split(",")
    tasks = [(replace(base, seed=seed), p) for seed in seeds for p in policies]
    # the slowest (gpualloc) first, so two processes finish together
    tasks.sort(key=lambda t: t[1] != "gpualloc")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(_run, tasks))
    windows: dict[str, Any] = {}
    for seed in seeds:
        options = replace(base, seed=seed)
        result: dict[str, Any] = {
            "window": window_summary(prepare(options), options),
            "policies": {
                p: out
                for s, p, out in sorted(runs, key=lambda r: policies.index(r[1]))
                if s == seed
            },
        }
        result["verdict"] = verdict(result["policies"])
        windows[str(seed)] = result
    if args.plot:
        from gpualloc.sim.time_plot import plot

        plot(windows[str(seeds[0])], args.plot)
    for result in windows.values():
        for out in result["policies"].values():
            out.pop("series", None)
            out.pop("jct_seconds", None)
    report = {
        "command": " ".join(["python -m gpualloc.sim.bench_time", *(argv or sys.argv[1:])]),
        "options": {"hours": args.hours, "load": args.load, "seeds": seeds},
        "windows": windows,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    (out_dir / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
