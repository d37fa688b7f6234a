"""A stand-in for NVIDIA's DCGM exporter on the simulated (kwok) GPU nodes, plus inference
demand series, for tests and the demo.

It serves `/metrics` in the Prometheus text format with, per GPU of each node, the series the
real exporter has (same names and labels: Hostname, gpu, UUID, device, modelName):
DCGM_FI_DEV_XID_ERRORS (last XID error, 0 = none), DCGM_FI_DEV_GPU_UTIL (%) and
DCGM_FI_DEV_FB_USED (MiB); and per inference model the vLLM request counter
`vllm:request_success_total{model_name}` growing at a set rate. Values are changed in-process
(`exporter.set_xid(...)`) or over HTTP:

    POST /xid?node=gpu-h100-0&gpu=3&value=79        # XID 79 on that GPU (value=0 clears it)
    POST /util?node=gpu-h100-0&gpu=3&value=95
    POST /demand?model=llama&rate=45                # requests per second
    POST /nodes?add=gpu-h100-9:8:NVIDIA-H100-80GB-HBM3

Run standalone: `python hack/fake_dcgm_exporter.py --port 9400 --kubeconfig K` serves every
GPU node of that cluster (re-read every 10 s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FB_TOTAL_MIB = 81559


@dataclass
class Gpu:
    xid: int = 0
    util: float = 0.0
    fb_used_mib: float = 0.0


@dataclass
class NodeGpus:
    product: str
    gpus: list[Gpu] = field(default_factory=list)


def _uuid(node: str, index: int) -> str:
    digest = hashlib.sha1(f"{node}/{index}".encode()).hexdigest()
    return f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class FakeDcgmExporter:
    """In-process exporter; `start()` serves it on 127.0.0.1 in a daemon thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.nodes: dict[str, NodeGpus] = {}
        self.demand: dict[str, tuple[float, float, float]] = {}  # model -> (rate, base, since)
        self.server: ThreadingHTTPServer | None = None

    # -- state
    def add_node(self, name: str, gpus: int, product: str, util: float | None = None) -> None:
        """A node's GPUs; utilisation defaults to a stable per-GPU value in 20..90 %."""
        with self.lock:
            self.nodes[name] = NodeGpus(
                product,
                [
                    Gpu(
                        util=util if util is not None else 20 + int(_uuid(name, i)[4:8], 16) % 71,
                        fb_used_mib=FB_TOTAL_MIB * 0.4,
                    )
                    for i in range(gpus)
                ],
            )

    def remove_node(self, name: str) -> None:
        with self.lock:
            self.nodes.pop(name, None)

    def set_xid(self, node: str, gpu: int, value: int) -> None:
        with self.lock:
            self.nodes[node].gpus[gpu].xid = value

    def set_util(self, node: str, gpu: int, value: float) -> None:
        with self.lock:
            self.nodes[node].gpus[gpu].util = value

    def set_demand(self, model: str, rate: float) -> None:
        """`vllm:request_success_total{model_name=model}` grows at `rate` per second from now."""
        now = time.time()
        with self.lock:
            old_rate, base, since = self.demand.get(model, (0.0, 0.0, now))
            self.demand[model] = (rate, base + old_rate * (now - since), now)

    # -- exposition
    def render(self) -> str:
        now = time.time()
        lines: list[str] = []
        with self.lock:
            for metric, help_, attr in (
                ("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", "xid"),
                ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "util"),
                ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "fb_used_mib"),
            ):
                lines += [f"# HELP {metric} {help_}", f"# TYPE {metric} gauge"]
                for node, info in sorted(self.nodes.items()):
                    for i, gpu in enumerate(info.gpus):
                        labels = (
                            f'gpu="{i}",UUID="{_uuid(node, i)}",device="nvidia{i}",'
                            f'modelName="{_label(info.product.replace("-", " "))}",'
                            f'Hostname="{_label(node)}"'
                        )
                        lines.append(f"{metric}{{{labels}}} {getattr(gpu, attr)}")
            if self.demand:
                lines += [
                    "# HELP vllm:request_success_total Count of successfully processed requests.",
                    "# TYPE vllm:request_success_total counter",
                ]
                for model, (rate, base, since) in sorted(self.demand.items()):
                    value = base + rate * (now - since)
                    lines.append(
                        f'vllm:request_success_total{{model_name="{_label(model)}"}} {value}'
                    )
        return "\n".join(lines) + "\n"

    # -- serving
    def start(self, port: int = 0, address: str = "127.0.0.1") -> int:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urllib.parse.urlparse(self.path).path != "/metrics":
                    self._reply(404, "not found\n")
                    return
                self._reply(200, exporter.render(), "text/plain; version=0.0.4")

            def do_POST(self) -> None:
                url = urllib.parse.urlparse(self.path)
                q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                try:
                    if url.path == "/xid":
                        exporter.set_xid(q["node"], int(q["gpu"]), int(q["value"]))
                    elif url.path == "/util":
                        exporter.set_util(q["node"], int(q["gpu"]), float(q["value"]))
                    elif url.path == "/demand":
                        exporter.set_demand(q["model"], float(q["rate"]))
                    elif url.path == "/nodes":
                        name, gpus, product = q["add"].split(":", 2)
                        exporter.add_node(name, int(gpus), product)
                    else:
                        self._reply(404, "not found\n")
                        return
                except (KeyError, ValueError, IndexError) as err:
                    self._reply(400, f"bad request: {err!r}\n")
                    return
                self._reply(200, "ok\n")

            def _reply(self, code: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _cluster_gpu_nodes(kubectl: Path, kubeconfig: Path) -> dict[str, tuple[int, str]]:
    out = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    nodes = {}
    for item in json.loads(out)["items"]:
        gpus = int((item["status"].get("allocatable") or {}).get("nvidia.com/gpu", 0))
        if gpus:
            labels = item["metadata"].get("labels") or {}
            nodes[item["metadata"]["name"]] = (gpus, labels.get("nvidia.com/gpu.product", "GPU"))
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--kubeconfig", type=Path, help="serve every GPU node of this cluster")
    parser.add_argument("--kubectl", type=Path, default=Path("kubectl"))
    args = parser.parse_args()
    exporter = FakeDcgmExporter()
    port = exporter.start(args.port, args.address)
    print(f"[fake-dcgm-exporter] http://{args.address}:{port}/metrics", flush=True)
    while True:
        if args.kubeconfig:
            try:
                current = _cluster_gpu_nodes(args.kubectl, args.kubeconfig)
            except (subprocess.CalledProcessError, OSError, ValueError) as err:
                print(f"[fake-dcgm-exporter] listing nodes failed: {err}", flush=True)
            else:
                for name in set(exporter.nodes) - set(current):
                    exporter.remove_node(name)
                for name, (gpus, product) in current.items():
                    if name not in exporter.nodes:
                        exporter.add_node(name, gpus, product)
        time.sleep(10)


if __name__ == "__main__":
    main()
