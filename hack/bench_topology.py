"""Topology-aware placement benchmark (issue 13 section 1): `make bench-topology`.

On the planner benchmark's seeded synthetic clusters (gpualloc.sim.synthetic: 8-GPU nodes of
three products, about half the GPUs busy, pending inference replicas and training gangs at
three priorities) with every node labelled in a 4-level topology, widest first:
  zone (2) > block (4 per zone) > rack (4 per block, ~31 nodes) > NVLink clique (8 nodes),
and topology requests on the multi-node gangs (2 workers: required clique or rack, or
preferred rack; 4: required rack or preferred rack; 8: required block, preferred rack;
inference jobs of 2+ replicas: preferred rack). It measures
 (a) the planner's wall and CPU seconds, status and allocation gap with the topology requests
     and on the same instance without them (the speed target: 1,000 nodes in <= 2 s proven);
 (b) the share of placed multi-node gangs inside one domain of the level they ask for (the
     finest), for gpualloc with topology, gpualloc without it, and topology-unaware greedy
     best-fit; and the GPUs each places (what `required` costs).
Writes JSON to bench-results/topology.json (see docs/topology-benchmark.md).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpualloc.model import Job, JobKind, Node, Plan, Policy, Snapshot, TopologyRequest
from gpualloc.sim.synthetic import synthetic_snapshot
from gpualloc.solver import plan
from gpualloc.solver.baselines import plan_greedy
from gpualloc.solver.cpsat import AllocationModel
from gpualloc.solver.instance import build_instance
from gpualloc.solver.topology import respects_required, spans
from gpualloc.solver.topology_greedy import greedy_placements

ROOT = Path(__file__).resolve().parent.parent
ZONE = "topology.kubernetes.io/zone"
BLOCK = "network.example.com/block"
RACK = "topology.kubernetes.io/rack"
CLIQUE = "nvidia.com/gpu.clique"
LEVELS = (ZONE, BLOCK, RACK, CLIQUE)


def labelled(node: Node, index: int, nodes: int) -> Node:
    """Contiguous domains by index (nodes sorted by product: a rack holds one product): 2 zones,
    4 blocks each, 4 racks each, cliques of 8 nodes."""
    rack = index * 32 // nodes
    labels = {
        **node.labels,
        ZONE: f"z{rack // 16}",
        BLOCK: f"b{rack // 4 % 4}",
        RACK: f"r{rack % 4}",
        CLIQUE: f"c{index // 8}",
    }
    return replace(node, labels=labels)


def request(job: Job, rng: random.Random, finest: str) -> TopologyRequest:
    if job.kind == JobKind.INFERENCE:
        return TopologyRequest(preferred=RACK) if job.replicas >= 2 else TopologyRequest()
    if job.replicas == 2:
        narrow = CLIQUE if finest == CLIQUE else RACK
        return rng.choice(
            [TopologyRequest(required=narrow), TopologyRequest(required=RACK)] * 2
            + [TopologyRequest(preferred=RACK)]
        )
    if job.replicas == 4:
        return rng.choice([TopologyRequest(required=RACK), TopologyRequest(preferred=RACK)])
    if job.replicas >= 8:
        return TopologyRequest(required=BLOCK, preferred=RACK)
    return TopologyRequest()


def instance(nodes: int, jobs: int, seed: int, finest: str = CLIQUE) -> tuple[Snapshot, Snapshot]:
    """(with topology requests, the same without); `finest`: the narrowest level requested."""
    base = synthetic_snapshot(nodes, jobs, seed=seed)
    rng = random.Random(seed)
    ordered = sorted(base.nodes, key=lambda n: (n.product, n.name))
    cluster = tuple(labelled(n, i, nodes) for i, n in enumerate(ordered))
    aware = tuple(replace(j, topology=request(j, rng, finest)) for j in base.jobs)
    return (
        replace(base, nodes=cluster, jobs=aware),
        replace(
            base, nodes=cluster, jobs=tuple(replace(j, topology=TopologyRequest()) for j in aware)
        ),
    )


def timed(snapshot: Snapshot, policy: Policy) -> tuple[Plan, float, float]:
    wall, cpu = time.monotonic(), time.process_time()
    result = plan(snapshot, policy)
    return result, time.monotonic() - wall, time.process_time() - cpu


def inside_one_domain(snapshot: Snapshot, result: Plan, aware: Snapshot) -> dict[str, Any]:
    """Placed multi-node gangs (topology requests read from `aware`) inside one domain."""
    nodes = {n.name: n for n in snapshot.nodes}
    asked = {j.key: j for j in aware.jobs if j.topology}
    placed = defaultdict(int)
    for p in result.placements:
        placed[p.job] += 1
    gangs = [asked[k] for k, count in placed.items() if k in asked and count >= 2]
    by_level: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    domains = 0
    for job in gangs:
        found = spans(job, result.placements, nodes, LEVELS)
        assert found is not None
        level, where = found
        by_level[level][0] += len(where) == 1
        by_level[level][1] += 1
        domains += len(where)
    inside = sum(v[0] for v in by_level.values())
    return {
        "gangs": len(gangs),
        "inside_one_domain": inside,
        "share": round(inside / len(gangs), 4) if gangs else None,
        "mean_domains": round(domains / len(gangs), 3) if gangs else None,
        "by_level": {
            k.rsplit("/", 1)[-1]: {"inside": v[0], "gangs": v[1]} for k, v in by_level.items()
        },
        "gpus_placed": sum(p.gpus for p in result.placements),
        "required_respected": respects_required(aware.jobs, result.placements, nodes, LEVELS),
    }


def model_size(snapshot: Snapshot, policy: Policy, result: Plan) -> dict[str, Any]:
    """The CP-SAT model's size, and whether the plan is topology-aware best-fit's (the plan
    kept when CP-SAT found none, or a worse one, in the time limit)."""
    inst = build_instance(snapshot, policy)
    model = AllocationModel(inst, policy)
    running = {(p.job, p.node) for p in snapshot.pods}
    new = Counter((p.job, p.node) for p in result.placements if (p.job, p.node) not in running)
    greedy = Counter(
        (inst.jobs[j].job.key, node)
        for j, nodes in greedy_placements(inst).items()
        for node in nodes
    )
    return {
        "node_classes": len(inst.classes),
        "shapes": len(inst.shapes),
        "variables": len(model.model.proto.variables),
        "constraints": len(model.model.proto.constraints),
        "plan_is_topology_best_fit": bool(new) and new == greedy,
    }


def run_case(nodes: int, jobs: int, limit: float, seed: int, finest: str) -> dict[str, Any]:
    aware, plain = instance(nodes, jobs, seed, finest)
    policy = Policy(time_limit_seconds=limit, topology_levels=LEVELS)
    row: dict[str, Any] = {
        "nodes": nodes,
        "pending_jobs": jobs,
        "seed": seed,
        "finest_level_requested": finest.rsplit("/", 1)[-1],
        "time_limit_seconds": limit,
        "jobs_with_topology": sum(1 for j in aware.jobs if j.topology),
        "running_pods": len(aware.pods),
    }
    for name, snap in (("topology", aware), ("no_topology", plain)):
        result, wall, cpu = timed(snap, policy)
        row[name] = {
            "status": result.status,
            "wall_seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "allocation_gap": round(result.gap, 6),
            **model_size(snap, policy, result),
            **inside_one_domain(snap, result, aware),
        }
    started = time.process_time()
    greedy = plan_greedy(plain, "best-fit", explain=False)
    row["best_fit"] = {
        "cpu_seconds": round(time.process_time() - started, 3),
        **inside_one_domain(plain, greedy, aware),
    }
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument(
        "--finest", choices=["clique", "rack"], default="clique", help="narrowest level asked for"
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "topology.json"))
    args = parser.parse_args()
    rows = []
    for jobs in args.jobs:
        for seed in range(1, args.seeds + 1):
            print(
                f"topology bench: {args.nodes} nodes, {jobs} jobs, seed {seed} ...", file=sys.stderr
            )
            finest = CLIQUE if args.finest == "clique" else RACK
            rows.append(run_case(args.nodes, jobs, args.time_limit, seed, finest))
            print(json.dumps(rows[-1]), file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "topology", "levels": LEVELS, "argv": sys.argv[1:], "cases": rows}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
