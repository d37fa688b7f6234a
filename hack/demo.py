"""`make demo`: the operator on the local simulated GPU cluster, with the sample jobs.

up:   start the cluster (if needed), install the CRDs, start `gpualloc run` in the background
      and a real Prometheus scraping it (plus a DCGM-style exporter), apply
      manifests/samples/, wait for the first allocation and print what went where.
stop: stop the operator and Prometheus (`make cluster-down` also stops the cluster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("GPUALLOC_CLUSTER_STATE", REPO / ".cluster"))
PIDFILE = STATE / "pids" / "operator.pid"
LOG = STATE / "logs" / "operator.log"
SAMPLES = REPO / "manifests" / "samples"


def kubectl(*args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(STATE / "bin" / "kubectl"), "--kubeconfig", str(STATE / "kubeconfig"), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def operator_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start_operator(metrics_port: int) -> None:
    if operator_pid():
        print(f"[demo] operator already running (pid {operator_pid()}), log {LOG}")
        return
    LOG.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(STATE / "kubeconfig")}
    with open(LOG, "ab") as log:
        proc = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "gpualloc"),
                "run",
                "--kubeconfig",
                str(STATE / "kubeconfig"),
                "--metrics-port",
                str(metrics_port),
                "--metrics-address",
                "127.0.0.1",
                "--health-port",
                str(metrics_port + 1),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    PIDFILE.write_text(f"{proc.pid}\n")
    print(
        f"[demo] operator started (pid {proc.pid}), metrics http://127.0.0.1:{metrics_port}"
        f"/metrics, log {LOG}"
    )


def wait_for_allocation(timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = json.loads(kubectl("get", "ltj,lij", "-A", "-o", "json"))["items"]
        settled = [
            j
            for j in jobs
            if (j.get("status") or {}).get("phase") not in (None, "Pending", "Allocated")
        ]
        if jobs and len(settled) == len(jobs):
            return list(jobs)
        if time.monotonic() > deadline:
            print("[demo] still settling; showing what is there now")
            return list(jobs)
        time.sleep(1)


def print_allocation(jobs: list[dict[str, Any]]) -> None:
    print("\n$ kubectl get gpualloc -A")
    print(kubectl("get", "gpualloc", "-A"))
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    per_node: dict[str, list[str]] = defaultdict(list)
    used: dict[str, int] = defaultdict(int)
    for job in jobs:
        name = f"{job['metadata']['namespace']}/{job['metadata']['name']}"
        for a in (job.get("status") or {}).get("allocation") or []:
            per_node[a["node"]].append(f"{name}[{a['replica']}]x{a['gpus']}")
            used[a["node"]] += a["gpus"]
    print("Allocation per node:")
    print(f"  {'NODE':<14} {'PRODUCT':<24} {'GPUS':<6} JOBS")
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        total = node["status"]["allocatable"].get("nvidia.com/gpu", "0")
        product = node["metadata"]["labels"].get("nvidia.com/gpu.product", "-")
        print(f"  {name:<14} {product:<24} {used[name]:>2}/{total:<3} {' '.join(per_node[name])}")
    waiting = [j for j in jobs if (j.get("status") or {}).get("phase") == "Unschedulable"]
    for job in waiting:
        print(
            f"\nWhy {job['metadata']['namespace']}/{job['metadata']['name']} waits: "
            f"{job['status'].get('message')}"
        )


def start_prometheus(metrics_port: int) -> str:
    """Real Prometheus scraping the operator and a DCGM-style exporter for the GPU nodes; the
    default AllocationPolicy points gpualloc at it (GPU health, inference demand)."""
    subprocess.run(
        [
            sys.executable,
            str(REPO / "hack" / "localprom.py"),
            "start",
            "--state-dir",
            str(STATE),
            "--target",
            f"gpualloc=127.0.0.1:{metrics_port}",
            "--dcgm",
        ],
        check=True,
    )
    url = f"http://127.0.0.1:{(STATE / 'prometheus' / 'port').read_text().strip()}"
    policy = {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "AllocationPolicy",
        "metadata": {"name": "default"},
        "spec": {
            "prometheus": {"url": url, "intervalSeconds": 5},
            "throughput": {"NVIDIA-H100-80GB-HBM3": 3.0, "NVIDIA-A100-SXM4-40GB": 1.0},
        },
    }
    subprocess.run(
        [
            str(STATE / "bin" / "kubectl"),
            "--kubeconfig",
            str(STATE / "kubeconfig"),
            "apply",
            "-f",
            "-",
        ],
        input=json.dumps(policy),
        text=True,
        check=True,
        capture_output=True,
    )
    return url


def up(args: argparse.Namespace) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "hack" / "localcluster.py"), "up", "--state-dir", str(STATE)],
        check=True,
    )
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    start_operator(args.metrics_port)
    prometheus_url = start_prometheus(args.metrics_port)
    for path in sorted(SAMPLES.glob("*.yaml")):
        kubectl("apply", "-f", str(path))
    print(f"[demo] applied {len(list(SAMPLES.glob('*.yaml')))} sample files; planning...")
    print_allocation(wait_for_allocation(args.timeout))
    print(
        "\nTry:\n"
        "  export KUBECONFIG=$PWD/.cluster/kubeconfig PATH=$PWD/.cluster/bin:$PATH\n"
        "  kubectl get gpualloc -A                      # jobs, phases, GPUs, nodes\n"
        "  kubectl describe ltj -n research too-big     # the Unschedulable event and reason\n"
        "  kubectl scale lij/chat -n prod --replicas 4  # re-planned within a second\n"
        f"  curl -s localhost:{args.metrics_port}/metrics | grep ^gpualloc_\n"
        f"  curl -s '{prometheus_url}/api/v1/query?query=gpualloc_allocated_gpus'   # Prometheus\n"
        "  make demo-down                               # stop the operator and the cluster"
    )


def stop(_: argparse.Namespace) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "hack" / "localprom.py"), "stop", "--state-dir", str(STATE)],
        check=False,
    )
    pid = operator_pid()
    if pid is None:
        print("[demo] operator not running")
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if operator_pid() is None:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
    print(f"[demo] operator (pid {pid}) stopped")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="cluster + CRDs + operator + samples")
    p_up.add_argument("--metrics-port", type=int, default=8080)
    p_up.add_argument("--timeout", type=float, default=90)
    p_up.set_defaults(fn=up)
    sub.add_parser("stop", help="stop the operator").set_defaults(fn=stop)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
