"""The operator end to end on the real local control plane: gpualloc creates gated pods,
plans globally, pins and ungates them, and the real kube-scheduler binds them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cluster.conftest import GROUP, VERSION, Env, Kube
from tests.cluster.operator_harness import (
    A100,
    H100,
    REPO,
    OperatorProcess,
    inference,
    training,
)


def _gated(pod: client.V1Pod) -> bool:
    return any(g.name == "gpualloc.io/placement" for g in pod.spec.scheduling_gates or [])


def _pinned_node(pod: client.V1Pod) -> str | None:
    affinity = pod.spec.affinity
    if not affinity or not affinity.node_affinity:
        return None
    terms = affinity.node_affinity.required_during_scheduling_ignored_during_execution
    for term in terms.node_selector_terms if terms else []:
        for field in term.match_fields or []:
            if field.key == "metadata.name":
                return str(field.values[0])
    return None


def test_gang_is_placed_on_the_planned_nodes_and_runs(env: Env) -> None:
    env.add_nodes(3)
    env.apply(training("gang", env.namespace, env.pool, workers=3, gpus=8))
    job = env.wait_phase("LLMTrainingJob", "gang", "Running")
    pods = env.pods("gang")
    assert len(pods) == 3
    planned = {a["replica"]: a["node"] for a in job["status"]["allocation"]}
    for pod in pods:
        replica = int(pod.metadata.labels["gpualloc.io/replica"])
        assert pod.status.phase == "Running"
        assert pod.spec.node_name == planned[replica] == _pinned_node(pod)
        env_vars = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env_vars["WORLD_SIZE"] == "3" and env_vars["RANK"] == str(replica)
        assert env_vars["MASTER_ADDR"].startswith(f"gang-worker-0.gang.{env.namespace}")
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "8"
    assert len({p.spec.node_name for p in pods}) == 3
    assert job["status"]["gpus"] == 24
    assert ("Allocated", f"placed 3 x 8 GPUs on {', '.join(sorted(planned.values()))}") in (
        env.events("gang")
    )
    svc = env.kube.core.read_namespaced_service("gang", env.namespace)
    assert svc.spec.cluster_ip == "None"


def test_gang_that_does_not_fit_leaves_every_pod_gated(env: Env) -> None:
    env.add_nodes(2)
    env.apply(training("toolarge", env.namespace, env.pool, workers=3, gpus=8))
    job = env.wait_phase("LLMTrainingJob", "toolarge", "Unschedulable")
    assert "needs 3 workers x 8 GPUs" in job["status"]["message"]
    pods = env.pods("toolarge")
    assert len(pods) == 3
    assert all(_gated(p) and not p.spec.node_name for p in pods)
    reasons = dict(env.events("toolarge"))
    assert "needs 3 workers x 8 GPUs" in reasons["Unschedulable"]


def test_gpu_products_are_honoured(env: Env) -> None:
    env.add_nodes(1, H100)
    a100 = env.add_nodes(2, A100)
    env.apply(
        training("on-a100", env.namespace, env.pool, workers=2, gpus=8, gpu={"products": [A100]})
    )
    env.wait_phase("LLMTrainingJob", "on-a100", "Running")
    assert sorted(p.spec.node_name for p in env.pods("on-a100")) == sorted(a100)


def test_preemption_of_lower_priority_preemptible_gang(env: Env) -> None:
    env.add_nodes(2)
    env.apply(
        training("low", env.namespace, env.pool, workers=2, gpus=8, priority=1, preemptible=True)
    )
    env.wait_phase("LLMTrainingJob", "low", "Running")
    env.apply(training("high", env.namespace, env.pool, workers=1, gpus=8, priority=100))
    env.wait_phase("LLMTrainingJob", "high", "Running")
    low = env.get("LLMTrainingJob", "low")
    assert low["status"]["phase"] in ("Preempted", "Unschedulable")
    assert "Preempted" in dict(env.events("low"))
    # the whole victim gang went back to waiting: no pod of it is bound
    assert all(not p.spec.node_name for p in env.pods("low"))


def test_non_preemptible_gang_is_never_evicted(env: Env) -> None:
    env.add_nodes(1)
    env.apply(training("steady", env.namespace, env.pool, workers=1, gpus=8, priority=1))
    env.wait_phase("LLMTrainingJob", "steady", "Running")
    env.apply(training("urgent", env.namespace, env.pool, workers=1, gpus=8, priority=100))
    env.wait_phase("LLMTrainingJob", "urgent", "Unschedulable")
    assert env.phase("LLMTrainingJob", "steady") == "Running"
    assert "Preempted" not in dict(env.events("steady"))


def test_deleting_a_node_replaces_its_pods_elsewhere(env: Env) -> None:
    env.add_nodes(2)
    env.apply(inference("svc", env.namespace, env.pool, replicas=1, gpus=8))
    job = env.wait_phase("LLMInferenceJob", "svc", "Running")
    first = job["status"]["allocation"][0]["node"]
    env.kube.remove_nodes([first])
    env.nodes.remove(first)

    def moved() -> bool:
        pods = env.pods("svc")
        return (
            len(pods) == 1
            and pods[0].spec.node_name not in (None, first)
            and (pods[0].status.phase == "Running")
        )

    env.kube.wait_for(moved, timeout=40, what="replica re-placed on the other node")
    assert "Rescheduled" in dict(env.events("svc"))


def test_cordoned_nodes_get_nothing(env: Env) -> None:
    node = env.add_nodes(1)[0]
    env.kube.kubectl("cordon", node)
    env.apply(inference("cordoned", env.namespace, env.pool, replicas=1, gpus=1))
    job = env.wait_phase("LLMInferenceJob", "cordoned", "Unschedulable")
    assert "cordoned" in job["status"]["message"]
    env.kube.kubectl("uncordon", node)  # a re-solve trigger: now it fits
    env.wait_phase("LLMInferenceJob", "cordoned", "Running")


def test_scale_subresource_adds_replicas(env: Env) -> None:
    env.add_nodes(1)
    env.apply(inference("web", env.namespace, env.pool, replicas=1, gpus=2, maxReplicas=4))
    env.wait_phase("LLMInferenceJob", "web", "Running")
    env.kube.kubectl("scale", "-n", env.namespace, "lij/web", "--replicas", "3")
    env.kube.wait_for(
        lambda: env.get("LLMInferenceJob", "web")["status"].get("placed") == 3,
        what="3 replicas placed",
    )
    env.kube.kubectl("scale", "-n", env.namespace, "lij/web", "--replicas", "1")
    env.kube.wait_for(
        lambda: len([p for p in env.pods("web") if not p.metadata.deletion_timestamp]) == 1,
        what="scaled down to 1",
    )
    env.kube.kubectl("scale", "-n", env.namespace, "lij/web", "--replicas", "0")
    env.kube.wait_for(
        lambda: not [p for p in env.pods("web") if not p.metadata.deletion_timestamp],
        what="scaled to 0",
    )
    assert env.wait_phase("LLMInferenceJob", "web", "Pending")["status"]["gpus"] == 0


def test_deleting_a_job_deletes_its_pods(env: Env) -> None:
    env.add_nodes(1)
    env.apply(inference("gone", env.namespace, env.pool, replicas=2, gpus=1))
    env.wait_phase("LLMInferenceJob", "gone", "Running")
    env.custom.delete_namespaced_custom_object(
        GROUP, VERSION, env.namespace, "llminferencejobs", "gone"
    )
    env.kube.wait_for(lambda: not env.pods("gone"), timeout=40, what="pods garbage-collected")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"workers": 0, "gpusPerWorker": 8}, "spec.workers"),
        ({"workers": 2, "minWorkers": 3, "gpusPerWorker": 8}, "spec.minWorkers"),
        ({"workers": 2, "gpusPerWorker": 0}, "spec.gpusPerWorker"),
        ({"workers": 2}, "spec.gpusPerWorker: Invalid value"),
        ({"model": {"parameters": "7B", "precision": "fp3"}}, "spec.model.precision"),
        ({"model": {"parameters": "seven"}}, "spec.model.parameters"),
    ],
)
def test_bad_training_specs_are_rejected_by_the_api_server(
    kube: Kube, crds: None, spec: dict[str, Any], message: str
) -> None:
    doc = {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "LLMTrainingJob",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": spec,
    }
    result = kube.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_bad_inference_spec_is_rejected(kube: Kube, crds: None) -> None:
    doc = {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "LLMInferenceJob",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"gpusPerReplica": 1, "minReplicas": 5, "maxReplicas": 2, "replicas": 2},
    }
    result = kube.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert result.returncode != 0 and "spec.minReplicas" in result.stderr, result.stderr


def test_printer_columns_and_category(env: Env) -> None:
    env.add_nodes(1)
    env.apply(inference("cols", env.namespace, env.pool, replicas=1, gpus=4, priority=7))
    env.wait_phase("LLMInferenceJob", "cols", "Running")
    # the category lists every gpualloc kind: one table per kind (an AllocationPolicy of
    # another test may come first); the job's table has the job columns
    lines = env.kube.kubectl("get", "gpualloc", "-n", env.namespace).stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "cols" in line)
    header = next(line for line in reversed(lines[:at]) if line.startswith("NAME")).split()
    assert header[:7] == ["NAME", "PHASE", "PRIORITY", "GPUS", "REPLICAS", "NODES", "AGE"]
    assert lines[at].split()[1:5] == ["Running", "7", "4", "1"]


def test_restart_mid_round_adopts_pods_without_duplicates(
    kube: Kube, crds: None, operator: OperatorProcess, tmp_path: Any
) -> None:
    e = Env(kube)
    try:
        e.add_nodes(3)
        for i in range(4):
            e.apply(inference(f"r{i}", e.namespace, e.pool, replicas=2, gpus=2))
        e.apply(training("t", e.namespace, e.pool, workers=2, gpus=4))
        operator.kill()  # crash while it is creating / placing these
        replacement = OperatorProcess(kube.kubeconfig, tmp_path, "restarted").start()
        _hand_over(operator, replacement)
        replacement.wait_leading()
        for i in range(4):
            e.wait_phase("LLMInferenceJob", f"r{i}", "Running", timeout=60)
        e.wait_phase("LLMTrainingJob", "t", "Running", timeout=60)
        before = {
            p.metadata.name: (p.metadata.uid, p.spec.node_name)
            for p in kube.core.list_namespaced_pod(e.namespace).items
        }
        assert len(before) == 10  # 4 x 2 replicas + 2 workers, no duplicates
        # a second restart changes nothing: same pods, same nodes
        replacement.kill()
        again = OperatorProcess(kube.kubeconfig, tmp_path, "again").start()
        _hand_over(operator, again)
        again.wait_leading()
        after = {
            p.metadata.name: (p.metadata.uid, p.spec.node_name)
            for p in kube.core.list_namespaced_pod(e.namespace).items
        }
        assert after == before
    finally:
        e.close()


def _hand_over(fixture: OperatorProcess, running: OperatorProcess) -> None:
    """The module fixture stops whichever runs last, even when the test fails: an orphan
    would hold the lease and no later module's operator would ever lead."""
    fixture.proc, fixture.metrics_port = running.proc, running.metrics_port
    fixture.health_port, fixture.log_path = running.health_port, running.log_path


