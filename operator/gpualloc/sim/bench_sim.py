"""`make bench-sim`: the openb and Philly benchmarks, JSON under bench-results/ and a plot.

Usage: python -m gpualloc.sim.bench_sim [--seeds 42,43,44] [--batch 8] [--jobs 2] [--out DIR]
       [--lists default,...|all] [--policies gpualloc,fgd,...] [--no-philly] [--no-floor]
       [--plot PNG]
       python -m gpualloc.sim.bench_sim --merge a/bench-sim.json,b/bench-sim.json --out DIR
       python -m gpualloc.sim.bench_sim --report DIR/bench-sim.json
Runs every (pod list, policy, seed) through the same code as `gpualloc simulate`, in
parallel processes, adds the proven floor (`solver/devices/bound.py`) and the published FGD
results, and draws unallocated GPU % vs arrival (like Figure 9a of the FGD paper).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from gpualloc.sim.openb import LEVELS, crossings, read_nodes, read_pods, sample_arrivals
from gpualloc.sim.philly import run_philly
from gpualloc.sim.run import simulate
from gpualloc.solver.devices.bound import allocation_upper_bound
from gpualloc.solver.devices.devicestate import DeviceState

DATA = Path("../shared/data")
NODES = DATA / "openb" / "openb_node_list_gpu_node.csv"
LISTS = ("default", "gpushare100", "multigpu50")  # `make bench-sim`, the short run
# every pod list of the paper we have, one or two per family (the rest are held out)
LISTS_ALL = (
    "default",
    "cpu100",
    "gpushare60",
    "gpushare100",
    "gpuspec20",
    "multigpu30",
    "multigpu50",
)
POLICIES = ("gpualloc", "fgd", "best-fit", "first-fit", "spread")
PUBLISHED = {"06-FGD": "FGD (published)", "05-BestFit": "BestFit (published)"}


def _pods(name: str) -> Path:
    return DATA / "openb" / f"openb_pod_list_{name}.csv"


def _run(args: tuple[str, str, int, int]) -> dict[str, Any]:
    pod_list, policy, seed, batch = args
    started = time.monotonic()
    out = simulate(str(NODES), str(_pods(pod_list)), 1.3, seed, policy, batch, progress=False)
    out["pod_list"] = pod_list
    # with reading the lists and sampling; "seconds" is the replay alone
    out["wall_seconds"] = round(time.monotonic() - started, 2)
    print(
        f"{pod_list:12} {policy:10} seed {seed}: {out['seconds']} s"
        f" ({out['cpu_seconds']} s CPU; {out['wall_seconds']} s with set-up)",
        file=sys.stderr,
    )
    return out


def _floor(args: tuple[str, int]) -> dict[str, Any]:
    """The proven floor on unallocated GPU % at each level (any policy)."""
    pod_list, seed = args
    nodes = read_nodes(NODES)
    capacity = DeviceState(nodes).total_gpu_milli
    arrivals = sample_arrivals(read_pods(_pods(pod_list)), capacity, 1.3, seed)
    floor = {}
    for level, index in crossings(arrivals, capacity, LEVELS).items():
        bound = allocation_upper_bound(arrivals[: index + 1], nodes)
        floor[str(level)] = round(100 - bound / capacity * 100, 4)
    return {"pod_list": pod_list, "seed": seed, "floor_unallocated_gpu_pct": floor}


def published(path: Path, pod_list: str) -> dict[str, dict[str, float]]:
    """Mean unallocated GPU % per level over the published seeds, per policy."""
    rows: dict[str, list[dict[str, str]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["workload"] == f"openb_pod_list_{pod_list}" and row["sc_policy"] in PUBLISHED:
                rows.setdefault(PUBLISHED[row["sc_policy"]], []).append(row)
    return {
        name: {
            str(lv): round(100 - statistics.mean(float(r[str(lv)]) for r in runs), 3)
            for lv in LEVELS
        }
        for name, runs in rows.items()
    }


def published_seeds(path: Path, pod_list: str, name: str) -> dict[int, dict[str, float]]:
    """seed -> level -> unallocated GPU % of one published policy (a PUBLISHED value)."""
    out: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["workload"] == f"openb_pod_list_{pod_list}" and (
                PUBLISHED.get(row["sc_policy"]) == name
            ):
                out[int(row["seed"])] = {str(lv): 100 - float(row[str(lv)]) for lv in LEVELS}
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """pod list -> policy -> level -> mean unallocated GPU % over seeds."""
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run in runs:
        per = values.setdefault(run["pod_list"], {}).setdefault(run["policy"], {})
        for lv, value in run["unallocated_gpu_pct"].items():
            per.setdefault(lv, []).append(value)
    return {
        pl: {
            pol: {lv: round(statistics.mean(v), 3) for lv, v in levels.items()}
            for pol, levels in pols.items()
        }
        for pl, pols in values.items()
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(summary))
    rows = -(-len(summary) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    styles = {"FGD (published)": "k--", "BestFit (published)": "k:", "floor (proven)": "g-."}
    for ax in axes.flat[len(summary) :]:
        ax.set_visible(False)
    for ax, (pod_list, curves) in zip(axes.flat, summary.items(), strict=False):
        for name, levels in curves.items():
            xs = [int(lv) for lv in levels]
            ys = list(levels.values())
            if name in styles:
                ax.plot(xs, ys, styles[name], label=name)
            else:  # one colour per policy on every list
                colour = f"C{POLICIES.index(name)}" if name in POLICIES else None
                ax.plot(xs, ys, marker="o", markersize=3, label=name, color=colour)
        ax.set_title(f"openb {pod_list}")
        ax.set_xlabel("arrived GPU request (% of capacity)")
        ax.set_ylabel("unallocated GPU %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


OVERVIEW_LEVELS = ("90", "95", "100", "110", "130")
OVERVIEW_ROWS = (
    ("gpualloc", "gpualloc"),
    ("fgd", "fgd (ours)"),
    ("FGD (published)", "FGD (published)"),
    ("best-fit", "best-fit (ours)"),
    ("BestFit (published)", "BestFit (published)"),
    ("floor (proven)", "floor (proven)"),
)


def overview(report: dict[str, Any]) -> list[str]:
    """One table: every pod list x the headline levels, the main policies and the floor."""
    curves = report["mean_unallocated_gpu_pct"]
    seeds = ",".join(str(s) for s in report["seeds"])
    lines = [
        f"Unallocated GPU %, mean over seeds {seeds} (gpualloc batch {report['batch']};"
        " published: their samples, same seeds)",
        "",
        "| pod list | policy | " + " | ".join(f"{lv}%" for lv in OVERVIEW_LEVELS) + " |",
        "|---|---|" + "---:|" * len(OVERVIEW_LEVELS),
    ]
    for pod_list, per in curves.items():
        for key, label in OVERVIEW_ROWS:
            if key in per:
                cells = " | ".join(_cell(per[key], lv) for lv in OVERVIEW_LEVELS)
                lines.append(f"| {pod_list} | {label} | {cells} |")
    return [*lines, ""]


def differences(report: dict[str, Any]) -> list[str]:
    """Per pod list and level (all 9): gpualloc - fgd, gpualloc - published FGD, and our
    fgd - published FGD (the sampler difference), in points."""
    curves = report["mean_unallocated_gpu_pct"]
    lines = []
    pairs = (
        ("gpualloc", "fgd", "gpualloc minus our fgd (same samples)"),
        ("gpualloc", "FGD (published)", "gpualloc minus the published FGD"),
        ("fgd", "FGD (published)", "our fgd minus the published FGD: the sampler difference"),
        ("best-fit", "BestFit (published)", "our best-fit minus the published BestFit"),
    )
    for mine, other, title in pairs:
        rows = [pl for pl, per in curves.items() if mine in per and other in per]
        if not rows:
            continue
        levels = [str(lv) for lv in LEVELS]
        lines += [
            f"{title} (points; negative = fewer GPUs unallocated)",
            "",
            "| pod list | " + " | ".join(f"{lv}%" for lv in levels) + " |",
            "|---|" + "---:|" * len(levels),
        ]
        for pl in rows:
            a, b = curves[pl][mine], curves[pl][other]
            cells = " | ".join(
                f"{a[lv] - b[lv]:+.3f}" if lv in a and lv in b else "-" for lv in levels
            )
            lines.append(f"| {pl} | {cells} |")
        lines.append("")
    return lines


def sampler_difference(
    report: dict[str, Any],
    published_runs: Callable[[str, str], dict[int, dict[str, float]]] | None = None,
) -> list[str]:
    """Our policy minus the published one on each side's own samples (same seeds), with
    twice the standard error of that difference (seed-to-seed spread of both sides): a
    difference inside it is what two samplers alone give. `published_runs(pod list,
    name)` gives the published per-seed values (default: `published_seeds` of the CSV)."""
    if published_runs is None:

        def published_runs(pod_list: str, name: str) -> dict[int, dict[str, float]]:
            return published_seeds(DATA / "openb" / "fgd_allocation_results.csv", pod_list, name)

    lines = [
        "Our fgd / best-fit minus the published FGD / BestFit, mean over the same seeds"
        " (points; +- 2 standard errors)",
        "",
        "| pod list | policy | " + " | ".join(f"{lv}%" for lv in OVERVIEW_LEVELS) + " |",
        "|---|---|" + "---:|" * len(OVERVIEW_LEVELS),
    ]
    for pod_list in report["mean_unallocated_gpu_pct"]:
        for mine, theirs in (("fgd", "FGD (published)"), ("best-fit", "BestFit (published)")):
            ours = [
                r["unallocated_gpu_pct"]
                for r in report["runs"]
                if r["pod_list"] == pod_list and r["policy"] == mine
            ]
            seeds = {r["seed"] for r in report["runs"] if r["pod_list"] == pod_list}
            other = [v for s, v in published_runs(pod_list, theirs).items() if s in seeds]
            if len(ours) < 2 or len(other) < 2:
                continue
            cells = []
            for lv in OVERVIEW_LEVELS:
                a, b = [r[lv] for r in ours], [r[lv] for r in other]
                diff = statistics.mean(a) - statistics.mean(b)
                se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
                cells.append(f"{diff:+.2f} (+-{2 * se:.2f})")
            lines.append(f"| {pod_list} | {mine} | {' | '.join(cells)} |")
    return [*lines, ""]


def timings(report: dict[str, Any]) -> list[str]:
    """Seconds per run (the replay), per pod list and policy: mean and largest, wall and
    CPU (the machine may be shared; CPU is what the run itself costs)."""
    lines = [
        "| pod list | policy | wall s, mean / max | CPU s, mean / max |",
        "|---|---|---:|---:|",
    ]
    keys = sorted(
        {(r["pod_list"], r["policy"]) for r in report["runs"]},
        key=lambda k: (list(report["mean_unallocated_gpu_pct"]).index(k[0]), k[1]),
    )
    for pod_list, policy in keys:
        runs = [r for r in report["runs"] if r["pod_list"] == pod_list and r["policy"] == policy]
        wall = [r["seconds"] for r in runs]
        cpu = [r.get("cpu_seconds", r["seconds"]) for r in runs]
        lines.append(
            f"| {pod_list} | {policy} | {statistics.mean(wall):.0f} / {max(wall):.0f}"
            f" | {statistics.mean(cpu):.0f} / {max(cpu):.0f} |"
        )
    return [*lines, ""]


def _cell(values: dict[str, float], level: str) -> str:
    return f"{values[level]:.2f}" if level in values else "-"


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md, from a bench-sim.json report."""
    lines: list[str] = [
        *overview(report),
        *differences(report),
        *sampler_difference(report),
        *timings(report),
    ]
    seeds = ",".join(str(s) for s in report["seeds"])
    for pod_list, curves in report["mean_unallocated_gpu_pct"].items():
        levels = [lv for lv in next(iter(curves.values())) if int(lv) in (90, 95, 100, 110, 130)]
        lines += [
            f"**openb `{pod_list}`** - unallocated GPU %, mean over seeds {seeds}"
            f" (gpualloc batch {report['batch']})",
            "",
            "| policy | " + " | ".join(f"{lv}%" for lv in levels) + " |",
            "|---|" + "---:|" * len(levels),
        ]
        for name, values in curves.items():
            cells = " | ".join(f"{values[lv]:.2f}" if lv in values else "-" for lv in levels)
            lines.append(f"| {name} | {cells} |")
        lines.append("")
    for variant, result in report.get("philly", {}).items():
        lines += [
            f"**Philly gangs, {variant.replace('_', ' ')}** - {result['nodes']} nodes x 8 GPUs,"
            f" {result['windows']} windows to {result['arrival']}x capacity",
            "",
            "| policy | allocated GPU ratio | stranded GPUs | half-placed gangs |",
            "|---|---:|---:|---:|",
        ]
        for name, row in result["summary"].items():
            lines.append(
                f"| {name} | {row['allocated_gpu_ratio']:.4f} | {row['stranded_gpus']}"
                f" | {row['half_placed_gangs']} |"
            )
        lines.append("")
    return "\n".join(lines)


