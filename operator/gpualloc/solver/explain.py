"""Why a job was not placed, in words a person can act on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from gpualloc.model import Job, Node, Placement
from gpualloc.solver.capacity import Free
from gpualloc.solver.eligibility import rejection


def _products(job: Job) -> str:
    products = job.requirements.products
    return " of " + "|".join(products) if products else ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _unit(job: Job) -> str:
    return "worker" if job.kind == "LLMTrainingJob" else "replica"


def no_eligible_node(job: Job, nodes: Sequence[Node]) -> str | None:
    """A reason when no node could ever take the job, whatever else runs."""
    need = job.gpus_per_replica
    if not nodes:
        return "the cluster has no GPU nodes"
    largest = max(n.gpus for n in nodes)
    if need > largest:
        return f"needs {need} GPUs on one node; the largest node has {largest}"
    big = [n for n in nodes if n.gpus >= need]
    rejections = Counter(rejection(job.requirements, n) for n in big)
    if rejections[None]:
        return None
    req = job.requirements
    if rejections["product"] == len(big):
        have = sorted({n.product for n in big})
        return (
            f"no node allows its products ({', '.join(req.products)}); "
            f"nodes with {need}+ GPUs have {', '.join(have)}"
        )
    if rejections["gpu memory"] and not rejections["product"] and len(rejections) == 1:
        most = max(n.gpu_memory_mib for n in big)
        return f"needs {req.min_gpu_memory_mib} MiB per GPU; the most any node has is {most}"
    parts = [f"{_plural(count, 'node')}: {why}" for why, count in rejections.most_common()]
    return f"no node with {need}+ GPUs accepts it ({'; '.join(parts)})"


def why_unscheduled(
    job: Job,
    needed: int,
    nodes: Sequence[Node],
    free: dict[str, Free],
    placements: Sequence[Placement],
    jobs_by_key: dict[str, Job],
    solver_status: str,
) -> str:
    """The most specific reason, from never-fits to was-outranked."""
    static = no_eligible_node(job, nodes)
    if static:
        return static
    need = job.gpus_per_replica
    usable = [n for n in nodes if rejection(job.requirements, n) is None]
    slots = sum(free[n.name].gpus // need for n in usable)
    gang = f"needs {needed} {_unit(job)}{'s' if needed != 1 else ''} x {need} GPUs{_products(job)}"
    if slots < needed:
        have = sum(1 for n in usable if free[n.name].gpus >= need)
        cpu = [free[n.name].cpu_milli for n in usable if free[n.name].gpus >= need]
        if have and job.cpu_milli > max(cpu):
            return f"{gang}; nodes with the GPUs free have at most {max(cpu) / 1000:g} CPU free"
        return f"{gang}; only {_plural(have, 'node')} {'has' if have == 1 else 'have'} {need} free"
    names = {n.name for n in usable}
    higher = equal = 0
    for p in placements:
        other = jobs_by_key.get(p.job)
        if p.node not in names or other is None or other.key == job.key:
            continue
        if other.priority > job.priority:
            higher += p.gpus
        elif other.priority == job.priority:
            equal += p.gpus
    if solver_status not in ("OPTIMAL", "FEASIBLE"):
        return f"{gang}; the solver found no plan in its time limit ({solver_status})"
    if higher:
        return f"{gang}; outranked by higher-priority jobs using {higher} GPUs on its nodes"
    if equal:
        return f"{gang}; outranked by older or larger jobs of equal priority using {equal} GPUs"
    return f"{gang}; its nodes' free GPUs went to a better overall plan"
