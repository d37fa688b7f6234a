"""`gpualloc simulate`: replay the openb GPU trace with one placement policy."""

from __future__ import annotations

import json
from typing import Any

import click

from gpualloc.sim.openb import TraceFormatError
from gpualloc.sim.policies import POLICIES
from gpualloc.sim.run import simulate
from gpualloc.solver.devices.sharing import BatchOptions


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


@click.command("simulate")
@click.option("--nodes", "nodes_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--pods", "pods_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--arrival", default=1.3, show_default=True, type=click.FloatRange(0.9, 2.0))
@click.option("--seed", default=42, show_default=True, type=int)
@click.option("--policy", default="gpualloc", show_default=True, type=click.Choice(POLICIES))
@click.option(
    "--batch",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="arrivals planned jointly (gpualloc only)",
)
@click.option(
    "--time-limit",
    default=BatchOptions.time_limit_seconds,
    show_default=True,
    type=click.FloatRange(0.1, 60.0),
    help="CP-SAT seconds per batch (gpualloc only)",
)
@click.option("-o", "--output", default="table", type=click.Choice(["json", "table"]))
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr")
def simulate_command(
    nodes_path: str,
    pods_path: str,
    arrival: float,
    seed: int,
    policy: str,
    batch: int,
    time_limit: float,
    output: str,
    no_progress: bool,
) -> None:
    """Replay the openb trace (ATC'23 FGD protocol) with a placement policy.

    Pods are drawn with replacement from --pods until their GPU request reaches --arrival x
    the GPU capacity of --nodes, shuffled by --seed and placed once each, in order; prints
    the unallocated GPU % at 90, 95, ..., 130% arrival.

    Policies: gpualloc plans --batch arrivals at a time with CP-SAT, starting from FGD's
    own choices and keeping them unless a joint plan places more GPU (or, in a batch with a
    whole-GPU pod, as much with less fragmentation); fgd is Fragmentation Gradient Descent
    as the paper's experiments ran it (integer node scores, ties to the first node by
    name); best-fit, first-fit and spread are the simulator's baselines.
    """
    try:
        out = simulate(
            nodes_path, pods_path, arrival, seed, policy, batch, time_limit, not no_progress
        )
    except TraceFormatError as err:
        raise click.UsageError(str(err)) from err
    click.echo(json.dumps(out) if output == "json" else _table(out))
