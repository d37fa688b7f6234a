#!/usr/bin/env python3
"""A real Kubernetes control plane on 127.0.0.1 with simulated (kwok) GPU nodes.

    python hack/localcluster.py up|down|status [--profile PATH] [--state-dir .cluster]

Runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from the binaries
that hack/build-binaries.sh put in the cache. Everything lives in the state dir: pki/, logs/,
pids/, bin/ (links to the binaries), ports.json, kubeconfig. See hack/README.md.

Standard library + pyyaml only, so it runs before anything else is installed and tests can
import node_manifests() / wait_nodes_ready() from it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE = REPO / ".cluster"
DEFAULT_PROFILE = REPO / "hack" / "profiles" / "default.yaml"
GPU = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
# Preferred ports: away from the defaults (2379, 6443, 10257, 10259, ...) so a real cluster or
# kind on the same machine does not clash. A busy port is replaced by a free one; the ports in
# use are recorded in <state>/ports.json.
PREFERRED_PORTS = {
    "etcd": 23790,
    "etcd-peer": 23800,
    "apiserver": 16443,
    "controller-manager": 20257,
    "scheduler": 20259,
    "kwok": 20247,
}
# Start order; stopped in reverse.
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
# binary -> cache component (hack/build-binaries.sh layout: <component>-<version>/<binary>)
BINARIES = {
    "etcd": "etcd",
    "kube-apiserver": "kubernetes",
    "kube-controller-manager": "kubernetes",
    "kube-scheduler": "kubernetes",
    "kubectl": "kubernetes",
    "kwok": "kwok",
    "helm": "helm",
}
KWOK_STAGES = [
    "node-initialize",
    "node-heartbeat-with-lease",
    "pod-ready",
    "pod-complete",
    "pod-delete",
]
# The audit policy of the local apiserver: metadata of every write, so tests can tell which
# client wrote what (tests/cluster/test_faults.py). Not logged: reads, and the high-volume
# heartbeats (kwok's node leases and node status).
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    namespaces: [kube-node-lease]
  - level: None
    resources: [{group: "", resources: [nodes/status]}]
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""
# Taints the control plane puts on nodes that are not (yet) Ready; pods cannot land until gone.
NOT_READY_TAINTS = {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}


def log(msg: str) -> None:
    print(f"[localcluster] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Profiles -> Node manifests (pure; used by tests to add nodes dynamically)


def pool_node_manifests(pool: dict[str, Any], start: int = 0) -> list[dict[str, Any]]:
    """Node objects (with status, which the API accepts on create) for one profile pool.

    Node i is named <namePrefix><i> for i in [start, start + count).
    """
    gpus = int(pool.get("gpusPerNode", 8))
    resources = {
        "cpu": str(pool.get("cpu", "96")),
        "memory": str(pool.get("memory", "1Ti")),
        "ephemeral-storage": str(pool.get("ephemeralStorage", "10Ti")),
        "pods": str(pool.get("pods", "110")),
        GPU: str(gpus),
    }
    nodes = []
    for i in range(start, start + int(pool["count"])):
        name = f"{pool['namePrefix']}{i}"
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            "nvidia.com/gpu.product": str(pool["gpuProduct"]),
            "nvidia.com/gpu.memory": str(pool["gpuMemoryMiB"]),
            "nvidia.com/gpu.count": str(gpus),
        }
        labels.update({k: str(v) for k, v in (pool.get("labels") or {}).items()})
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": labels,
                    # kwok manages only nodes with this annotation (--manage-nodes-with-...).
                    "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                },
                "spec": {"taints": [dict(t) for t in pool.get("taints") or []]},
                # kwok's node-initialize stage adds conditions, addresses and nodeInfo.
                "status": {"capacity": dict(resources), "allocatable": dict(resources)},
            }
        )
    return nodes


def node_manifests(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """All Node objects of a profile ({"pools": [...]})."""
    return [n for pool in profile["pools"] for n in pool_node_manifests(pool)]


def load_profile(path: Path) -> dict[str, Any]:
    with open(path) as f:
        profile: dict[str, Any] = yaml.safe_load(f)
    return profile


# ---------------------------------------------------------------------------------------------
# Binaries


def load_versions() -> dict[str, str]:
    versions = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key] = value.strip().strip('"')
    return versions


def cache_dir() -> Path:
    return Path(os.environ.get("GPUALLOC_CACHE", Path.home() / ".cache" / "gpualloc"))


def find_binaries() -> dict[str, Path]:
    """Binary name -> path in the cache, taking the first cached candidate version (pin first,
    then the fallbacks), exactly as hack/build-binaries.sh chooses."""
    v = load_versions()
    candidates = {
        "etcd": [v["ETCD_VERSION"]],
        "kubernetes": [v["KUBE_VERSION"], *v.get("KUBE_FALLBACKS", "").split()],
        "kwok": [v["KWOK_VERSION"]],
        "helm": [v["HELM_VERSION"], *v.get("HELM_FALLBACKS", "").split()],
    }
    found: dict[str, Path] = {}
    missing = []
    for binary, comp in BINARIES.items():
        dirs = [cache_dir() / "bin" / f"{comp}-{ver}" for ver in candidates[comp]]
        path = next((d / binary for d in dirs if (d / binary).exists()), None)
        if path is None:
            missing.append(f"{binary} ({comp} {' or '.join(candidates[comp])})")
        else:
            found[binary] = path
    if missing:
        raise SystemExit(
            f"missing binaries in {cache_dir() / 'bin'}: {', '.join(missing)}; "
            "run hack/build-binaries.sh (make deps)"
        )
    return found


# ---------------------------------------------------------------------------------------------
# Processes


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # Like the Go servers: a port whose old connections linger in TIME_WAIT is usable.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pick_ports() -> dict[str, int]:
    ports = {}
    for name, port in PREFERRED_PORTS.items():
        ports[name] = port if _port_free(port) else _free_port()
    return ports


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name ([0] is the state), or []."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """True if pid runs (a zombie counts as gone: PID 1 here reaps orphans only lazily)."""
    stat = _stat(pid)
    return bool(stat) and stat[0] != "Z"


def _start_time(pid: int) -> str:
    """Start time of pid in clock ticks since boot: with the pid, it identifies the process."""
    stat = _stat(pid)
    return stat[19] if stat else ""


def _kubectl_json(kubectl: Path, kubeconfig: Path, *args: str) -> Any:
    out = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def node_ready(node: dict[str, Any]) -> bool:
    """Ready condition True and none of the not-ready taints (the scheduler would skip it)."""
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    taints = node.get("spec", {}).get("taints") or []
    return ready and not any(t["key"] in NOT_READY_TAINTS for t in taints)


def wait_nodes_ready(
    kubectl: Path, kubeconfig: Path, names: list[str], timeout: float = 120
) -> None:
    """Wait until every named node is Ready and schedulable by the not-ready taint rules."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = _kubectl_json(kubectl, kubeconfig, "get", "nodes")["items"]
        ready = {n["metadata"]["name"] for n in nodes if node_ready(n)}
        pending = set(names) - ready
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes not Ready after {timeout}s: {sorted(pending)}")
        time.sleep(0.5)