def test_two_replicas_elect_one_leader(
    kube: Kube, crds: None, operator: OperatorProcess, tmp_path: Any
) -> None:
    second = OperatorProcess(kube.kubeconfig, tmp_path, "second").start()
    try:
        kube.wait_for(lambda: second.metric("gpualloc_leader") is not None, what="metrics")
        assert operator.metric("gpualloc_leader") == 1
        assert second.metric("gpualloc_leader") == 0
        assert not second.metric("gpualloc_rounds_total")
    finally:
        second.stop()


def test_samples_are_valid(kube: Kube, crds: None) -> None:
    samples = sorted((REPO / "manifests" / "samples").glob("*.yaml"))
    kube.kubectl("apply", "-f", str(samples[0]))  # the namespaces
    for path in samples[1:]:
        result = kube.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
        assert result.returncode == 0, result.stderr


def test_policy_shows_the_last_solver_status(kube: Kube, operator: OperatorProcess) -> None:
    custom = client.CustomObjectsApi(kube.api_client())
    body = {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "AllocationPolicy",
        "metadata": {"name": "default"},
        "spec": {"solver": {"timeLimitSeconds": 5}},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "allocationpolicies", body)
    try:
        kube.wait_for(
            lambda: (
                custom.get_cluster_custom_object(GROUP, VERSION, "allocationpolicies", "default")
                .get("status", {})
                .get("lastStatus")
                in ("OPTIMAL", "FEASIBLE")
            ),
            timeout=30,
            what="policy status.lastStatus",
        )
        out = kube.kubectl("get", "allocationpolicy", "default").stdout
        assert "OPTIMAL" in out or "FEASIBLE" in out
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "allocationpolicies", "default")
