"""Prometheus as the operator's input, end to end: the real operator process, a real
Prometheus scraping the fake DCGM exporter every second, the real local control plane."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import Kube
from tests.cluster.operator_harness import H100, OperatorProcess, inference, training
from tests.cluster.prometheus_harness import (
    FakeDcgmExporter,
    Policy,
    PrometheusServer,
    metric_value,
    prometheus_spec,
)
from tests.cluster.test_operator import Env, _pinned_node


@pytest.fixture(scope="module")
def exporter() -> Iterator[tuple[FakeDcgmExporter, int]]:
    exp = FakeDcgmExporter()
    port = exp.start()
    yield exp, port
    exp.stop()


@pytest.fixture(scope="module")
def prom(
    tmp_path_factory: pytest.TempPathFactory, exporter: tuple[FakeDcgmExporter, int]
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus")).start()
    server.set_targets("dcgm-exporter", [f"127.0.0.1:{exporter[1]}"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def policy(kube: Kube, crds: None) -> Iterator[Policy]:
    p = Policy(kube)
    yield p
    p.delete()


@pytest.fixture(scope="module")
def op(
    kube: Kube,
    crds: None,
    prom: PrometheusServer,
    policy: Policy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    policy.set_spec(prometheus_spec(prom.url))
    lease_ns = kube.create_namespace("lease")
    proc = OperatorProcess(kube.kubeconfig, tmp_path_factory.mktemp("operator"), "prom")
    proc.start(lease_namespace=lease_ns)
    proc.wait_leading()
    yield proc
    proc.stop()
    kube.delete_namespace(lease_ns)


@pytest.fixture
def env(kube: Kube, op: OperatorProcess, policy: Policy, prom: PrometheusServer) -> Iterator[Env]:
    e = Env(kube)
    yield e
    e.close()
    policy.set_spec(prometheus_spec(prom.url))  # tests that change the policy: back to normal


def test_gpu_with_xid_errors_takes_its_node_out_of_whole_node_work(
    env: Env, op: OperatorProcess, exporter: tuple[FakeDcgmExporter, int]
) -> None:
    dcgm, _ = exporter
    x, y = env.add_nodes(2)
    for node in (x, y):
        dcgm.add_node(node, 8, H100)
    dcgm.set_xid(x, 3, 79)  # XID 79: GPU has fallen off the bus
    env.kube.wait_for(
        lambda: metric_value(op, "gpualloc_unhealthy_gpus", node=x) == 1,
        timeout=20,
        what=f"operator sees GPU 3 of {x} unhealthy",
    )
    # two 8-GPU workers need both nodes whole: with one bad GPU on x, the gang waits
    env.apply(training("gang", env.namespace, env.pool, workers=2, gpus=8))
    job = env.wait_phase("LLMTrainingJob", "gang", "Unschedulable")
    assert "8" in job["status"]["message"], job["status"]
    assert all(_pinned_node(p) is None for p in env.pods("gang"))
    assert metric_value(op, "gpualloc_unhealthy_gpus", node=y) is None

    # the XID clears: the change alone re-plans (the periodic re-plan is 60 s away)
    dcgm.set_xid(x, 3, 0)
    job = env.wait_phase("LLMTrainingJob", "gang", "Running", timeout=20)
    assert sorted(a["node"] for a in job["status"]["allocation"]) == sorted([x, y])

    # a GPU failing under running work: its pods stay where they are
    dcgm.set_xid(y, 0, 48)
    env.kube.wait_for(
        lambda: metric_value(op, "gpualloc_unhealthy_gpus", node=y) == 1,
        timeout=20,
        what=f"operator sees GPU 0 of {y} unhealthy",
    )
    assert env.phase("LLMTrainingJob", "gang") == "Running"
    assert {p.spec.node_name for p in env.pods("gang")} == {x, y}
    dcgm.remove_node(x)
    dcgm.remove_node(y)


def test_new_work_avoids_the_node_with_a_failed_gpu(
    env: Env, op: OperatorProcess, exporter: tuple[FakeDcgmExporter, int]
) -> None:
    dcgm, _ = exporter
    x, y = env.add_nodes(2)
    for node in (x, y):
        dcgm.add_node(node, 8, H100)
    env.apply(training("first", env.namespace, env.pool, workers=1, gpus=4))
    first = env.wait_phase("LLMTrainingJob", "first", "Running")
    used = first["status"]["allocation"][0]["node"]
    other = y if used == x else x
    # Healthy, a second 4-GPU worker would share `used` (keeps `other` whole); one bad GPU
    # there leaves 3, so it must go to `other`.
    dcgm.set_xid(used, 7, 79)
    env.kube.wait_for(
        lambda: metric_value(op, "gpualloc_unhealthy_gpus", node=used) == 1,
        timeout=20,
        what="unhealthy GPU seen",
    )
    env.apply(training("second", env.namespace, env.pool, workers=1, gpus=4))
    second = env.wait_phase("LLMTrainingJob", "second", "Running")
    assert second["status"]["allocation"][0]["node"] == other
    dcgm.remove_node(x)
    dcgm.remove_node(y)


def test_autoscaling_query_drives_replicas(
    env: Env, op: OperatorProcess, exporter: tuple[FakeDcgmExporter, int]
) -> None:
    dcgm, _ = exporter
    env.add_nodes(1)
    model = f"chat-{uuid.uuid4().hex[:6]}"
    query = f'sum(rate(vllm:request_success_total{{model_name="{model}"}}[5s]))'
    dcgm.set_demand(model, 50)  # 50 req/s at 20 per replica: ceil(2.5) = 3
    env.apply(
        inference(
            "chat",
            env.namespace,
            env.pool,
            replicas=1,
            gpus=1,
            minReplicas=1,
            maxReplicas=4,
            autoscaling={"query": query, "targetPerReplica": 20},
        )
    )

    def replicas(n: int) -> bool:
        status = env.get("LLMInferenceJob", "chat").get("status") or {}
        running = [p for p in env.pods("chat") if p.status.phase == "Running"]
        return (
            status.get("desiredReplicas") == n and status.get("placed") == n and len(running) == n
        )

    env.kube.wait_for(lambda: replicas(3), timeout=30, what="3 replicas for 50 req/s")
    assert metric_value(op, "gpualloc_autoscaling_desired_replicas", job_name="chat") == 3
    dcgm.set_demand(model, 500)  # 25 replicas wanted, maxReplicas 4
    env.kube.wait_for(lambda: replicas(4), timeout=30, what="4 replicas (the maximum)")
    dcgm.set_demand(model, 5)
    env.kube.wait_for(lambda: replicas(1), timeout=30, what="back to 1 replica")


def test_prometheus_outage_keeps_allocating_and_says_so(
    env: Env,
    op: OperatorProcess,
    policy: Policy,
    tmp_path: Path,
    exporter: tuple[FakeDcgmExporter, int],
) -> None:
    dcgm, port = exporter
    (x,) = env.add_nodes(1)
    dcgm.add_node(x, 8, H100)
    dcgm.set_xid(x, 0, 79)
    own = PrometheusServer(tmp_path / "prom").start()
    try:
        own.set_targets("dcgm-exporter", [f"127.0.0.1:{port}"])
        policy.set_spec(prometheus_spec(own.url))
        env.kube.wait_for(
            lambda: metric_value(op, "gpualloc_unhealthy_gpus", node=x) == 1,
            timeout=20,
            what="the unhealthy GPU through the new Prometheus",
        )
        cond = env.kube.wait_for(
            lambda: (c := policy.condition()) and c["status"] == "True" and c, timeout=10
        )
        assert cond["reason"] == "QueriesAnswered"
        assert metric_value(op, "gpualloc_prometheus_up") == 1
        own.stop()

        cond = env.kube.wait_for(
            lambda: (c := policy.condition()) and c["status"] == "False" and c,
            timeout=20,
            what="PrometheusReachable=False",
        )
        assert cond["reason"] == "Unreachable"
        assert own.url.removeprefix("http://") in cond["message"]
        assert metric_value(op, "gpualloc_prometheus_up") == 0
        # capacity alone: the GPU with the XID is not known bad any more; 8-GPU work fits
        assert metric_value(op, "gpualloc_unhealthy_gpus", node=x) is None
        env.apply(training("during", env.namespace, env.pool, workers=1, gpus=8))
        job = env.wait_phase("LLMTrainingJob", "during", "Running")
        assert job["status"]["allocation"][0]["node"] == x
        outage_logs = [line for line in op.logs().splitlines() if "Prometheus input down" in line]
        assert len(outage_logs) == 1, outage_logs  # once per outage, not once per poll

        own.start()  # same port and data: Prometheus is back
        env.kube.wait_for(
            lambda: (c := policy.condition()) and c["status"] == "True",
            timeout=20,
            what="PrometheusReachable=True again",
        )
        assert metric_value(op, "gpualloc_prometheus_up") == 1
        assert "Prometheus input back" in op.logs()
    finally:
        own.stop()
        dcgm.remove_node(x)


def test_failing_query_and_no_prometheus_are_reported(
    env: Env, op: OperatorProcess, policy: Policy, prom: PrometheusServer
) -> None:
    policy.set_spec(prometheus_spec(prom.url, unhealthyGPUQuery="max by (Hostname (oops"))
    cond = env.kube.wait_for(
        lambda: (c := policy.condition()) and c["reason"] == "QueryFailed" and c,
        timeout=20,
        what="PrometheusReachable=False, QueryFailed, for a bad query",
    )
    assert cond["status"] == "False"
    assert "oops" in cond["message"]
    assert metric_value(op, "gpualloc_prometheus_up") == 0

    policy.set_spec({"debounceSeconds": 0.3})
    cond = env.kube.wait_for(
        lambda: (c := policy.condition()) and c["status"] == "Unknown" and c,
        timeout=20,
        what="PrometheusReachable=Unknown without a URL",
    )
    assert cond["reason"] == "NotConfigured"
    assert metric_value(op, "gpualloc_prometheus_up") == -1
    env.add_nodes(1)
    env.apply(training("still", env.namespace, env.pool, workers=1, gpus=8))
    env.wait_phase("LLMTrainingJob", "still", "Running")