class Cluster:
    def __init__(self, state_dir: Path) -> None:
        self.state = state_dir.resolve()
        self.bin = self.state / "bin"
        self.pki = self.state / "pki"
        self.logs = self.state / "logs"
        self.pids = self.state / "pids"
        self.kubeconfig = self.state / "kubeconfig"
        self.kubectl_path = self.bin / "kubectl"
        self.audit_policy = self.state / "audit-policy.yaml"
        self.audit_log = self.logs / "audit.log"  # JSON lines, one audit.k8s.io Event each

    # -- state ------------------------------------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        ports: dict[str, int] = json.loads((self.state / "ports.json").read_text())
        return ports

    def pid(self, name: str) -> int | None:
        """The pid of a component we started, if it still runs that component."""
        try:
            pid_s, started = (self.pids / f"{name}.pid").read_text().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            return None
        # The start time recorded at spawn makes a reused pid never match. (Not argv: right
        # after exec /proc/<pid>/cmdline can still be empty.)
        if _alive(pid) and _start_time(pid) == started:
            return pid
        return None

    def _token(self) -> str:
        return (self.state / "token").read_text().strip()

    # -- health -----------------------------------------------------------------------------

    def _get(self, url: str, verify: bool = True) -> tuple[int, str]:
        if verify:
            ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        else:  # kube-controller-manager/-scheduler serve self-signed certs
            ctx = ssl._create_unverified_context()
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token()}"})
        # No proxies: an http(s)_proxy from the environment must not see 127.0.0.1 requests.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
        )
        try:
            with opener.open(req, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except (OSError, ssl.SSLError) as e:
            return 0, str(e)

    def _health_url(self, name: str) -> tuple[str, bool]:
        p = self.ports
        return {
            "etcd": (f"http://127.0.0.1:{p['etcd']}/health", False),
            "kube-apiserver": (f"https://127.0.0.1:{p['apiserver']}/readyz", True),
            "kube-controller-manager": (
                f"https://127.0.0.1:{p['controller-manager']}/healthz",
                False,
            ),
            "kube-scheduler": (f"https://127.0.0.1:{p['scheduler']}/healthz", False),
            "kwok": (f"http://127.0.0.1:{p['kwok']}/healthz", False),
        }[name]

    def component_healthy(self, name: str) -> bool:
        if self.pid(name) is None:
            return False
        url, verify = self._health_url(name)
        status, _ = self._get(url, verify)
        return status == 200

    def healthy(self) -> bool:
        if not (self.state / "ports.json").exists() or not self.kubeconfig.exists():
            return False
        return all(self.component_healthy(c) for c in COMPONENTS)

    def _wait(self, what: str, check: Any, timeout: float, component: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.pid(component) is None:
                raise RuntimeError(f"{component} exited; see {self.logs / component}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.25)

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            capture_output=True,
            text=True,
            input=input,
        )

    # -- setup ------------------------------------------------------------------------------

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.pki)

    def _write_pki(self) -> None:
        """CA, apiserver serving cert (127.0.0.1/localhost + in-cluster names), SA keypair."""
        self.pki.mkdir(parents=True)
        days = "3650"
        self._openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days,
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=gpualloc-local-ca",
        )  # fmt: skip
        sans = (
            "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
        )
        (self.pki / "apiserver.ext").write_text(
            f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
        )
        self._openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key",
            "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver",
        )  # fmt: skip
        self._openssl(
            "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", days, "-extfile", "apiserver.ext", "-out", "apiserver.crt",
        )  # fmt: skip
        self._openssl("genrsa", "-out", "sa.key", "2048")
        self._openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def _write_auth(self) -> None:
        token = secrets.token_hex(24)
        (self.state / "token").write_text(token + "\n")
        # static token of a system:masters user: admin for kubectl, the controllers and kwok
        (self.pki / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
        ca = (self.pki / "ca.crt").read_bytes()
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "gpualloc-local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.ports['apiserver']}",
                        "certificate-authority-data": base64.b64encode(ca).decode(),
                    },
                }
            ],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "gpualloc-local",
                    "context": {"cluster": "gpualloc-local", "user": "admin"},
                }
            ],
            "current-context": "gpualloc-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _link_binaries(self) -> None:
        self.bin.mkdir(parents=True)
        for name, path in find_binaries().items():
            (self.bin / name).symlink_to(path)
        stages = (self.bin / "kwok").resolve().parent / "stages"
        missing = [s for s in KWOK_STAGES if not (stages / f"{s}.yaml").exists()]
        if missing:
            raise SystemExit(f"kwok stages missing in {stages}: {missing}; rebuild kwok")

    def _args(self, name: str) -> list[str]:
        p, pki, kc = self.ports, self.pki, str(self.kubeconfig)
        if name == "etcd":
            peer = f"http://127.0.0.1:{p['etcd-peer']}"
            client = f"http://127.0.0.1:{p['etcd']}"
            return [
                "--name=local",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--unsafe-no-fsync",  # test data: speed over durability
                "--log-level=warn",
            ]
        if name == "kube-apiserver":
            return [
                f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
                "--bind-address=127.0.0.1",
                # Without it the apiserver looks for a default route to pick an address.
                "--advertise-address=127.0.0.1",
                # 127.0.0.1 is not a valid Endpoints address; nothing in-cluster needs it.
                "--endpoint-reconciler-type=none",
                f"--secure-port={p['apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                # Publishes the requestheader CA that the controller manager and scheduler
                # read for their own authentication (they log errors every second without it).
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={self.audit_policy}",
                f"--audit-log-path={self.audit_log}",
                # batch: the log is written off the request path; bounded on disk
                "--audit-log-mode=batch",
                "--audit-log-maxsize=200",
                "--audit-log-maxbackup=1",
            ]
        common = [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
        ]
        if name == "kube-controller-manager":
            # Default controller set ("*"): garbage collector, namespace, serviceaccount(-token),
            # replicaset/deployment/job, node lifecycle, ...
            return [
                *common,
                f"--secure-port={p['controller-manager']}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=false",
                # Default 20 QPS lets the node lifecycle controller lift the not-ready taint of
                # only ~5 new nodes/s (40 s for the 200-node profile).
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ]
        if name == "kube-scheduler":
            # Default 50 QPS caps binding at ~50 pods/s; large clusters raise it likewise.
            return [
                *common,
                f"--secure-port={p['scheduler']}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
            ]
        if name == "kwok":
            stages = (self.bin / "kwok").resolve().parent / "stages"
            return [
                f"--kubeconfig={kc}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                # Leases keep the node lifecycle controller from marking nodes NotReady.
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{p['kwok']}",
                "--cidr=10.244.0.0/16",  # pod IPs, apart from the service range 10.0.0.0/24
                *(f"--config={stages / s}.yaml" for s in KWOK_STAGES),
            ]
        raise ValueError(name)

    def _start(self, name: str) -> None:
        logf = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen(
            [str(self.bin / name), *self._args(name)],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=self.state,
            # Own session: survives the make/pytest that started it and gets no terminal signals.
            start_new_session=True,
        )
        logf.close()
        (self.pids / f"{name}.pid").write_text(f"{proc.pid} {_start_time(proc.pid)}\n")

    def _start_and_wait(self, name: str, timeout: float) -> None:
        t0 = time.monotonic()
        self._start(name)
        self._wait(f"{name} health", lambda: self.component_healthy(name), timeout, name)
        log(f"{name} healthy ({time.monotonic() - t0:.1f}s, pid {self.pid(name)})")

    def apply_nodes(self, nodes: list[dict[str, Any]]) -> None:
        # `kubectl create` keeps .status of a new Node (that is how it gets capacity); existing
        # nodes are left alone.
        existing = {
            n["metadata"]["name"]
            for n in _kubectl_json(self.kubectl_path, self.kubeconfig, "get", "nodes")["items"]
        }
        new = [n for n in nodes if n["metadata"]["name"] not in existing]
        if new:
            doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": new})
            self.kubectl("create", "-f", "-", input=doc)

    # -- commands ---------------------------------------------------------------------------

    def up(self, profile_path: Path) -> None:
        t0 = time.monotonic()
        if self.healthy():
            log(f"already running and healthy ({self.state}); nothing to do")
            running = self.state / "profile.yaml"
            if load_profile(running) != load_profile(profile_path):
                log(f"note: it runs the profile in {running}, not {profile_path}; `down` first")
            return
        if self.state.exists():
            log(f"found a stale or unhealthy cluster in {self.state}: tearing it down first")
            self.down()
        profile = load_profile(profile_path)
        nodes = node_manifests(profile)
        for d in (self.logs, self.pids):
            d.mkdir(parents=True)
        self._link_binaries()
        (self.state / "ports.json").write_text(json.dumps(pick_ports(), indent=2) + "\n")
        shutil.copy(profile_path, self.state / "profile.yaml")
        self._write_pki()
        self._write_auth()
        self.audit_policy.write_text(AUDIT_POLICY)
        try:
            self._start_and_wait("etcd", 30)
            self._start_and_wait("kube-apiserver", 90)
            self._start_and_wait("kube-controller-manager", 60)
            self._start_and_wait("kube-scheduler", 60)
            self._start_and_wait("kwok", 30)
            self.apply_nodes(nodes)
            names = [n["metadata"]["name"] for n in nodes]
            wait_nodes_ready(self.kubectl_path, self.kubeconfig, names, timeout=120)
            log(f"{len(names)} nodes Ready")
            # The default namespace comes from the apiserver, its ServiceAccount from the
            # controller manager; pods cannot be created in it before the latter exists.
            self._wait(
                "ServiceAccount default/default",
                lambda: (
                    self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0
                ),
                60,
                "kube-controller-manager",
            )
        except BaseException as e:  # including Ctrl-C: leave no half-started cluster behind
            log(
                f"FAILED: {e}"
                + (f"\n{e.stderr}" if isinstance(e, subprocess.CalledProcessError) else "")
            )
            for name in COMPONENTS:
                logfile = self.logs / f"{name}.log"
                if logfile.exists():
                    tail = logfile.read_text(errors="replace").splitlines()[-8:]
                    print(f"--- {logfile} (last lines)\n" + "\n".join(tail), file=sys.stderr)
            self.stop_processes()
            log(f"processes stopped; logs kept in {self.logs} (`down` removes them)")
            raise SystemExit(1) from e
        log(f"cluster up in {time.monotonic() - t0:.1f}s: apiserver https://127.0.0.1:"
            f"{self.ports['apiserver']}, {len(nodes)} GPU nodes")  # fmt: skip

    def stop_processes(self, timeout: float = 5) -> None:
        """SIGTERM everything we started (reverse order), SIGKILL what is left, verify gone.

        The grace period is short on purpose: kube-apiserver drains for ~11 s after SIGTERM,
        which buys nothing for a cluster whose state is deleted next."""
        pids = {}
        for name in reversed(COMPONENTS):
            pid = self.pid(name)
            if pid is not None:
                pids[name] = pid
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, pid in pids.items():
            if _alive(pid):
                log(f"{name} (pid {pid}) still running {timeout}s after SIGTERM: SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids.values()):
            if time.monotonic() > deadline:
                left = {n: p for n, p in pids.items() if _alive(p)}
                raise SystemExit(f"processes still running after SIGKILL: {left}")
            time.sleep(0.1)
        if pids:
            log("stopped " + ", ".join(f"{n} ({p})" for n, p in pids.items()))

    def down(self) -> None:
        if not self.state.exists():
            log(f"no cluster state in {self.state}; nothing to do")
            return
        self.stop_processes()
        shutil.rmtree(self.state)
        log(f"removed {self.state}")

    def status(self) -> bool:
        if not (self.state / "ports.json").exists():
            log(f"not running (no state in {self.state})")
            return False
        ok = True
        for name in COMPONENTS:
            healthy = self.component_healthy(name)
            ok &= healthy
            print(f"  {name:<24} pid {self.pid(name)!s:<8} {'healthy' if healthy else 'DOWN'}")
        print(f"  ports: {json.dumps(self.ports)}")
        if self.component_healthy("kube-apiserver"):
            nodes = _kubectl_json(self.kubectl_path, self.kubeconfig, "get", "nodes")["items"]
            ready = sum(node_ready(n) for n in nodes)
            print(f"  nodes: {ready}/{len(nodes)} Ready")
        print(f"  export KUBECONFIG={self.kubeconfig}")
        return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    args = parser.parse_args(argv)
    cluster = Cluster(args.state_dir)
    if args.command == "up":
        cluster.up(args.profile)
    elif args.command == "down":
        cluster.down()
    else:
        return 0 if cluster.status() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
