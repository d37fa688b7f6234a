"""End-to-end operator benchmark on the local control plane (`make bench-operator`).

A cluster of 200 kwok nodes x 8 GPUs gets a burst of 500 jobs (1,000+ pods): gangs of 1-4
workers x 8 GPUs and inference jobs of 1-4 replicas x 1-4 GPUs, about 1.1 x the GPUs.
Measured for gpualloc (operator as a process): time from the burst to all placeable pods
bound, pods bound per second, the operator's peak RSS and CPU time. Then, on the same cluster
and the same pods without gpualloc (plain pods, the real kube-scheduler): its time, and the
GPUs it strands in half-placed gangs. Bind times come from a pod watch (polling would load
the apiserver being measured); each run also records a timeline of pods created and bound.
Results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO / "tests" / "cluster"))
import localcluster  # noqa: E402
from operator_harness import OperatorProcess  # noqa: E402

from gpualloc.controller.podwatch import PodWatch  # noqa: E402
from gpualloc.k8s.client import Kube  # noqa: E402

NAMESPACE = "bench"


def workload(jobs: int, seed: int) -> list[dict[str, Any]]:
    """About 2.3 pods and 4 GPUs per job: 500 jobs ask for ~1,150 pods and ~1.3x the GPUs."""
    rng = random.Random(seed)
    out = []
    for i in range(jobs):
        if rng.random() < 0.3:
            out.append(
                {
                    "kind": "LLMTrainingJob",
                    "name": f"train-{i}",
                    "count": rng.randint(2, 4),
                    "gpus": rng.choice([1, 2, 4, 8]),
                    "priority": rng.choice([0, 10, 100]),
                }
            )
        else:
            out.append(
                {
                    "kind": "LLMInferenceJob",
                    "name": f"serve-{i}",
                    "count": rng.randint(1, 3),
                    "gpus": rng.choice([1, 1, 2, 2, 4]),
                    "priority": rng.choice([0, 10, 1000]),
                }
            )
    return out


def job_object(w: dict[str, Any]) -> dict[str, Any]:
    count, gpus = (
        ("workers", "gpusPerWorker")
        if w["kind"] == "LLMTrainingJob"
        else ("replicas", "gpusPerReplica")
    )
    spec = {
        "priority": w["priority"],
        count: w["count"],
        gpus: w["gpus"],
        "template": {"spec": {"containers": [{"name": "main", "image": "example/llm:1"}]}},
    }
    if w["kind"] == "LLMInferenceJob":
        spec["minReplicas"] = w["count"]  # the same all-or-nothing as the baseline counts
        spec["maxReplicas"] = w["count"]
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": w["kind"],
        "metadata": {"name": w["name"], "namespace": NAMESPACE},
        "spec": spec,
    }


def plain_pods(w: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{w['name']}-{i}",
                "namespace": NAMESPACE,
                "labels": {"bench/job": w["name"]},
            },
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "example/llm:1",
                        "resources": {"limits": {"nvidia.com/gpu": str(w["gpus"])}},
                    }
                ]
            },
        }
        for i in range(w["count"])
    ]


def list_pods(core: Any) -> list[dict[str, Any]]:
    """The benchmark's pods as plain JSON (the client's models are slow for 1,000+)."""
    resp = core.list_namespaced_pod(NAMESPACE, _preload_content=False)
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return items


def bound_pods(core: Any) -> list[dict[str, Any]]:
    return [p for p in list_pods(core) if p["spec"].get("nodeName")]


def gpus_of(pod: dict[str, Any]) -> int:
    return int(pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])


def wait_stable(fn: Any, settle: float, timeout: float) -> tuple[Any, float]:
    """Poll fn() until its value stops changing for `settle` s; returns (value, time it
    last changed, relative to the call)."""
    start = time.monotonic()
    last, changed = None, start
    while time.monotonic() - start < timeout:
        value = fn()
        if value != last:
            last, changed = value, time.monotonic()
        elif time.monotonic() - changed >= settle:
            break
        time.sleep(0.25)
    return last, changed - start


class BindTimes:
    """The benchmark's pods as the operator's own pod watch sees them, with the time each was
    first seen bound.

    A watch costs the apiserver next to nothing (every event is encoded once for all
    watchers), where polling LISTs of 1,000+ pods would slow the cluster being measured."""

    def __init__(self, api: Any) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.bound_at: dict[str, float] = {}
        self.created_at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.watch = PodWatch(Kube(api), self._seen)
        self.watch.start()
        if not self.watch.listed.wait(60):
            raise TimeoutError("the pod watch did not list the pods")

    def close(self) -> None:
        """Stop watching (the next phase is measured without this watcher's load)."""
        self.watch.stop.set()

    def _seen(self, event_type: str, pod: dict[str, Any]) -> None:
        meta, at = pod["metadata"], time.monotonic()
        if meta.get("namespace") != NAMESPACE:
            return
        name = meta["name"]
        with self.lock:
            if event_type == "DELETED":
                self.pods.pop(name, None)
                self.bound_at.pop(name, None)
                self.created_at.pop(name, None)
                return
            self.pods[name] = pod
            self.created_at.setdefault(name, at)
            if pod["spec"].get("nodeName"):
                self.bound_at.setdefault(name, at)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.pods.values())

    def last_bind(self) -> float | None:
        with self.lock:
            return max(self.bound_at.values(), default=None)

    def timeline(self, start: float, step: float = 0.5) -> list[tuple[float, int, int]]:
        """(seconds, pods created, pods bound) every `step` seconds from `start`."""
        with self.lock:
            created, bound = sorted(self.created_at.values()), sorted(self.bound_at.values())
        end = max([*created, *bound], default=start)
        out, t = [], start
        while t < end + step:
            out.append(
                (
                    round(t - start, 2),
                    sum(1 for c in created if c <= t),
                    sum(1 for b in bound if b <= t),
                )
            )
            t += step
        return out


