"""`gpualloc plan`: what would go where, from YAML files, with no cluster."""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import click

from gpualloc.k8s.convert import (
    SizingWait,
    SpecError,
    policy_from_k8s,
    queue_from_k8s,
    unknown_level,
)
from gpualloc.k8s.files import InputError, load_objects
from gpualloc.k8s.snapshot import JOB_KINDS, build_snapshot
from gpualloc.model import Plan, Policy, Snapshot, Unscheduled
from gpualloc.solver import plan as solve
from gpualloc.solver.queues import choose_queue
from gpualloc.solver.topology import describe, spans
from gpualloc.solver.unblock import unblock


def _objects(path: str | None, kinds: tuple[str, ...], default_kind: str | None) -> list[Any]:
    if path is None:
        return []
    found = []
    for obj in load_objects(path):
        kind = obj.setdefault("kind", default_kind) if default_kind else obj.get("kind")
        if kind in kinds:
            found.append(obj)
    return found


def load_inputs(
    nodes: str, jobs: str, pods: str | None, policy: str | None, queues: str | None = None
) -> tuple[Snapshot, Any]:
    """Read the files into a snapshot and policy; errors name file, object and field.
    GPUQueue objects come from the queues file and the jobs file."""
    current = nodes
    try:
        node_objs = _objects(nodes, ("Node",), "Node")
        if not node_objs:
            raise InputError(f"{nodes}: no Node objects found")
        current = pods or ""
        pod_objs = _objects(pods, ("Pod",), "Pod")
        current = jobs
        job_objs = _objects(jobs, JOB_KINDS, None)
        current = policy or ""
        policies = _objects(policy, ("AllocationPolicy",), "AllocationPolicy")
        chosen = next(
            (p for p in policies if (p.get("metadata") or {}).get("name") == "default"),
            policies[0] if policies else None,
        )
        pol = policy_from_k8s(chosen)
        current = queues or jobs
        queue_objs = [
            *_objects(queues, ("GPUQueue",), "GPUQueue"),
            *_objects(jobs, ("GPUQueue",), None),
        ]
        model_queues = tuple(queue_from_k8s(o) for o in queue_objs)
        current = jobs
        snap = build_snapshot(node_objs, pod_objs, job_objs)
    except (SpecError, SizingWait) as err:
        raise InputError(f"{current}: {err}") from None
    return replace(snap, queues=model_queues), pol


def _in_queues(snap: Snapshot, policy: Policy) -> tuple[Snapshot, list[Unscheduled]]:
    """Each job's queue (spec.queue, the queue listing its namespace, the default queue);
    jobs refused or without a queue are left out with the reason."""
    if not snap.queues:
        return snap, []
    jobs, left_out = [], []
    for job in snap.jobs:
        choice = choose_queue(
            job.namespace, job.queue, job.priority, snap.queues, policy.default_queue
        )
        if choice.queue is None:
            why = f"refused: {choice.refused}" if choice.refused else str(choice.waiting)
            left_out.append(Unscheduled(job.key, why))
        else:
            jobs.append(replace(job, queue=choice.queue))
    return replace(snap, jobs=tuple(jobs)), left_out


def _known_levels(snap: Snapshot, policy: Policy) -> tuple[Snapshot, list[Unscheduled]]:
    """Jobs whose spec.topology names a level the policy does not list are refused (the
    operator reports them Invalid)."""
    jobs, left_out = [], []
    for job in snap.jobs:
        refused = unknown_level(job.topology, policy.topology_levels)
        if refused:
            left_out.append(Unscheduled(job.key, f"refused: {refused[0]}: {refused[1]}"))
        else:
            jobs.append(job)
    return replace(snap, jobs=tuple(jobs)), left_out


def _queue_lines(result: Plan) -> list[str]:
    lines = []
    for name, r in sorted(result.queues.items()):
        used = sum(r.usage.values())
        nominal = sum(r.nominal.values())
        borrowed = sum(r.borrowed.values())
        lines.append(
            f"queue {name}: {used}/{nominal} GPUs of nominal in use, {borrowed} borrowed, "
            f"{r.admitted} admitted, {r.pending} pending, fair share {r.fair_share:g}"
        )
    return lines


def _domains(result: Plan, snap: Snapshot, levels: tuple[str, ...]) -> dict[str, str]:
    """Job -> '1 rack (z/r1)': the domains each placed job got (with topology levels)."""
    nodes = {n.name: n for n in snap.nodes}
    found = {}
    for job in snap.jobs:
        span = spans(job, result.placements, nodes, levels)
        if span is not None and span[1]:
            found[job.key] = describe(*span)
    return found


