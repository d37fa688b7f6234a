"""`gpualloc bench ...`: benchmarks that write JSON results."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("bench")
def bench_group() -> None:
    """Run a benchmark and write its results as JSON."""


@bench_group.command("planner")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="bench-results/planner.json",
    show_default=True,
    help="Where to write the JSON results.",
)
@click.option("--quick", is_flag=True, help="Only the 1,000-node cases.")
def bench_planner(out: str, quick: bool) -> None:
    """Planner vs greedy baselines on synthetic 1,000- and 10,000-node clusters."""
    from gpualloc.sim.bench_planner import CASES, run_case

    rows = []
    for nodes, jobs, limit in CASES:
        if quick and nodes > 1000:
            continue
        click.echo(f"planner bench: {nodes} nodes, {jobs} jobs, limit {limit:g}s ...", err=True)
        row = run_case(nodes, jobs, limit)
        ours = row["gpualloc"]
        click.echo(
            f"  gpualloc {ours['status']} in {ours['seconds']}s, gap {ours['allocation_gap']:.4%},"
            f" GPUs by priority {ours['gpus_by_priority']}",
            err=True,
        )
        for name in ("first-fit", "best-fit", "spread"):
            click.echo(f"  {name}: {row[name]['gpus_by_priority']}", err=True)
        rows.append(row)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"benchmark": "planner", "cases": rows}, indent=2) + "\n")
    click.echo(f"wrote {out}", err=True)
