"""Replay the published FGD experiments' own samples and compare with their results, seed by seed.

Usage: python -m gpualloc.sim.verify_published [--lists default,...] [--seeds 42,...,51]
       [--policies fgd,best-fit] [--batch 8] [--out DIR]

Our protocol (`sim/openb.py`) draws its samples with Python's generator, so its per-seed
numbers differ from the published ones and only means can be compared. This check takes
the published runs' exact inputs instead: `published/order.go` (Go's standard library
only; needs `go` on PATH) redoes the published simulator's use of Go's math/rand and
prints the arrival order and the node naming of one run. Our policies then place those
arrivals on the nodes in that order, and each level is read as the published analysis
reads it (`merge_alloc_discrete.py`: the mean, over the arrivals whose arrived GPU request
rounds to the level, of the allocation rounded to 0.01%). `fgd` and `best-fit` reproduce
`fgd_allocation_results.csv` when they place every pod as the published simulator did;
`gpualloc` on the same inputs compares with the published FGD on the very same samples.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpualloc.model.devices import GpuNode, PodRequest
from gpualloc.sim.bench_sim import DATA, LISTS_ALL, NODES
from gpualloc.sim.openb import BatchPlannerBase, read_nodes, read_pods
from gpualloc.sim.policies import make_policy
from gpualloc.solver.devices.devicestate import DeviceState

ORDER_GO = Path(__file__).parent / "published" / "order.go"
RESULTS = DATA / "openb" / "fgd_allocation_results.csv"
PUBLISHED_NAME = {"fgd": "06-FGD", "best-fit": "05-BestFit", "gpualloc": "06-FGD"}
LEVELS = tuple(range(90, 131, 5))


def build_order_tool(workdir: Path) -> Path:
    """Compile published/order.go once (Go's standard library only)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise SystemExit("verify_published needs the Go toolchain (`go` on PATH)")
    binary = workdir / "order"
    subprocess.run([go, "build", "-o", str(binary), str(ORDER_GO)], check=True, cwd=workdir)
    return binary


def published_inputs(
    tool: Path, pod_list: Path, seed: int, nodes: Sequence[GpuNode]
) -> tuple[list[int], list[GpuNode]]:
    """The published run's arrivals (row indices) and its nodes in name order."""
    gpus = sum(n.gpus for n in nodes)
    args = [str(tool), str(pod_list), str(seed), str(len(nodes)), str(gpus)]
    lines = subprocess.run(args, check=True, capture_output=True, text=True).stdout.split("\n")
    order = [int(x) for x in lines[0].split(",")]
    prefix = [int(x) for x in lines[1].split(",")]
    return order, [nodes[i] for i in sorted(range(len(nodes)), key=prefix.__getitem__)]


def published_reading(arrived: Sequence[int], used: Sequence[int], gpus: int) -> dict[int, float]:
    """Allocation % per level as the published analysis reads it (see the module doc)."""
    pairs = zip(arrived, used, strict=True)
    rows = [(round(a / gpus / 10), round(u / gpus / 10, 2)) for a, u in pairs]
    out: dict[int, float] = {}
    for level in LEVELS:
        values = [v for r, v in rows if r == level] or [
            v for r, v in rows if level - 1 <= r <= level + 1
        ]
        if values:
            out[level] = round(statistics.mean(values), 2)
    return out


def replay_published(
    pods: Sequence[PodRequest],
    order: Sequence[int],
    nodes: Sequence[GpuNode],
    policy: str,
    batch: int,
) -> dict[int, float]:
    """Place the published arrivals in order; allocation % per level."""
    state = DeviceState(nodes)
    placer = make_policy(policy, pods, state)
    arrivals = [pods[i] for i in order]
    arrived: list[int] = []
    used: list[int] = []
    asked = allocated = 0
    step = batch if isinstance(placer, BatchPlannerBase) else 1
    for start in range(0, len(arrivals), step):
        chunk = arrivals[start : start + step]
        if isinstance(placer, BatchPlannerBase):
            where = placer.plan_batch(state, chunk)
        else:
            where = []
            for pod in chunk:
                spot = placer.choose(state, pod)
                if spot is not None:
                    state.place(pod, spot)
                where.append(spot)
        for pod, spot in zip(chunk, where, strict=True):
            if spot is not None and isinstance(placer, BatchPlannerBase):
                state.place(pod, spot)
            asked += pod.gpu_request_milli
            allocated += pod.gpu_request_milli if spot is not None else 0
            arrived.append(asked)
            used.append(allocated)
    return published_reading(arrived, used, state.total_gpu_milli // 1000)


def published_results(pod_list: str, policy: str) -> dict[int, dict[int, float]]:
    """seed -> level -> published allocation %."""
    out: dict[int, dict[int, float]] = {}
    with open(RESULTS, newline="") as f:
        for row in csv.DictReader(f):
            if row["workload"] == f"openb_pod_list_{pod_list}" and (
                row["sc_policy"] == PUBLISHED_NAME[policy]
            ):
                out[int(row["seed"])] = {lv: float(row[str(lv)]) for lv in LEVELS}
    return out


def summarize(runs: list[dict[str, Any]]) -> str:
    """Markdown: per list and policy, seeds reproduced exactly and the mean difference."""
    lines = [
        "| pod list | policy | seeds identical at all 9 levels | largest difference"
        " | mean unallocated % at 90 / 95 / 100 / 110 / 130 (ours - published) |",
        "|---|---|---:|---:|---|",
    ]
    order = {name: i for i, name in enumerate(LISTS_ALL)}
    keys = sorted(
        {(r["pod_list"], r["policy"]) for r in runs}, key=lambda k: (order.get(k[0], 99), k)
    )
    for pod_list, policy in keys:
        mine = [r for r in runs if r["pod_list"] == pod_list and r["policy"] == policy]
        same = sum(all(r["ours"][lv] == r["published"][lv] for lv in r["ours"]) for r in mine)
        worst = max(abs(r["ours"][lv] - r["published"][lv]) for r in mine for lv in r["ours"])
        cells = []
        for lv in (90, 95, 100, 110, 130):
            ours = 100 - statistics.mean(r["ours"][lv] for r in mine)
            theirs = 100 - statistics.mean(r["published"][lv] for r in mine)
            cells.append(f"{ours:.2f} ({ours - theirs:+.2f})")
        lines.append(
            f"| {pod_list} | {policy} | {same}/{len(mine)} | {worst:.2f} | {' / '.join(cells)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lists", default=",".join(LISTS_ALL))
    parser.add_argument("--seeds", default="42,43,44,45,46,47,48,49,50,51")
    parser.add_argument("--policies", default="fgd,best-fit")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="bench-results/published")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nodes = read_nodes(NODES)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tool = build_order_tool(Path(tmp))
        for pod_list in args.lists.split(","):
            path = DATA / "openb" / f"openb_pod_list_{pod_list}.csv"
            pods = read_pods(path)
            for policy in args.policies.split(","):
                published = published_results(pod_list, policy)
                for seed in (int(s) for s in args.seeds.split(",")):
                    started = time.monotonic()
                    order, named = published_inputs(tool, path, seed, nodes)
                    ours = replay_published(pods, order, named, policy, args.batch)
                    run = {
                        "pod_list": pod_list,
                        "policy": policy,
                        "seed": seed,
                        "ours": ours,
                        "published": published[seed],
                        "seconds": round(time.monotonic() - started, 1),
                    }
                    runs.append(run)
                    diff = max(abs(ours[lv] - published[seed][lv]) for lv in ours)
                    print(
                        f"{pod_list:12} {policy:9} seed {seed}: largest difference"
                        f" {diff:.2f} ({run['seconds']} s)",
                        file=sys.stderr,
                    )
    (out / "verify-published.json").write_text(json.dumps(runs, indent=1))
    table = summarize(runs)
    (out / "verify-published.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
