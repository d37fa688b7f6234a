"""A real Prometheus (Debian's `prometheus` binary, see install-prometheus.sh) on 127.0.0.1 for
tests and the demo, scraping the operator and the fake DCGM exporter every second.

Targets are file-based service discovery (`<dir>/targets/<job>.json`), so they can change while
Prometheus runs; Prometheus notices the file within a second.

    python hack/localprom.py start [--state-dir .cluster] [--port 9090] \\
        [--target gpualloc=127.0.0.1:8080] [--dcgm]
    python hack/localprom.py stop  [--state-dir .cluster]
    python hack/localprom.py status [--state-dir .cluster]

`start` runs Prometheus detached (data, config and log under <state-dir>/prometheus/, pid in
<state-dir>/pids/prometheus.pid) and prints its URL; `--dcgm` also starts the fake DCGM exporter
for the cluster's GPU nodes (pid in <state-dir>/pids/fake-dcgm-exporter.pid). Both are idempotent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
JOBS = ("gpualloc", "dcgm-exporter", "inference")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        raise FileNotFoundError("prometheus is not installed: run `make deps`")
    return found


class PrometheusServer:
    """One Prometheus process with its config, data and target files under `root`."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        scrape_interval: str = "1s",
        rule_files: list[Path] | None = None,
    ) -> None:
        self.root = root
        self.port = port or free_port()
        self.scrape_interval = scrape_interval
        self.rule_files = rule_files or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.root / "prometheus.log"

    def write_config(self) -> None:
        (self.root / "targets").mkdir(parents=True, exist_ok=True)
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "file_sd_configs": [
                        {
                            "files": [str(self.root / "targets" / f"{job}.json")],
                            "refresh_interval": "1s",
                        }
                    ],
                }
                for job in JOBS
            ],
        }
        for job in JOBS:
            path = self.root / "targets" / f"{job}.json"
            if not path.exists():
                path.write_text("[]\n")
        # JSON is YAML: no PyYAML needed here
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")

    def set_targets(
        self, job: str, targets: list[str], labels: dict[str, str] | None = None
    ) -> None:
        """Replace the scrape targets (host:port) of `job` (one of JOBS)."""
        path = self.root / "targets" / f"{job}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": targets, "labels": labels or {}}]) + "\n")
        tmp.replace(path)  # atomic: Prometheus never reads half a file

    def start(self, detach: bool = False, timeout: float = 30) -> PrometheusServer:
        self.write_config()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    _binary(),
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"prometheus not ready in {timeout}s")
            time.sleep(0.2)
        return self

    def ready(self) -> bool:
        try:
            with _NO_PROXY.open(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # -- queries (raw JSON of the HTTP API)
    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with _NO_PROXY.open(url, timeout=10) as resp:
            payload = json.loads(resp.read())
        if payload.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {payload}")
        return payload["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api(
            "query_range", query=promql, start=start, end=end, step=step
        )["result"]
        return result

    def targets_up(self, job: str) -> bool:
        active = self.api("targets", state="active")["activeTargets"]
        mine = [t for t in active if t["labels"].get("job") == job]
        return bool(mine) and all(t["health"] == "up" for t in mine)


# -- CLI (make demo) ------------------------------------------------------------------------
def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _start(args: argparse.Namespace) -> None:
    state: Path = args.state_dir
    root, pids = state / "prometheus", state / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    port_file = root / "port"
    server_pid = _pid_alive(pids / "prometheus.pid")
    port = int(port_file.read_text()) if server_pid and port_file.exists() else args.port
    server = PrometheusServer(
        root,
        port=port or free_port(),
        rule_files=[REPO / "helm" / "gpualloc" / "files" / "alerts.yaml"],
    )
    if server_pid:
        print(f"[prometheus] already running (pid {server_pid}): {server.url}")
    else:
        server.start(detach=True)
        assert server.proc is not None
        (pids / "prometheus.pid").write_text(f"{server.proc.pid}\n")
        port_file.write_text(f"{server.port}\n")
        print(f"[prometheus] started (pid {server.proc.pid}): {server.url}, log {server.log_path}")
    for spec in args.target:
        job, _, target = spec.partition("=")
        server.set_targets(job, [target])
        print(f"[prometheus] scraping {job} at {target}")
    if args.dcgm:
        exporter_pid = _pid_alive(pids / "fake-dcgm-exporter.pid")
        if exporter_pid:
            print(f"[prometheus] fake DCGM exporter already running (pid {exporter_pid})")
        else:
            eport = free_port()
            with open(root / "fake-dcgm-exporter.log", "ab") as log:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        str(REPO / "hack" / "fake_dcgm_exporter.py"),
                        "--port",
                        str(eport),
                        "--kubeconfig",
                        str(state / "kubeconfig"),
                        "--kubectl",
                        str(state / "bin" / "kubectl"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            (pids / "fake-dcgm-exporter.pid").write_text(f"{proc.pid}\n")
            server.set_targets("dcgm-exporter", [f"127.0.0.1:{eport}"])
            print(
                f"[prometheus] fake DCGM exporter (pid {proc.pid}): http://127.0.0.1:{eport}/metrics"
            )
    print(
        f"[prometheus] query it: {server.url}/graph or "
        f"curl '{server.url}/api/v1/query?query=gpualloc_allocated_gpus'"
    )


def _stop(args: argparse.Namespace) -> None:
    pids = args.state_dir / "pids"
    for name in ("fake-dcgm-exporter", "prometheus"):
        pid = _pid_alive(pids / f"{name}.pid")
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(150):
            if _pid_alive(pids / f"{name}.pid") is None:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        (pids / f"{name}.pid").unlink(missing_ok=True)
        print(f"[prometheus] stopped {name} (pid {pid})")


def _status(args: argparse.Namespace) -> None:
    root = args.state_dir / "prometheus"
    pid = _pid_alive(args.state_dir / "pids" / "prometheus.pid")
    if pid and (root / "port").exists():
        print(
            f"[prometheus] running (pid {pid}): http://127.0.0.1:{int((root / 'port').read_text())}"
        )
    else:
        print("[prometheus] not running")
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description="Prometheus for the local cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        p = sub.add_parser(name)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=Path(os.environ.get("GPUALLOC_CLUSTER_STATE", REPO / ".cluster")),
        )
        if name == "start":
            p.add_argument("--port", type=int, default=0, help="default: a free port")
            p.add_argument(
                "--target",
                action="append",
                default=[],
                metavar="JOB=HOST:PORT",
                help=f"scrape target (JOB one of {', '.join(JOBS)}); repeatable",
            )
            p.add_argument("--dcgm", action="store_true", help="also run the fake DCGM exporter")
    args = parser.parse_args()
    {"start": _start, "stop": _stop, "status": _status}[args.command](args)


if __name__ == "__main__":
    main()
