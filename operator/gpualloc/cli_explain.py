"""`gpualloc explain`: what would let a waiting job run now, asked of a live cluster."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from gpualloc.cli_options import kubeconfig_option

KINDS = {  # what kubectl accepts for the two job kinds
    "LLMTrainingJob": ("ltj", "llmtrainingjob", "llmtrainingjobs"),
    "LLMInferenceJob": ("lij", "llminferencejob", "llminferencejobs"),
}


def _kind(text: str) -> str:
    for kind, aliases in KINDS.items():
        if text == kind or text.lower() in aliases:
            return kind
    raise click.BadParameter(
        f"unknown kind {text!r}: use ltj/<name> (LLMTrainingJob) or lij/<name> (LLMInferenceJob)",
        param_hint="JOB",
    )


@click.command("explain")
@click.argument("job", metavar="KIND/NAME")
@click.option("-n", "--namespace", default="default", show_default=True)
@kubeconfig_option
@click.option(
    "--budget",
    type=click.FloatRange(0.5, 600),
    default=20.0,
    show_default=True,
    help="Seconds of solving to spend on the answers (answers not reached are left out).",
)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def explain_command(
    job: str, namespace: str, kubeconfig: str | None, budget: float, output: str
) -> None:
    """Say what would let a waiting job run now, from the cluster as it is.

    \b
    It solves gpualloc's own model with the job forced in and reports:
      - the running jobs that would have to move or be evicted, with the GPU-hours they
        would lose (the fewest GPUs, proven when the solver says OPTIMAL);
      - changes to the job that fit now without evicting anything (fewer workers, another
        split of its GPUs, another GPU product);
      - when running jobs' estimatedGPUHours say enough GPUs free up.
    Example: gpualloc explain ltj/llama-sft -n team-a
    """
    kind_text, _, name = job.partition("/")
    if not name:
        raise click.BadParameter("expected KIND/NAME, e.g. ltj/llama-sft", param_hint="JOB")
    kind = _kind(kind_text)

    from gpualloc.k8s.client import Kube, load_config
    from gpualloc.k8s.convert import SizingWait, SpecError, policy_from_k8s
    from gpualloc.solver.unblock import unblock

    load_config(kubeconfig)
    kube = Kube(threads=1, user_agent="gpualloc-explain")
    target = next((o for o in kube.list_jobs() if _ref(o) == (kind, namespace, name)), None)
    if target is None:
        raise click.ClickException(f"{kind} {namespace}/{name} not found")
    try:
        snapshot, skipped = _live_snapshot(kube, target)
    except (SpecError, SizingWait) as err:
        _emit(output, {"job": f"{namespace}/{name}", "message": f"cannot be planned: {err}"})
        return
    policy = policy_from_k8s(kube.get_policy())
    key = f"{namespace}/{name}"
    model_job = next(j for j in snapshot.jobs if j.key == key)
    running = sum(1 for p in snapshot.pods if p.job == key)
    if running >= model_job.replicas:
        _emit(output, {"job": key, "message": f"running ({running} pods placed)"})
        return
    if skipped:
        click.echo(f"(left out {skipped} other jobs that cannot be planned)", err=True)
    answer = unblock(snapshot, policy, key, time.time(), budget_seconds=budget)
    _emit(output, {"job": key, **answer.as_status()})


def _live_snapshot(kube: Any, target: dict[str, Any]) -> tuple[Any, int]:
    """The cluster as the planner sees it. Other tenants' jobs that fail to convert are left
    out (the operator reports them on their own objects); the target's error is raised."""
    from dataclasses import replace

    from gpualloc.k8s.convert import SizingWait, SpecError, job_from_k8s
    from gpualloc.k8s.snapshot import build_snapshot

    snapshot = build_snapshot(kube.list_nodes(), kube.list_pods(), [target])
    others, skipped = [], 0
    for obj in kube.list_jobs():
        if _ref(obj) == _ref(target):
            continue
        try:
            others.append(job_from_k8s(obj, snapshot.nodes))
        except (SpecError, SizingWait):
            skipped += 1
    return replace(snapshot, jobs=(*snapshot.jobs, *others)), skipped


def _ref(obj: dict[str, Any]) -> tuple[object, ...]:
    meta = obj.get("metadata") or {}
    return obj.get("kind"), meta.get("namespace"), meta.get("name")


def _emit(output: str, answer: dict[str, Any]) -> None:
    if output == "json":
        json.dump(answer, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    click.echo(f"{answer['job']}: {answer['message']}")
    for victim in answer.get("evict", []):
        note = "" if victim["preemptible"] else " (not preemptible)"
        click.echo(
            f"  evict {victim['job']}: {victim['gpus']} GPUs, "
            f"{victim['gpuHoursLost']} GPU-h lost{note}"
        )
    for change in answer.get("alternatives", []):
        click.echo(f"  or run it {change}")
    if "freeAt" in answer:
        click.echo(f"  capacity expected at {answer['freeAt']} (from running jobs' estimates)")
    if answer.get("complete") is False:
        click.echo("  (budget ran out: some answers were not reached; raise --budget)")
