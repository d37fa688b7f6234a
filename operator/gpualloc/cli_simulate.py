"""`gpualloc simulate`: replay the openb GPU trace with one placement policy, or (`--trace
philly`) run the time-driven simulator over a window of the Philly trace."""

from __future__ import annotations

import json
from typing import Any

import click

from gpualloc.sim.openb import TraceFormatError
from gpualloc.sim.policies import POLICIES
from gpualloc.sim.run import simulate
from gpualloc.sim.time_report import trace_table
from gpualloc.sim.time_run import POLICIES as TRACE_POLICIES
from gpualloc.sim.time_run import TraceOptions, simulate_trace
from gpualloc.solver.devices.sharing import BatchOptions

PHILLY = "../shared/data/philly/philly_jobs.csv"


def _table(out: dict[str, Any]) -> str:
    levels = out["unallocated_gpu_pct"]
    head = "arrival %  " + " ".join(f"{lv:>6}" for lv in levels)
    row = "unalloc %  " + " ".join(f"{v:6.2f}" for v in levels.values())
    info = (
        f"policy {out['policy']}  seed {out['seed']}  batch {out['batch']}  pods {out['pods']}"
        f"  failed {out['failed_pods']} ({out['failed_cpu_only_pods']} CPU-only)"
        f"  {out['seconds']} s"
    )
    return "\n".join([info, head, row])


def _trace_policies(text: str | None) -> list[str]:
    names = list(TRACE_POLICIES) if text in (None, "all") else str(text).split(",")
    unknown = [n for n in names if n not in TRACE_POLICIES]
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)}: with --trace, one or more (comma-separated) of "
            f"{', '.join(TRACE_POLICIES)}, or all",
            param_hint="'--policy'",
        )
    return names


def _parse_start(text: str | None) -> float | None:
    from gpualloc.sim.philly import parse_start

    if text is None:
        return None
    try:
        return parse_start(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date like 2017-10-05 or 2017-10-05 06:00 (UTC)",
            param_hint="'--start'",
        ) from None


@click.command("simulate")
@click.option(
    "--trace",
    type=click.Choice(["philly"]),
    default=None,
    help="time-driven mode: jobs of the trace arrive, wait, run and leave (see below)",
)
@click.option(
    "--nodes",
    "nodes_path",
    type=click.Path(exists=True, dir_okay=False),
    help="openb: the node list CSV (required); --trace: a node profile YAML (optional)",
)
@click.option("--pods", "pods_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--arrival", default=1.3, show_default=True, type=click.FloatRange(0.9, 2.0))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option(
    "--policy",
    default=None,
    help=f"openb: one of {', '.join(POLICIES)} (default gpualloc); --trace: a comma-separated "
    f"list of {', '.join(TRACE_POLICIES)} (default all)",
)
@click.option(
    "--batch",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="arrivals planned jointly (gpualloc only)",
)
@click.option(
    "--time-limit",
    default=None,
    type=click.FloatRange(0.1, 60.0),
    help="openb: the wall-clock safety cap per batch (default "
    f"{BatchOptions.time_limit_seconds} s; the search itself stops at "
    f"{BatchOptions.deterministic_time} deterministic seconds, the same on any load); "
    "--trace: CP-SAT seconds per round (default 2)",
)
@click.option("--load", default=1.0, show_default=True, type=click.FloatRange(0.05, 20.0))
@click.option("--hours", default=72.0, show_default=True, type=click.FloatRange(0.1, 2400.0))
@click.option("--start", default=None, help="window start (UTC), e.g. 2017-10-05; default: by seed")
@click.option(
    "--node-count", default=None, type=click.IntRange(1, 100000), help="--trace: 8-GPU nodes"
)
@click.option("--estimate-error", default=0.0, show_default=True, type=click.FloatRange(0, 5))
@click.option("--checkpoint-minutes", default=30.0, show_default=True, type=click.FloatRange(0))
@click.option(
    "--trace-file",
    default=PHILLY,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="--trace: the Philly jobs CSV",
)
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False))
@click.option("-o", "--output", default="table", type=click.Choice(["json", "table"]))
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr")
def simulate_command(
    trace: str | None,
    nodes_path: str | None,
    pods_path: str | None,
    arrival: float,
    seed: int,
    policy: str | None,
    batch: int,
    time_limit: float | None,
    load: float,
    hours: float,
    start: str | None,
    node_count: int | None,
    estimate_error: float,
    checkpoint_minutes: float,
    trace_file: str,
    plot_path: str | None,
    output: str,
    no_progress: bool,
) -> None:
    """Replay the openb trace (ATC'23 FGD protocol) with a placement policy, or with
    --trace philly run the time-driven simulator.

    openb: pods are drawn with replacement from --pods until their GPU request reaches
    --arrival x the GPU capacity of --nodes, shuffled by --seed and placed once each, in
    order; prints the unallocated GPU % at 90, 95, ..., 130% arrival. Policies: gpualloc
    plans --batch arrivals at a time with CP-SAT, starting from FGD's own choices and keeping
    them unless a joint plan places more GPU (or, in a batch with a whole-GPU pod, as much
    with less fragmentation); fgd is Fragmentation Gradient Descent as the paper's
    experiments ran it (integer node scores, ties to the first node by name); best-fit,
    first-fit and spread are the simulator's baselines.

    --trace philly: --hours of Philly arrivals from --start (or a start drawn by --seed) on
    a cluster of 8-GPU nodes sized so the window's offered GPU-hours are --load x capacity
    (or --node-count nodes, or the --nodes profile). Jobs wait, run for their duration once
    their gang is placed, and leave; a preempted job restarts from its last checkpoint
    (every --checkpoint-minutes of work). gpualloc is the controller's own decide step,
    called in rounds as the controller calls it; fifo-bestfit, kueue-like and kai-like run
    under the same event loop (docs/benchmarks.md). Schedulers see estimatedGPUHours (noised
    by --estimate-error), never durations. Prints utilisation, JCT, queueing, preemptions,
    half-placed gangs and per-VC fairness per policy; --plot writes a PNG.
    """
    if trace is not None:
        options = TraceOptions(
            trace=trace_file,
            load=load,
            hours=hours,
            start=_parse_start(start),
            seed=seed,
            nodes=node_count,
            profile=nodes_path,
            estimate_error=estimate_error,
            checkpoint_minutes=checkpoint_minutes,
            time_limit=2.0 if time_limit is None else time_limit,
        )
        try:
            result = simulate_trace(options, _trace_policies(policy), not no_progress)
        except (OSError, KeyError, ValueError) as err:
            raise click.UsageError(str(err)) from err
        if plot_path:
            from gpualloc.sim.time_plot import plot

            plot(result, plot_path)
        click.echo(json.dumps(result) if output == "json" else trace_table(result))
        return
    if nodes_path is None:
        raise click.UsageError("Missing option '--nodes'.")
    if pods_path is None:
        raise click.UsageError("Missing option '--pods'.")
    policy = policy or "gpualloc"
    if policy not in POLICIES:
        raise click.BadParameter(
            f"{policy!r} is not one of {', '.join(map(repr, POLICIES))}.", param_hint="'--policy'"
        )
    limit = BatchOptions.time_limit_seconds if time_limit is None else time_limit
    try:
        out = simulate(nodes_path, pods_path, arrival, seed, policy, batch, limit, not no_progress)
    except TraceFormatError as err:
        raise click.UsageError(str(err)) from err
    click.echo(json.dumps(out) if output == "json" else _table(out))