def build_report(
    runs: list[dict[str, Any]],
    floors: list[dict[str, Any]],
    philly: dict[str, Any],
    batch: int,
    wall_seconds: float,
) -> dict[str, Any]:
    """bench-sim.json: the runs, floors and Philly results, and the means per pod list."""
    lists = [pl for pl in LISTS_ALL if any(r["pod_list"] == pl for r in runs)]
    lists += sorted({r["pod_list"] for r in runs} - set(lists))
    summary: dict[str, Any] = summarize(runs)
    # policies in one order on every list (parts may bring them in any order)
    rank = {name: i for i, name in enumerate(POLICIES)}
    summary = {
        pl: dict(sorted(summary[pl].items(), key=lambda kv: rank.get(kv[0], len(rank))))
        for pl in lists
    }
    for pl in lists:
        per_seed = [f["floor_unallocated_gpu_pct"] for f in floors if f["pod_list"] == pl]
        if per_seed:
            summary[pl]["floor (proven)"] = {
                lv: round(statistics.mean(p[lv] for p in per_seed), 3) for lv in per_seed[0]
            }
        summary[pl].update(published(DATA / "openb" / "fgd_allocation_results.csv", pl))
    return {
        "seeds": sorted({r["seed"] for r in runs}),
        "batch": batch,
        "arrival": 1.3,
        "wall_seconds": wall_seconds,
        "mean_unallocated_gpu_pct": summary,
        "runs": runs,
        "floors": floors,
        "philly": philly,
    }


