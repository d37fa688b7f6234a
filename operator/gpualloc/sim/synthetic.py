"""Seeded synthetic clusters and workloads for planner benchmarks (pure)."""

from __future__ import annotations

import random

from gpualloc.model import Job, JobKind, Node, NodeRequirements, RunningPod, Snapshot

PRODUCTS = {
    "NVIDIA-H100-80GB-HBM3": 81559,
    "NVIDIA-A100-SXM4-80GB": 81920,
    "NVIDIA-A100-SXM4-40GB": 40960,
}


def synthetic_snapshot(nodes: int, jobs: int, seed: int = 0, load: float = 0.5) -> Snapshot:
    """`nodes` x 8 GPUs of three products, about `load` of the GPUs already running work,
    and `jobs` pending jobs: inference replicas of 1-4 GPUs and training gangs of 1-64 GPUs,
    at three priority levels, some restricted to products; demand exceeds free capacity."""
    rng = random.Random(seed)
    names = list(PRODUCTS)
    cluster = []
    pods = []
    for i in range(nodes):
        product = names[i % len(names)]
        node = Node(
            f"node-{i:05d}",
            product,
            8,
            PRODUCTS[product],
            128_000,
            1_048_576,
            labels={"nvidia.com/gpu.product": product},
        )
        cluster.append(node)
        used = rng.choice([0, 0, 8, 8, 4, 6, 2, 1]) if rng.random() < load * 1.6 else 0
        if used:
            pods.append(
                RunningPod(f"busy/{node.name}", node.name, used, 8_000 * used, 65_536 * used)
            )
    pending = []
    for j in range(jobs):
        priority = rng.choice([0, 0, 10, 100])
        products = (rng.choice(names),) if rng.random() < 0.3 else ()
        req = NodeRequirements(products=products)
        if rng.random() < 0.4:
            gpus = rng.choice([1, 1, 2, 4])
            replicas = rng.randint(1, 4)
            pending.append(
                Job(
                    f"serve/inf-{j}",
                    JobKind.INFERENCE,
                    priority,
                    replicas,
                    1,
                    gpus,
                    8_000 * gpus,
                    65_536 * gpus,
                    created=j,
                    requirements=req,
                )
            )
        else:
            total = rng.choice([1, 2, 4, 8, 8, 16, 32, 64])
            gpus = min(8, total)
            workers = total // gpus
            pending.append(
                Job(
                    f"train/job-{j}",
                    JobKind.TRAINING,
                    priority,
                    workers,
                    workers,
                    gpus,
                    8_000 * gpus,
                    65_536 * gpus,
                    preemptible=rng.random() < 0.3,
                    created=j,
                    requirements=req,
                )
            )
    return Snapshot(tuple(cluster), tuple(pods), tuple(pending))