def _table(
    result: Plan,
    snap: Snapshot,
    levels: tuple[str, ...] = (),
    unblocks: Mapping[str, str] | None = None,
) -> str:
    unblocks = unblocks or {}
    lines = [
        f"status {result.status}   objective {result.objective:g}   bound {result.bound:g}"
        f"   gap {result.gap:.2%}   solved in {result.solve_seconds:.2f}s",
        "",
    ]
    by_job: dict[str, list[str]] = defaultdict(list)
    gpus: dict[str, int] = defaultdict(int)
    for p in result.placements:
        by_job[p.job].append(p.node)
        gpus[p.job] += p.gpus
    domains = _domains(result, snap, levels)
    rows = [("JOB", "KIND", "PRIORITY", "PLACED", "GPUS", "NODES / REASON")]
    for job in sorted(snap.jobs, key=lambda j: (-j.priority, j.key)):
        if job.key in by_job:
            nodes = sorted(set(by_job[job.key]))
            rows.append(
                (
                    job.key,
                    job.kind,
                    str(job.priority),
                    f"{len(by_job[job.key])}/{job.replicas}",
                    str(gpus[job.key]),
                    ",".join(nodes) + (f"  in {domains[job.key]}" if job.key in domains else ""),
                )
            )
    for u in result.unscheduled:
        waiting = next((j for j in snap.jobs if j.key == u.job), None)
        if waiting is None:  # refused, or in no queue
            rows.append((u.job, "", "", "0", "0", "PENDING: " + u.reason))
            continue
        job = waiting
        rows.append(
            (u.job, job.kind, str(job.priority), f"0/{job.replicas}", "0", "PENDING: " + u.reason)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[5] for r in rows
    ]
    for e in result.evictions:
        lines.append(f"{'move' if e.moved_to else 'evict'} {e.job}: {e.reason}")
    if any(e.moved_to for e in result.evictions) and result.moves_status:
        lines.append(f"moves chosen: {result.moves_status} (OPTIMAL: none losing less work)")
    for key, answer in unblocks.items():
        lines.append(f"unblock {key}: {answer}")
    lines += _queue_lines(result)
    return "\n".join(lines)


@click.command("plan")
@click.option(
    "--nodes",
    required=True,
    type=click.Path(dir_okay=False),
    help="Nodes: `kubectl get nodes -o yaml` output.",
)
@click.option(
    "--jobs",
    required=True,
    type=click.Path(dir_okay=False),
    help="LLMTrainingJob / LLMInferenceJob objects (List or multi-document).",
)
@click.option(
    "--pods",
    type=click.Path(dir_okay=False),
    help="Pods already holding resources: `kubectl get pods -A -o yaml`.",
)
@click.option(
    "--policy",
    type=click.Path(dir_okay=False),
    help="An AllocationPolicy (the one named `default` is used).",
)
@click.option(
    "--queues",
    type=click.Path(dir_okay=False),
    help="GPUQueue objects (`kubectl get gq -o yaml`); the jobs file may hold them too.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0.1),
    help="Solver time limit in seconds (overrides the policy).",
)
@click.option(
    "--unblock-budget",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to spend, in the table, on what would let each waiting job run now "
    "(evictions, smaller shapes, other products, when capacity frees up); 0 = skip.",
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def plan_command(
    nodes: str,
    jobs: str,
    pods: str | None,
    policy: str | None,
    queues: str | None,
    time_limit: float | None,
    unblock_budget: float,
    output: str,
) -> None:
    """Show where gpualloc would place the jobs, globally and optimally, and why any wait.

    \b
    Example:
      kubectl get nodes -o yaml > nodes.yaml
      kubectl get pods -A -o yaml > pods.yaml
      kubectl get llmtrainingjobs,llminferencejobs -A -o yaml > jobs.yaml
      gpualloc plan --nodes nodes.yaml --pods pods.yaml --jobs jobs.yaml
      gpualloc plan --nodes nodes.yaml --jobs jobs.yaml --queues <(kubectl get gq -o yaml)
    """
    try:
        snap, pol = load_inputs(nodes, jobs, pods, policy, queues)
    except InputError as err:
        raise click.ClickException(str(err)) from None
    if time_limit is not None:
        pol = replace(pol, time_limit_seconds=time_limit)
    snap = replace(snap, now=time.time())  # running pods' ages: moves and lost work
    snap, refused = _known_levels(snap, pol)
    snap, left_out = _in_queues(snap, pol)
    left_out += refused
    result = solve(snap, pol)
    if left_out:
        waiting = sorted([*result.unscheduled, *left_out], key=lambda u: u.job)
        result = replace(result, unscheduled=tuple(waiting))
    if output == "json":
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        unblocks = _unblocks(snap, pol, result, unblock_budget)
        click.echo(_table(result, snap, pol.topology_levels, unblocks))


def _unblocks(snap: Snapshot, policy: Policy, result: Plan, budget: float) -> dict[str, str]:
    """What would let each waiting job run now, sharing `budget` seconds between them."""
    planned = {j.key for j in snap.jobs}
    waiting = [u.job for u in result.unscheduled if u.job in planned]
    found: dict[str, str] = {}
    deadline = time.monotonic() + budget
    for i, key in enumerate(waiting):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        answer = unblock(snap, policy, key, snap.now, left / (len(waiting) - i))
        found[key] = answer.message()
    return found


__all__ = ["plan_command"]