def write(report: dict[str, Any], out: Path, plot_path: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench-sim.json").write_text(json.dumps(report, indent=1))
    (out / "bench-sim.md").write_text(markdown(report))
    plot(report["mean_unallocated_gpu_pct"], plot_path)
    print(f"wrote {out / 'bench-sim.json'} and {plot_path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lists", default=",".join(LISTS), help="comma-separated, or all")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--plot", default="docs/simulator-openb.png")
    parser.add_argument("--report", help="only render REPORT (a bench-sim.json) as markdown")
    parser.add_argument("--no-philly", action="store_true", help="skip the Philly gang benchmark")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floors (another part has them)"
    )
    parser.add_argument("--merge", help="comma-separated bench-sim.json files to report as one")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown(json.loads(Path(args.report).read_text())))
        return
    if args.merge:  # reports of parts of one benchmark (e.g. one pod list each), as one
        parts = [json.loads(Path(f).read_text()) for f in args.merge.split(",")]
        report = build_report(
            [r for part in parts for r in part["runs"]],
            [f for part in parts for f in part["floors"]],
            next((part["philly"] for part in parts if part["philly"]), {}),
            parts[0]["batch"],
            round(sum(part["wall_seconds"] for part in parts), 1),
        )
        write(report, Path(args.out), Path(args.plot))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    lists = list(LISTS_ALL) if args.lists == "all" else args.lists.split(",")
    started = time.monotonic()
    # slowest first, so the pool stays busy to the end
    policies = args.policies.split(",")
    tasks = [(pl, pol, s, args.batch) for pol in policies for pl in lists for s in seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        floor_tasks = [] if args.no_floor else [(pl, s) for pl in lists for s in seeds]
        floors = list(pool.map(_floor, floor_tasks))
        runs = list(pool.map(_run, tasks))
    trace = str(DATA / "philly" / "philly_jobs.csv")
    philly = (
        {}
        if args.no_philly
        else {"all_jobs": run_philly(trace), "multi_gpu_jobs": run_philly(trace, min_gpus=2)}
    )
    wall = round(time.monotonic() - started, 1)
    report = build_report(runs, floors, philly, args.batch, wall)
    write(report, Path(args.out), Path(args.plot))
    print(json.dumps({k: report[k] for k in ("seeds", "batch", "wall_seconds")}))


if __name__ == "__main__":
    main()
