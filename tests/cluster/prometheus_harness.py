"""Real Prometheus (hack/localprom.py) and the fake DCGM exporter for cluster tests, plus the
AllocationPolicy `default` that points the operator at them."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# importable: tests/cluster/conftest.py puts hack/ on sys.path
from fake_dcgm_exporter import FakeDcgmExporter  # noqa: F401
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from localprom import PrometheusServer

from tests.cluster.conftest import Kube
from tests.cluster.operator_harness import REPO, OperatorProcess

GROUP, VERSION = "gpualloc.io", "v1alpha1"
ALERTS = REPO / "helm" / "gpualloc" / "files" / "alerts.yaml"
# instant (no [5m] window as in the default): a cleared XID counts as healthy on the next scrape
XID_QUERY = "max by (Hostname, gpu) (DCGM_FI_DEV_XID_ERRORS) > 0"


def metric_value(op: OperatorProcess, name: str, **labels: str) -> float | None:
    """One series of the operator's /metrics: `name` with exactly these labels among its own."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(m.group(2))
    return None


class Policy:
    """The cluster's AllocationPolicy `default` (created if missing, deleted at the end)."""

    def __init__(self, kube: Kube) -> None:
        self.custom = client.CustomObjectsApi(kube.api_client())

    def get(self) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_cluster_custom_object(
                GROUP, VERSION, "allocationpolicies", "default"
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return obj

    def set_spec(self, spec: dict[str, Any]) -> None:
        current = self.get()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AllocationPolicy",
            "metadata": {"name": "default"},
            "spec": spec,
        }
        if current is None:
            self.custom.create_cluster_custom_object(GROUP, VERSION, "allocationpolicies", body)
        else:
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            self.custom.replace_cluster_custom_object(
                GROUP, VERSION, "allocationpolicies", "default", body
            )

    def condition(self, type_: str = "PrometheusReachable") -> dict[str, Any] | None:
        conditions = ((self.get() or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == type_), None)

    def delete(self) -> None:
        try:
            self.custom.delete_cluster_custom_object(
                GROUP, VERSION, "allocationpolicies", "default"
            )
        except ApiException as err:
            if err.status != 404:
                raise


def prometheus_spec(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "debounceSeconds": 0.3,
        "prometheus": {"url": url, "intervalSeconds": 1, "unhealthyGPUQuery": XID_QUERY, **extra},
    }


@contextmanager
def running_prometheus(root: Any, **kwargs: Any) -> Iterator[PrometheusServer]:
    server = PrometheusServer(root, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()
