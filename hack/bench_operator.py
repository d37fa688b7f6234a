"""End-to-end operator benchmark on the local control plane (`make bench-operator`).

A cluster of kwok nodes x 8 GPUs (a profile: 200 nodes by default, 1,000 with
`--profile hack/profiles/bench-1000.yaml`) gets a burst of jobs (500 by default, or as many
as make `--pods` pods): gangs of 2-4 workers x 1-8 GPUs and inference jobs of 1-3 replicas x
1-4 GPUs, about 1.7x the GPUs. Measured for gpualloc (operator as a process): time from the
burst to all placeable pods bound, pods bound per second, half-placed gangs, the operator's
peak RSS (VmRSS sampled during the run) and CPU time, and the LIST requests it sent during
the burst, counted on the apiserver's side (its audit log). Then, on the same cluster and the
same pods without gpualloc (plain pods, the real kube-scheduler): its time, and the GPUs it
strands in half-placed gangs. Bind times come from a pod watch (polling would load the
apiserver being measured); each run also records a timeline of pods created and bound.
Results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO / "tests" / "cluster"))
import localcluster  # noqa: E402
from operator_harness import OperatorProcess, kubeconfig_copy  # noqa: E402

from gpualloc.controller.observe import JOBS  # noqa: E402
from gpualloc.controller.podwatch import PodWatch  # noqa: E402
from gpualloc.k8s.client import Kube  # noqa: E402
from gpualloc.k8s.convert import JOB_LABEL  # noqa: E402
from gpualloc.k8s.informer import Informer  # noqa: E402

NAMESPACE = "bench"
DEFAULT_PROFILE = REPO / "hack" / "profiles" / "bench-200.yaml"
Obj = dict[str, Any]


def draw_job(rng: random.Random, i: int) -> Obj:
    """About 2.3 pods and 6.2 GPUs per job."""
    if rng.random() < 0.3:
        return {
            "kind": "LLMTrainingJob",
            "name": f"train-{i}",
            "count": rng.randint(2, 4),
            "gpus": rng.choice([1, 2, 4, 8]),
            "priority": rng.choice([0, 10, 100]),
        }
    return {
        "kind": "LLMInferenceJob",
        "name": f"serve-{i}",
        "count": rng.randint(1, 3),
        "gpus": rng.choice([1, 1, 2, 2, 4]),
        "priority": rng.choice([0, 10, 1000]),
    }


def workload(jobs: int, seed: int) -> list[Obj]:
    """`jobs` jobs: 500 ask for ~1,150 pods and ~1.7x the 200-node profile's GPUs."""
    rng = random.Random(seed)
    return [draw_job(rng, i) for i in range(jobs)]


def workload_pods(pods: int, seed: int) -> list[Obj]:
    """Jobs drawn as in `workload` until they make exactly `pods` pods (the last one cut)."""
    rng, total = random.Random(seed), 0
    out: list[Obj] = []
    while total < pods:
        job = draw_job(rng, len(out))
        job["count"] = min(job["count"], pods - total)
        total += job["count"]
        out.append(job)
    return out


def job_object(w: Obj) -> Obj:
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


def plain_pods(w: Obj) -> list[Obj]:
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


def list_pods(core: Any) -> list[Obj]:
    """The benchmark's pods as plain JSON (the client's models are slow for 1,000+)."""
    resp = core.list_namespaced_pod(NAMESPACE, _preload_content=False)
    items: list[Obj] = json.loads(resp.data)["items"]
    return items


def bound_pods(core: Any) -> list[Obj]:
    return [p for p in list_pods(core) if p["spec"].get("nodeName")]


def wait_gone(core: Any, timeout: float = 600) -> None:
    """Until the benchmark's namespace holds no pod (the next phase reuses their names)."""
    deadline = time.monotonic() + timeout
    while list_pods(core):
        if time.monotonic() > deadline:
            raise TimeoutError(f"pods of the last phase still there after {timeout}s")
        time.sleep(1)


def gangs(bound: list[Obj], label: str, jobs: list[Obj]) -> Obj:
    """GPUs bound, and the jobs bound only in part (every job here is all-or-nothing: gangs,
    and inference jobs with minReplicas = replicas) with the GPUs they strand."""
    sizes = {x["name"]: x for x in jobs}
    by_job: dict[str, int] = Counter(p["metadata"]["labels"][label] for p in bound)
    half = {j: n for j, n in by_job.items() if n < sizes[j]["count"]}
    return {
        "gpus_bound": sum(n * sizes[j]["gpus"] for j, n in by_job.items()),
        "half_placed_jobs": len(half),
        "stranded_gpus_in_half_placed_jobs": sum(n * sizes[j]["gpus"] for j, n in half.items()),
    }


