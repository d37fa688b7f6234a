"""Cluster tests run against the real local control plane of hack/localcluster.py.

The session fixture `kube` reuses a cluster that is already up and healthy (`make cluster-up`)
and leaves it running; otherwise it starts one and tears it down at the end of the session
(set GPUALLOC_KEEP_CLUSTER=1 to keep it). GPUALLOC_CLUSTER_STATE / GPUALLOC_CLUSTER_PROFILE
choose the state dir (default .cluster) and the profile (default hack/profiles/default.yaml).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "hack"))
import localcluster  # noqa: E402

from tests.cluster.operator_harness import H100, POOL_LABEL, OperatorProcess  # noqa: E402

T = TypeVar("T")


class Kube:
    """Handle on the running local cluster."""

    def __init__(self, state_dir: Path) -> None:
        self.cluster = localcluster.Cluster(state_dir)
        self.state_dir = self.cluster.state
        self.kubeconfig = self.cluster.kubeconfig
        self.bin = self.cluster.bin
        self._core: client.CoreV1Api | None = None

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run .cluster/bin/kubectl against this cluster; output captured as text."""
        return self.cluster.kubectl(*args, check=check, input=input)

    def api_client(self) -> client.ApiClient:
        """A new kubernetes-client ApiClient for this cluster (close it when done)."""
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def core(self) -> client.CoreV1Api:
        """A shared CoreV1Api."""
        if self._core is None:
            self._core = client.CoreV1Api(self.api_client())
        return self._core

    @staticmethod
    def wait_for(
        fn: Callable[[], T | None], timeout: float = 30, what: str = "condition", every: float = 0.2
    ) -> T:
        """Poll fn until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while True:
            result = fn()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(every)

    def create_namespace(self, prefix: str = "test") -> str:
        """A fresh namespace, returned once its default ServiceAccount exists (before that the
        ServiceAccount admission plugin rejects pods)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self.wait_for(
            lambda: (
                self.core.list_namespaced_service_account(
                    name, field_selector="metadata.name=default"
                ).items
            ),
            what=f"ServiceAccount {name}/default",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        self.core.delete_namespace(name, propagation_policy="Background")

    def add_nodes(self, pool: dict[str, Any], start: int = 0, wait: bool = True) -> list[str]:
        """Create kwok GPU nodes from a profile pool spec (see hack/profiles/default.yaml),
        e.g. {"count": 2, "namePrefix": "t-", "gpuProduct": "X", "gpusPerNode": 8,
        "gpuMemoryMiB": 81559}; returns their names, by default once they are Ready."""
        nodes = localcluster.pool_node_manifests(pool, start)
        for node in nodes:
            self.core.create_node(node)
        names = [n["metadata"]["name"] for n in nodes]
        if wait:
            localcluster.wait_nodes_ready(self.bin / "kubectl", self.kubeconfig, names)
        return names

    def remove_nodes(self, names: list[str]) -> None:
        for name in names:
            self.core.delete_node(name)


def _localcluster(*args: str) -> subprocess.CompletedProcess[str]:
    # A subprocess, as `make cluster-up` runs it: the components it starts are not our children.
    script = REPO / "hack" / "localcluster.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    state = Path(os.environ.get("GPUALLOC_CLUSTER_STATE", REPO / ".cluster"))
    profile = os.environ.get("GPUALLOC_CLUSTER_PROFILE", str(localcluster.DEFAULT_PROFILE))
    k = Kube(state)
    started = not k.cluster.healthy()
    if started:
        up = _localcluster("up", "--profile", profile, "--state-dir", str(state))
        if up.returncode != 0:
            pytest.fail(f"local cluster did not come up:\n{up.stdout}\n{up.stderr}")
    try:
        yield k
    finally:
        if started and not os.environ.get("GPUALLOC_KEEP_CLUSTER"):
            down = _localcluster("down", "--state-dir", str(state))
            assert down.returncode == 0, f"cluster down failed:\n{down.stdout}\n{down.stderr}"


@pytest.fixture(scope="module")
def crds(kube: Kube) -> None:
    """The gpualloc CRDs from crds/, installed and Established."""
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A unique namespace per test, deleted afterwards (with everything in it)."""
    name = kube.create_namespace()
    yield name
    kube.delete_namespace(name)


# -- the operator and one test's own corner of the cluster ---------------------------------
GROUP, VERSION = "gpualloc.io", "v1alpha1"
PLURAL = {"LLMTrainingJob": "llmtrainingjobs", "LLMInferenceJob": "llminferencejobs"}


@contextmanager
def default_policy(kube: Kube, spec: dict[str, Any]) -> Iterator[None]:
    """The AllocationPolicy `default` with `spec`, deleted afterwards."""
    custom = client.CustomObjectsApi(kube.api_client())
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AllocationPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "allocationpolicies", body)
    try:
        yield
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "allocationpolicies", "default")


@contextmanager
def operator_under_policy(
    kube: Kube, tmp_path_factory: pytest.TempPathFactory, spec: dict[str, Any]
) -> Iterator[OperatorProcess]:
    """An operator started once the default AllocationPolicy has `spec` (stopped, and the
    policy deleted, afterwards: also when it never leads)."""
    with default_policy(kube, spec):
        op = OperatorProcess(kube.kubeconfig, tmp_path_factory.mktemp("operator")).start()
        try:
            op.wait_leading()
            yield op
        finally:
            op.stop()


@pytest.fixture(scope="module")
def operator(
    kube: Kube, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    op = OperatorProcess(kube.kubeconfig, tmp_path_factory.mktemp("operator")).start()
    try:  # stopped even when it never leads: an orphan would hold the lease for the next run
        op.wait_leading()
        yield op
    finally:
        op.stop()


class Env:
    """One test's namespace and its own kwok GPU nodes (jobs are pinned to them by label)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.pool = f"p{uuid.uuid4().hex[:6]}"
        self.namespace = kube.create_namespace("op")
        self.custom = client.CustomObjectsApi(kube.api_client())
        self.nodes: list[str] = []

    def add_nodes(self, count: int, product: str = H100, gpus: int = 8) -> list[str]:
        names = self.kube.add_nodes(
            {
                "count": count,
                "namePrefix": f"{self.pool}-{product.split('-')[1].lower()}-",
                "gpuProduct": product,
                "gpusPerNode": gpus,
                "gpuMemoryMiB": 81559 if product == H100 else 40960,
                "labels": {POOL_LABEL: self.pool},
            },
            start=len(self.nodes),
        )
        self.nodes += names
        return names

    def apply(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["namespace"] = self.namespace
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL[obj["kind"]], obj
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL[kind], name
        )
        return result

    def phase(self, kind: str, name: str) -> str | None:
        return (self.get(kind, name).get("status") or {}).get("phase")

    def wait_phase(self, kind: str, name: str, phase: str, timeout: float = 30) -> dict[str, Any]:
        return self.kube.wait_for(
            lambda: self.get(kind, name) if self.phase(kind, name) == phase else None,
            timeout=timeout,
            what=f"{kind} {name} phase {phase} (now {self.phase(kind, name)})",
        )

    def pods(self, job: str) -> list[client.V1Pod]:
        return list(
            self.kube.core.list_namespaced_pod(
                self.namespace, label_selector=f"gpualloc.io/job={job}"
            ).items
        )

    def events(self, name: str) -> list[tuple[str, str]]:
        items = self.kube.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return [(e.reason, e.message) for e in items]

    def close(self) -> None:
        self.kube.delete_namespace(self.namespace)
        self.kube.wait_for(
            lambda: not self.kube.core.list_namespaced_pod(self.namespace).items,
            timeout=60,
            what="test pods gone",
        )
        self.kube.remove_nodes(self.nodes)


@pytest.fixture
def env(kube: Kube, operator: OperatorProcess) -> Iterator[Env]:
    e = Env(kube)
    yield e
    e.close()