def wait_until(
    done: Any, start: float, timeout: float, watch: BindTimes, settle: float = 6.0
) -> float:
    """Seconds from `start` to the last bind, once done(pods) holds and no pod has been bound
    for `settle` seconds (a later round may still place more)."""
    while True:
        now = time.monotonic()
        if now - start > timeout:
            raise TimeoutError("benchmark did not settle")
        last = watch.last_bind() or start
        if now - last >= settle and done(watch.snapshot()):
            return last - start
        time.sleep(0.25)


def gpualloc_done(custom: Any, pods: list[dict[str, Any]]) -> bool:
    """Every job decided (placed or explained) and every placed pod bound."""
    placed = 0
    for plural in ("llmtrainingjobs", "llminferencejobs"):
        for job in custom.list_namespaced_custom_object(
            "gpualloc.io", "v1alpha1", NAMESPACE, plural
        )["items"]:
            phase = (job.get("status") or {}).get("phase")
            if phase in (None, "Pending"):
                return False
            if phase in ("Allocated", "Running"):
                placed += job["status"]["placed"]
    return sum(1 for p in pods if p["spec"].get("nodeName")) >= placed


def scheduler_done(pods: list[dict[str, Any]]) -> bool:
    """Every pod bound or marked unschedulable by kube-scheduler."""
    for pod in pods:
        if pod["spec"].get("nodeName"):
            continue
        conds = {c["type"]: c for c in pod.get("status", {}).get("conditions") or []}
        if "PodScheduled" not in conds or conds["PodScheduled"]["status"] != "False":
            return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(state: Path, jobs: int, seed: int, baseline: bool = True) -> dict[str, Any]:
    cluster = localcluster.Cluster(state)
    kubectl = [str(cluster.bin / "kubectl"), "--kubeconfig", str(cluster.kubeconfig)]
    subprocess.run(
        [*kubectl, "apply", "--server-side", "-f", str(REPO / "crds")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
        check=True,
        capture_output=True,
    )
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 16
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    # a namespace left by an earlier run must be gone before this one starts
    subprocess.run(
        [
            *kubectl,
            "delete",
            "namespace",
            NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=300s",
        ],
        capture_output=True,
    )
    subprocess.run([*kubectl, "create", "namespace", NAMESPACE], check=True, capture_output=True)
    time.sleep(2)  # default ServiceAccount
    w = workload(jobs, seed)
    gpus_total = sum(
        int(n.status.allocatable.get("nvidia.com/gpu", 0)) for n in core.list_node().items
    )
    demand = sum(x["count"] * x["gpus"] for x in w)
    pods_total = sum(x["count"] for x in w)

    # -- gpualloc (a 2 s solver budget per round, as in the planner benchmark)
    policy = {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "AllocationPolicy",
        "metadata": {"name": "default"},
        "spec": {"solver": {"timeLimitSeconds": 2}, "debounceSeconds": 0.5},
    }
    subprocess.run(
        [*kubectl, "apply", "-f", "-"],
        input=json.dumps(policy),
        text=True,
        check=True,
        capture_output=True,
    )
    logs = state / "logs"
    op = OperatorProcess(cluster.kubeconfig, logs, "bench-operator").start()
    op.wait_leading()
    plural = {"LLMTrainingJob": "llmtrainingjobs", "LLMInferenceJob": "llminferencejobs"}
    watch = BindTimes(api)
    cpu_before = cpu_seconds(op.proc.pid) if op.proc else 0.0
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda x: custom.create_namespaced_custom_object(
                    "gpualloc.io", "v1alpha1", NAMESPACE, plural[x["kind"]], job_object(x)
                ),
                w,
            )
        )
    created = time.monotonic() - t0
    elapsed = wait_until(lambda pods: gpualloc_done(custom, pods), t0, 600, watch)
    watch.close()
    bound = bound_pods(core)
    count = len(bound)
    ours = {
        "pods_bound": count,
        "seconds_to_all_bound": round(elapsed, 2),
        "pods_bound_per_second": round(count / elapsed, 1) if elapsed else None,
        "jobs_create_seconds": round(created, 2),
        "operator_peak_rss_mib": round(peak_rss_mib(op.proc.pid), 1) if op.proc else None,
        "operator_cpu_seconds": round(cpu_seconds(op.proc.pid) - cpu_before, 2)
        if op.proc
        else None,
        "gpus_bound": sum(gpus_of(p) for p in bound),
        "metrics_rounds": op.metric("gpualloc_rounds_total"),
        "timeline_seconds_created_bound": watch.timeline(t0),
    }
    op.stop()
    subprocess.run(
        [
            *kubectl,
            "delete",
            "llmtrainingjobs,llminferencejobs",
            "--all",
            "-n",
            NAMESPACE,
            "--wait=false",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*kubectl, "delete", "pods", "--all", "-n", NAMESPACE, "--grace-period=0", "--force"],
        capture_output=True,
    )
    wait_stable(lambda: len(list_pods(core)), settle=3, timeout=300)
    summary = {
        "benchmark": "operator",
        "nodes": len(core.list_node().items),
        "gpus": gpus_total,
        "jobs": jobs,
        "pods": pods_total,
        "gpus_requested": demand,
        "seed": seed,
        "gpualloc": ours,
    }
    if not baseline:
        return summary

    # -- plain kube-scheduler, the same pods, no gates; timed from the first create, as the
    # gpualloc run is timed from the first job create
    pods = [p for x in w for p in plain_pods(x)]
    watch = BindTimes(api)
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: core.create_namespaced_pod(NAMESPACE, p), pods))
    elapsed = wait_until(scheduler_done, t0, 600, watch)
    watch.close()
    bound = bound_pods(core)
    count = len(bound)
    by_job: dict[str, list[Any]] = defaultdict(list)
    for p in bound:
        by_job[p["metadata"]["labels"]["bench/job"]].append(p)
    sizes = {x["name"]: x for x in w}
    stranded = sum(
        len(ps) * sizes[j]["gpus"] for j, ps in by_job.items() if len(ps) < sizes[j]["count"]
    )
    half = sum(1 for j, ps in by_job.items() if len(ps) < sizes[j]["count"])
    plain = {
        "pods_bound": count,
        "seconds_to_all_bound": round(elapsed, 2),
        "pods_bound_per_second": round(count / elapsed, 1) if elapsed else None,
        "gpus_bound": sum(len(ps) * sizes[j]["gpus"] for j, ps in by_job.items()),
        "half_placed_jobs": half,
        "stranded_gpus_in_half_placed_jobs": stranded,
        "timeline_seconds_created_bound": watch.timeline(t0),
    }
    subprocess.run(
        [*kubectl, "delete", "namespace", NAMESPACE, "--wait=false"], capture_output=True
    )
    return {**summary, "kube_scheduler_alone": plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", default="/tmp/gpualloc-bench-cluster")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "bench-results" / "operator.json"))
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="measure gpualloc only, not the plain kube-scheduler on the same pods",
    )
    args = parser.parse_args()
    state = Path(args.state_dir)
    profile = REPO / "hack" / "profiles" / "bench-200.yaml"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "hack" / "localcluster.py"),
            "up",
            "--profile",
            str(profile),
            "--state-dir",
            str(state),
        ],
        check=True,
    )
    try:
        result = run(state, args.jobs, args.seed, baseline=not args.no_baseline)
    finally:
        if not args.keep:
            subprocess.run(
                [
                    sys.executable,
                    str(REPO / "hack" / "localcluster.py"),
                    "down",
                    "--state-dir",
                    str(state),
                ],
                check=True,
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