class BindTimes:
    """The benchmark's pods as the operator's own pod watch sees them (unslimmed: the
    scheduler's conditions are read), with the time each was first seen bound.

    A watch costs the apiserver next to nothing (every event is encoded once for all
    watchers), where polling LISTs of 1,000+ pods would slow the cluster being measured."""

    def __init__(self, api: Any) -> None:
        self.pods: dict[str, Obj] = {}
        self.bound_at: dict[str, float] = {}
        self.created_at: dict[str, float] = {}
        self.lock = threading.Lock()
        self.watch = PodWatch(Kube(api), self._seen, slim=False)
        self.watch.start()
        if not self.watch.listed.wait(60):
            raise TimeoutError("the pod watch did not list the pods")

    def close(self) -> None:
        """Stop watching (the next phase is measured without this watcher's load)."""
        self.watch.stop.set()

    def _seen(self, event_type: str, pod: Obj) -> None:
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

    def snapshot(self) -> list[Obj]:
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


class JobWatch:
    """The jobs' statuses from a watch: polling LISTs of thousands of jobs every quarter
    second would load the apiserver being measured."""

    def __init__(self, api: Any) -> None:
        self.informers = [Informer(Kube(api), r, lambda _e, _o: None) for r in JOBS]
        for informer in self.informers:
            informer.start()
            if not informer.listed.wait(60):
                raise TimeoutError(f"the {informer.resource.kind} watch did not list")

    def jobs(self) -> list[Obj]:
        return [j for i in self.informers for j in i.store()]

    def close(self) -> None:
        for informer in self.informers:
            informer.stop.set()


def wait_until(
    done: Callable[[list[Obj]], bool],
    start: float,
    timeout: float,
    watch: BindTimes,
    settle: float = 6.0,
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


def gpualloc_done(jobs: list[Obj], pods: list[Obj], expected: int) -> bool:
    """Every job seen and decided (placed or explained), and every placed pod bound."""
    if len(jobs) < expected:
        return False
    placed = 0
    for job in jobs:
        phase = (job.get("status") or {}).get("phase")
        if phase in (None, "Pending"):
            return False
        if phase in ("Allocated", "Running"):
            placed += job["status"]["placed"]
    return sum(1 for p in pods if p["spec"].get("nodeName")) >= placed


def scheduler_done(pods: list[Obj]) -> bool:
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


def status_kib(pid: int, field: str) -> int:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM), 0 once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """The highest VmRSS of a process, sampled every `every` seconds in a thread."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every, self.peak_kib, self.samples = pid, every, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            self.samples += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


class BenchCluster(localcluster.Cluster):
    """The local cluster, whose audit policy (writes only) also logs lists and watches here,
    so the operator's LISTs are counted where they land. Whether that took is checked after
    (`audits_lists`); if not, LISTs are counted from the apiserver's metrics."""

    def _start(self, name: str) -> None:
        path = getattr(self, "audit_policy", None)  # an older localcluster: no audit log
        policy = getattr(localcluster, "AUDIT_POLICY", "")
        if name == "kube-apiserver" and path is not None and "deletecollection]" in policy:
            path.write_text(policy.replace("deletecollection]", "deletecollection, list, watch]"))
        super()._start(name)


def audits_lists(cluster: localcluster.Cluster) -> bool:
    """Whether this cluster's apiserver writes LIST requests to an audit log."""
    policy = getattr(cluster, "audit_policy", None)
    return (
        policy is not None
        and policy.exists()
        and re.search(r"verbs: \[[^]]*\blist\b", policy.read_text()) is not None
    )


def audit_events(cluster: localcluster.Cluster, verbs: set[str]) -> Iterable[Obj]:
    """Requests with these verbs (a watch once it started, the rest once complete), from the
    audit log and its rotated backup."""
    log_path: Path = cluster.audit_log
    for path in sorted(log_path.parent.glob(log_path.stem + "*")):
        with open(path) as f:
            for line in f:
                if not any(f'"verb":"{v}"' in line for v in verbs):
                    continue
                event: Obj = json.loads(line)
                verb = event.get("verb")
                stage = "ResponseStarted" if verb == "watch" else "ResponseComplete"
                if verb in verbs and event.get("stage") == stage:
                    yield event


