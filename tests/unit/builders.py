"""Literal scenario builders and a plan checker for the planner's unit tests."""

from __future__ import annotations

from collections import Counter, defaultdict

from gpualloc.model import Job, JobKind, Node, NodeRequirements, Plan, RunningPod, Snapshot
from gpualloc.solver.capacity import free_capacity, usage_by_node
from gpualloc.solver.eligibility import eligible

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"


def node(name: str, gpus: int = 8, product: str = H100, **kw: object) -> Node:
    memory = 81559 if product == H100 else 40960
    args: dict[str, object] = {
        "gpu_memory_mib": memory,
        "cpu_milli": 96_000,
        "memory_mib": 1 << 20,
        **kw,
    }
    return Node(name, product, gpus, **args)  # type: ignore[arg-type]


def gang(
    name: str,
    workers: int,
    gpus: int,
    priority: int = 0,
    created: float = 0.0,
    minimum: int | None = None,
    **kw: object,
) -> Job:
    return Job(
        f"ns/{name}",
        JobKind.TRAINING,
        priority,
        workers,
        workers if minimum is None else minimum,
        gpus,
        created=created,
        **kw,
    )  # type: ignore[arg-type]


def inference(
    name: str,
    replicas: int,
    gpus: int,
    priority: int = 0,
    created: float = 0.0,
    minimum: int = 1,
    **kw: object,
) -> Job:
    return Job(
        f"ns/{name}", JobKind.INFERENCE, priority, replicas, minimum, gpus, created=created, **kw
    )  # type: ignore[arg-type]


def running(job: str, node_name: str, gpus: int, replica: int = 0, **kw: object) -> RunningPod:
    return RunningPod(
        f"ns/{job}-{replica}", node_name, gpus, job=f"ns/{job}", replica=replica, **kw
    )  # type: ignore[arg-type]


def snap(nodes: list[Node], jobs: list[Job], pods: list[RunningPod] | None = None) -> Snapshot:
    return Snapshot(tuple(nodes), tuple(pods or ()), tuple(jobs))


def only(products: str) -> NodeRequirements:
    return NodeRequirements(products=(products,))


def gpus_by_job(plan: Plan) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for p in plan.placements:
        total[p.job] += p.gpus
    return dict(total)


def nodes_of(plan: Plan, job: str) -> list[str]:
    return sorted(p.node for p in plan.placements if p.job == f"ns/{job}")


def assert_valid(s: Snapshot, plan: Plan) -> None:
    """Every hard constraint, checked on the decoded plan node by node."""
    jobs = {j.key: j for j in s.jobs}
    nodes = {n.name: n for n in s.nodes}
    evicted = {e.job for e in plan.evictions}
    kept = [p for p in s.pods if p.job not in evicted]
    usage = usage_by_node(kept)
    new = [
        p
        for p in plan.placements
        if (p.job, p.node, p.replica) not in {(q.job, q.node, q.replica) for q in s.pods}
    ]
    load: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for p in new:
        job = jobs[p.job]
        n = nodes[p.node]
        assert eligible(job.requirements, n), f"{p.job} on ineligible node {p.node}"
        assert p.gpus == job.gpus_per_replica
        load[p.node][0] += p.gpus
        load[p.node][1] += job.cpu_milli
        load[p.node][2] += job.memory_mib
    for name, (g, c, m) in load.items():
        free = free_capacity(nodes[name], usage.get(name))
        assert g <= free.gpus and c <= free.cpu_milli and m <= free.memory_mib, name
    counts = Counter(p.job for p in plan.placements)
    for key, count in counts.items():
        assert jobs[key].min_replicas <= count <= jobs[key].replicas, key
        replicas = [p.replica for p in plan.placements if p.job == key]
        assert len(set(replicas)) == len(replicas), f"duplicate replica index in {key}"
    unscheduled = {u.job for u in plan.unscheduled}
    for key in jobs:
        assert (key in counts) != (key in unscheduled), f"{key} must be placed xor unscheduled"
