"""The Grafana dashboard against real data: the operator runs against the local cluster, real
Prometheus scrapes it and the fake DCGM exporter, and every panel's query returns data.

Set GPUALLOC_DASHBOARD_PREVIEW=docs/dashboard-preview.png to also render the PNG preview of the
README from this run (hack/render_dashboard_preview.py).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import Env, Kube
from tests.cluster.operator_harness import A100, H100, REPO, OperatorProcess, inference, training
from tests.cluster.prometheus_harness import (
    FakeDcgmExporter,
    Policy,
    PrometheusServer,
    prometheus_spec,
)

DASHBOARD = REPO / "helm" / "gpualloc" / "files" / "dashboard.json"


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets") or []
    ]


def concrete(expr: str) -> str:
    """Grafana's variables as Grafana would set them: $__rate_interval for a 1 s scrape
    interval, $queue to the implicit queue exported when no GPUQueue exists."""
    return expr.replace("$__rate_interval", "1m").replace("$queue", "(cluster)")


@pytest.fixture(scope="module")
def stack(
    kube: Kube, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, PrometheusServer, FakeDcgmExporter]]:
    dcgm = FakeDcgmExporter()
    dcgm_port = dcgm.start()
    prom = PrometheusServer(tmp_path_factory.mktemp("prometheus")).start()
    policy = Policy(kube)
    policy.set_spec(prometheus_spec(prom.url))
    lease_ns = kube.create_namespace("lease")
    op = OperatorProcess(kube.kubeconfig, tmp_path_factory.mktemp("operator"), "dash")
    op.start(lease_namespace=lease_ns)
    prom.set_targets("gpualloc", [f"127.0.0.1:{op.metrics_port}"])
    prom.set_targets("dcgm-exporter", [f"127.0.0.1:{dcgm_port}"])
    try:
        op.wait_leading()
        yield op, prom, dcgm
    finally:
        op.stop()
        prom.stop()
        dcgm.stop()
        policy.delete()
        kube.delete_namespace(lease_ns)


def test_every_panel_query_returns_data(
    kube: Kube, stack: tuple[OperatorProcess, PrometheusServer, FakeDcgmExporter]
) -> None:
    _op, prom, dcgm = stack
    env = Env(kube)
    try:
        started = time.time()
        h100 = env.add_nodes(2, H100)
        a100 = env.add_nodes(2, A100)
        for node in h100:
            dcgm.add_node(node, 8, H100)
        for node in a100:
            dcgm.add_node(node, 8, A100)
        dcgm.set_xid(a100[1], 5, 79)
        # work arriving over a few rounds: training gangs, an inference service, one too big
        ns, pool = env.namespace, env.pool
        env.apply(training("llama-70b", ns, pool, workers=2, gpus=8, priority=100))
        time.sleep(2)
        env.apply(inference("chat", ns, pool, replicas=3, gpus=2, priority=1000))
        time.sleep(2)
        env.apply(training("finetune", ns, pool, workers=1, gpus=4, preemptible=True))
        env.apply(training("too-big", ns, pool, workers=4, gpus=8, priority=10))
        env.wait_phase("LLMTrainingJob", "llama-70b", "Running")
        env.wait_phase("LLMTrainingJob", "too-big", "Unschedulable")

        queries = panel_queries()
        assert len(queries) >= 20

        def missing() -> list[str]:
            empty = []
            for title, expr in queries:
                values = [float(s["value"][1]) for s in prom.query(concrete(expr))]
                if not [v for v in values if not math.isnan(v)]:
                    empty.append(f"{title}: {expr}")
            return empty

        deadline = time.monotonic() + 60
        while (left := missing()) and time.monotonic() < deadline:
            time.sleep(1)
        assert not left, "panels without data:\n" + "\n".join(left)

        # and the values are the cluster's: 32 GPUs managed in this test's pool at least
        total = prom.query("sum(gpualloc_cluster_gpus)")
        assert float(total[0]["value"][1]) >= 32
        jobs = prom.query('gpualloc_job_allocated_gpus{job_name="llama-70b"}')
        assert float(jobs[0]["value"][1]) == 16
        pending = prom.query('gpualloc_job_wait_seconds{job_name="too-big"}')
        assert pending and pending[0]["metric"]["priority"] == "10"

        preview = os.environ.get("GPUALLOC_DASHBOARD_PREVIEW")
        if preview:
            time.sleep(float(os.environ.get("GPUALLOC_DASHBOARD_PREVIEW_SECONDS", "0")))
            import render_dashboard_preview  # hack/, on sys.path via conftest

            render_dashboard_preview.render(prom.url, started, time.time(), REPO / preview)
    finally:
        for node in env.nodes:
            dcgm.remove_node(node)
        env.close()