def wait_audit_flushed(cluster: localcluster.Cluster, kubectl: list[str], tag: str) -> None:
    """Write a marker and wait until the (batched) audit log holds it: everything before it
    is then in the log too."""
    name = f"bench-audit-marker-{tag}"
    subprocess.run(
        [*kubectl, "create", "configmap", name, "-n", NAMESPACE], check=True, capture_output=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for event in audit_events(cluster, {"create"}):
            if (event.get("objectRef") or {}).get("name") == name:
                return
        time.sleep(1)
    raise TimeoutError("the audit log did not flush within 120 s")


READS = {"list": "operator_lists_by_resource", "watch": "operator_watches_by_resource"}


def operator_requests(
    cluster: localcluster.Cluster, windows: dict[str, tuple[float, float]], username: str
) -> Obj:
    """Per time window (wall-clock seconds), from the apiserver's audit log: the LIST and
    WATCH requests of the operator process (its own client and Kopf's, both authenticated as
    `username`) per resource, the User-Agents its requests carried, and the other clients'
    LISTs for comparison."""
    verbs = {"list", "watch", "create", "update", "patch", "delete"}
    counts: dict[str, dict[str, Counter[str]]] = {name: defaultdict(Counter) for name in windows}
    for event in audit_events(cluster, verbs):
        at = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        ours = (event.get("user") or {}).get("username") == username
        agent = str(event.get("userAgent", "")).split(" ")[0]
        resource = (event.get("objectRef") or {}).get("resource", "?")
        verb = event["verb"]
        for name, (start, end) in windows.items():
            if not start <= at < end:
                continue
            if ours:
                counts[name]["operator_user_agents"][agent] += 1
                if verb in READS:
                    counts[name][READS[verb]][resource] += 1
            elif verb == "list":
                counts[name]["lists_by_other_clients"][agent] += 1
    return {
        name: {
            "operator_lists": sum(c["operator_lists_by_resource"].values()),
            "operator_watches": sum(c["operator_watches_by_resource"].values()),
            **{
                k: dict(c[k])
                for k in (
                    "operator_lists_by_resource",
                    "operator_watches_by_resource",
                    "operator_user_agents",
                    "lists_by_other_clients",
                )
            },
        }
        for name, c in counts.items()
    }


def apiserver_lists(kubectl: list[str]) -> dict[str, float]:
    """apiserver_request_total{verb="LIST"} per resource, every client together."""
    text = subprocess.run(
        [*kubectl, "get", "--raw", "/metrics"], check=True, capture_output=True, text=True
    ).stdout
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'verb="LIST"' in line:
            found = re.search(r'resource="([^"]*)"', line)
            out[found.group(1) if found else "?"] += float(line.rsplit(" ", 1)[1])
    return out


def log_lines(log: str, *marks: str, most: int = 60) -> list[str]:
    """The operator's log lines holding any of `marks` (the last `most` of them)."""
    return [line.strip() for line in log.splitlines() if any(m in line for m in marks)][-most:]


class Bench:
    """The benchmark's cluster, clients and workload."""

    def __init__(self, state: Path, w: list[Obj]) -> None:
        self.cluster = localcluster.Cluster(state)
        self.kubectl = [
            str(self.cluster.bin / "kubectl"),
            "--kubeconfig",
            str(self.cluster.kubeconfig),
        ]
        self.w = w
        self.api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.cluster.kubeconfig)
        )
        self.api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 16
        # Any: fed and read as plain JSON (_preload_content=False), not the client's models
        self.core: Any = client.CoreV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.timeout = max(600.0, sum(x["count"] for x in w) * 0.2)

    def sh(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return subprocess.run(
            [*self.kubectl, *args], input=input, text=True, check=check, capture_output=True
        ).stdout

    def operator_kubeconfig(self) -> tuple[Path, str]:
        """A kubeconfig for the operator as its own ServiceAccount (cluster-admin here), and
        that user's name: its requests are told apart from the benchmark's in the audit
        log by who sent them, whatever User-Agent they carry."""
        sa = "gpualloc-bench-operator"
        self.sh("create", "serviceaccount", sa, "-n", "default", check=False)  # kept: rerun
        self.sh("create", "clusterrolebinding", sa, "--clusterrole=cluster-admin",
                f"--serviceaccount=default:{sa}", check=False)  # fmt: skip
        token = self.sh("create", "token", sa, "-n", "default", "--duration=24h").strip()
        path = kubeconfig_copy(
            self.cluster.kubeconfig, self.cluster.state / "operator.kubeconfig", token=token
        )
        return path, f"system:serviceaccount:default:{sa}"

    def prepare(self) -> None:
        self.sh("apply", "--server-side", "-f", str(REPO / "crds"))
        self.sh("wait", "--for=condition=Established", "crd", "--all")
        # a namespace left by an earlier run must be gone before this one starts
        self.sh(
            "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true",
            "--timeout=300s", check=False,
        )  # fmt: skip
        self.sh("create", "namespace", NAMESPACE)
        time.sleep(2)  # default ServiceAccount
        # a 2 s solver budget per round, as in the planner benchmark
        policy = {
            "apiVersion": "gpualloc.io/v1alpha1",
            "kind": "AllocationPolicy",
            "metadata": {"name": "default"},
            "spec": {"solver": {"timeLimitSeconds": 2}, "debounceSeconds": 0.5},
        }
        self.sh("apply", "-f", "-", input=json.dumps(policy))

    def nodes(self) -> list[Obj]:
        items: list[Obj] = json.loads(self.core.list_node(_preload_content=False).data)["items"]
        return items

    def gpualloc(self) -> Obj:
        """The burst as jobs, planned by the operator as a process."""
        audited = audits_lists(self.cluster)
        kubeconfig, username = self.operator_kubeconfig()
        op_started = time.time()
        op = OperatorProcess(kubeconfig, self.cluster.logs, "bench-operator")
        op.start()
        assert op.proc is not None
        rss = RssSampler(op.proc.pid)
        try:
            op.wait_leading()
            before = None if audited else apiserver_lists(self.kubectl)
            ours, burst = self._burst(op)
            after = None if audited else apiserver_lists(self.kubectl)
        finally:
            rss.close()
            op.stop()
        ours |= {
            "operator_peak_rss_mib": round(rss.peak_kib / 1024, 1),
            "operator_peak_rss_mb": round(rss.peak_kib * 1024 / 1e6, 1),
            "operator_rss_samples": rss.samples,
            # where each round's time went, and what went wrong
            "operator_rounds_log": log_lines(op.log_path.read_text(), "round: "),
            "operator_warnings_log": log_lines(op.log_path.read_text(), " WARNING ", " ERROR "),
        }
        if before is None or after is None:
            wait_audit_flushed(self.cluster, self.kubectl, "gpualloc")
            windows = {"operator_startup": (op_started, burst[0]), "burst": burst}
            ours["api_requests"] = {
                "source": "apiserver audit log: requests authenticated as the operator's user",
                "operator_user": username,
                "operator_user_agent_expected": f"gpualloc/{op.identity}",
                **operator_requests(self.cluster, windows, username),
            }
            ours["operator_lists_during_burst"] = ours["api_requests"]["burst"]["operator_lists"]
        else:
            diff = {k: v - before.get(k, 0) for k, v in after.items()}
            ours["api_requests"] = {
                "source": "apiserver /metrics apiserver_request_total{verb=LIST} before/after "
                "the burst: includes every client (the benchmark's own watches, kube-scheduler, "
                "controller-manager, kwok), not the operator alone",
                "lists_during_burst_by_resource": {k: v for k, v in diff.items() if v},
            }
            ours["operator_lists_during_burst"] = sum(diff.values())
        self.sh("delete", "llmtrainingjobs,llminferencejobs", "--all", "-n", NAMESPACE,
                "--wait=false")  # fmt: skip
        self.sh("delete", "pods", "--all", "-n", NAMESPACE, "--grace-period=0", "--force",
                check=False)  # fmt: skip
        wait_gone(self.core)
        return ours

    def _burst(self, op: OperatorProcess) -> tuple[Obj, tuple[float, float]]:
        """Create every job at once and wait until all placeable pods are bound; the figures
        and the burst's wall-clock window."""
        assert op.proc is not None
        plural = {"LLMTrainingJob": "llmtrainingjobs", "LLMInferenceJob": "llminferencejobs"}
        watch, jobs = BindTimes(self.api), JobWatch(self.api)
        cpu_before = cpu_seconds(op.proc.pid)
        rounds_before = op.metric("gpualloc_rounds_total") or 0
        started, t0 = time.time(), time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda x: self.custom.create_namespaced_custom_object(
                        "gpualloc.io", "v1alpha1", NAMESPACE, plural[x["kind"]], job_object(x)
                    ),
                    self.w,
                )
            )
        created = time.monotonic() - t0
        try:
            elapsed = wait_until(
                lambda pods: gpualloc_done(jobs.jobs(), pods, len(self.w)),
                t0,
                self.timeout,
                watch,
            )
        except TimeoutError:  # keep the operator's side of the story: the state dir goes
            Path("bench-results").mkdir(exist_ok=True)
            shutil.copy(op.log_path, "bench-results/operator-timeout.log")
            raise
        finally:
            watch.close()
            jobs.close()
        ended = time.time()
        bound = bound_pods(self.core)
        return {
            "pods_bound": len(bound),
            "seconds_to_all_bound": round(elapsed, 2),
            "pods_bound_per_second": round(len(bound) / elapsed, 1) if elapsed else None,
            "jobs_create_seconds": round(created, 2),
            **gangs(bound, JOB_LABEL, self.w),
            "operator_cpu_seconds": round(cpu_seconds(op.proc.pid) - cpu_before, 2),
            "operator_vmhwm_mib": round(status_kib(op.proc.pid, "VmHWM") / 1024, 1),
            "rounds_during_burst": (op.metric("gpualloc_rounds_total") or 0) - rounds_before,
            "timeline_seconds_created_bound": watch.timeline(t0),
        }, (started, ended)

    def kube_scheduler(self) -> Obj:
        """The same pods, plain, no gates; timed from the first create, as the gpualloc run
        is timed from the first job create."""
        pods = [p for x in self.w for p in plain_pods(x)]
        watch = BindTimes(self.api)
        t0 = time.monotonic()
        try:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda p: self.core.create_namespaced_pod(NAMESPACE, p), pods))
            elapsed = wait_until(scheduler_done, t0, self.timeout, watch)
        finally:
            watch.close()
        bound = bound_pods(self.core)
        self.sh("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        return {
            "pods_bound": len(bound),
            "seconds_to_all_bound": round(elapsed, 2),
            "pods_bound_per_second": round(len(bound) / elapsed, 1) if elapsed else None,
            **gangs(bound, "bench/job", self.w),
            "timeline_seconds_created_bound": watch.timeline(t0),
        }


