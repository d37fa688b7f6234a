"""Run the real operator (`gpualloc run`) as a process against the local cluster, and build
job objects for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
POOL_LABEL = "gpualloc.io/test-pool"
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OperatorProcess:
    """`gpualloc run` in a subprocess: as users run it, and killable like a crashed pod."""

    def __init__(self, kubeconfig: Path, log_dir: Path, name: str = "op") -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def identity(self) -> str:
        """The replica's Lease identity (POD_NAME) and User-Agent suffix."""
        return self.log_path.stem

    def start(
        self,
        lease_namespace: str = "default",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> OperatorProcess:
        """`extra_args` go after the usual flags (a later flag wins); `env` adds variables."""
        env = {
            **os.environ,
            "POD_NAME": self.identity,
            "GPUALLOC_WATCH_TIMEOUT": "30",
            **(env or {}),
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gpualloc.cli",
                    "run",
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--metrics-port",
                    str(self.metrics_port),
                    "--metrics-address",
                    "127.0.0.1",
                    "--health-port",
                    str(self.health_port),
                    "--debounce",
                    "0.3",
                    "--lease-namespace",
                    lease_namespace,
                    *extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled metric, or the sum over a labelled one's series."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2
            ) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")
        ]
        return sum(values) if values else None

    def wait_leading(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.metric("gpualloc_leader") == 1 and (self.metric("gpualloc_rounds_total") or 0):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.logs()}")
            time.sleep(0.3)
        raise TimeoutError(f"operator did not lead within {timeout}s:\n{self.logs()}")

    def healthz(self) -> tuple[int, dict[str, Any]]:
        """The liveness endpoint's HTTP status and JSON body ((0, {}) when it does not answer)."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")
        except OSError:
            return 0, {}

    def pause(self) -> None:
        """SIGSTOP: frozen mid-flight (its clocks run on), as a stalled VM or a long GC."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def dump_stacks(self) -> None:
        """Every thread's stack into the log (faulthandler on SIGUSR1): where a replica hangs."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, the lease is not released."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log_path.read_text()[-6000:] if self.log_path.exists() else ""


def kubeconfig_copy(
    source: Path, dest: Path, server: str | None = None, token: str | None = None
) -> Path:
    """A copy of a kubeconfig with another server URL (e.g. a proxy) and/or bearer token."""
    config = yaml.safe_load(source.read_text())
    for cluster in config["clusters"]:
        if server:
            cluster["cluster"]["server"] = server
    for user in config["users"]:
        if token:
            user["user"] = {"token": token}
    dest.write_text(yaml.safe_dump(config, sort_keys=False))
    dest.chmod(0o600)
    return dest


def job(
    kind: str, name: str, namespace: str, pool: str, priority: int = 0, **spec: Any
) -> dict[str, Any]:
    """A job object restricted (nodeSelector) to the test's own node pool."""
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "priority": priority,
            "template": {
                "spec": {
                    "nodeSelector": {POOL_LABEL: pool},
                    "containers": [{"name": "main", "image": "example/llm:1"}],
                }
            },
            **spec,
        },
    }


def training(
    name: str, namespace: str, pool: str, workers: int, gpus: int, priority: int = 0, **spec: Any
) -> dict[str, Any]:
    return job(
        "LLMTrainingJob",
        name,
        namespace,
        pool,
        priority,
        workers=workers,
        gpusPerWorker=gpus,
        **spec,
    )


def inference(
    name: str, namespace: str, pool: str, replicas: int, gpus: int, priority: int = 0, **spec: Any
) -> dict[str, Any]:
    return job(
        "LLMInferenceJob",
        name,
        namespace,
        pool,
        priority,
        replicas=replicas,
        gpusPerReplica=gpus,
        **spec,
    )


# -- campaign helpers (tests/cluster/test_campaign.py) ------------------------------------
GATE = "gpualloc.io/placement"


def rss_mib(pid: int) -> float | None:
    """Resident memory (VmRSS) of the Python process `pid` in MiB; None once it is gone.

    Raises if `pid` is not a Python interpreter: the sample must be the operator itself,
    not a wrapper shell or launcher."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if not fields.get("Name", "").strip().startswith("python"):
        raise RuntimeError(f"pid {pid} is {fields.get('Name', '?').strip()!r}, not Python")
    rss = fields.get("VmRSS")
    return int(rss.split()[0]) / 1024 if rss else None  # a zombie has no VmRSS


def pod_dicts(core: Any, namespace: str) -> list[dict[str, Any]]:
    """The namespace's pods as plain JSON dicts (cheap enough to sample every half second)."""
    import json

    resp = core.list_namespaced_pod(namespace, _preload_content=False)
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return items


def pod_gpus(pod: dict[str, Any]) -> int:
    """nvidia.com/gpu a pod holds, as kube-scheduler counts it: the sum over containers or
    the largest init container, whichever is more (a limit alone counts as the request)."""

    def gpus(container: dict[str, Any]) -> int:
        res = container.get("resources") or {}
        value = (res.get("requests") or {}).get("nvidia.com/gpu") or (res.get("limits") or {}).get(
            "nvidia.com/gpu"
        )
        return int(value or 0)

    spec = pod.get("spec") or {}
    main = sum(gpus(c) for c in spec.get("containers") or [])
    return max([main, *(gpus(c) for c in spec.get("initContainers") or [])])


def pod_node(pod: dict[str, Any]) -> str | None:
    """The node a live pod holds GPUs on: bound there, or ungated and pinned there by a
    metadata.name matchFields term (kube-scheduler will bind it there)."""
    spec = pod.get("spec") or {}
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    if any(g.get("name") == GATE for g in spec.get("schedulingGates") or []):
        return None
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    pins = {
        value
        for term in required.get("nodeSelectorTerms") or []
        for f in term.get("matchFields") or []
        if f.get("key") == "metadata.name" and f.get("operator") == "In"
        for value in f.get("values") or []
    }
    return pins.pop() if len(pins) == 1 else None