def run(state: Path, w: list[Obj], seed: int, baseline: bool = True) -> Obj:
    bench = Bench(state, w)
    bench.prepare()
    nodes = bench.nodes()
    ours = bench.gpualloc()
    summary: Obj = {
        "benchmark": "operator",
        "nodes": len(nodes),
        "gpus": sum(int(n["status"]["allocatable"].get("nvidia.com/gpu", 0)) for n in nodes),
        "jobs": len(w),
        "pods": sum(x["count"] for x in w),
        "gpus_requested": sum(x["count"] * x["gpus"] for x in w),
        "seed": seed,
        "gpualloc": ours,
    }
    if not baseline:
        return summary
    plain = bench.kube_scheduler()
    ratio = (
        round(ours["pods_bound_per_second"] / plain["pods_bound_per_second"], 2)
        if ours["pods_bound_per_second"] and plain["pods_bound_per_second"]
        else None
    )
    targets = {
        "pods_per_second_ratio_at_least_1.0": ratio is not None and ratio >= 1.0,
        "gpualloc_half_placed_jobs_0": ours["half_placed_jobs"] == 0,
        "operator_peak_rss_at_most_300_mb": ours["operator_peak_rss_mb"] <= 300,
        "operator_lists_fewer_than_rounds": ours["operator_lists_during_burst"]
        < ours["rounds_during_burst"],
    }
    return {
        **summary,
        "kube_scheduler_alone": plain,
        "pods_per_second_ratio_gpualloc_to_kube_scheduler": ratio,
        "targets_met": targets,
    }


def brief(result: Any) -> Any:
    """The result without its long lists (timelines, the operator's round log)."""
    if isinstance(result, dict):
        return {k: brief(v) for k, v in result.items() if k not in LONG}
    return result


LONG = {"timeline_seconds_created_bound", "operator_rounds_log", "operator_warnings_log"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", default="/tmp/gpualloc-bench-cluster")
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--jobs", type=int, default=500, help="the burst's jobs (default 500)")
    size.add_argument("--pods", type=int, help="instead: as many jobs as make this many pods")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(REPO / "bench-results" / "operator.json"))
    parser.add_argument("--keep", action="store_true", help="leave the cluster running")
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="measure gpualloc only, not the plain kube-scheduler on the same pods",
    )
    args = parser.parse_args()
    state = Path(args.state_dir).resolve()
    if state == (REPO / ".cluster").resolve():
        parser.error("the test suite's cluster (.cluster) is not for benchmarks")
    w = workload_pods(args.pods, args.seed) if args.pods else workload(args.jobs, args.seed)
    cluster = BenchCluster(state)
    cluster.up(args.profile)
    try:
        result = run(state, w, args.seed, baseline=not args.no_baseline)
    finally:
        if not args.keep:
            cluster.down()
    result = {"command": " ".join(["hack/bench_operator.py", *sys.argv[1:]]), **result}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(brief(result), indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
