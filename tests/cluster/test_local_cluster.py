"""The local control plane behaves like a real cluster for GPU pods: the real kube-scheduler
binds them to kwok GPU nodes, kwok runs them, the controllers do their part."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

if TYPE_CHECKING:
    from conftest import Kube

pytestmark = pytest.mark.cluster
GPU = "nvidia.com/gpu"


def gpu_pod(
    name: str,
    gpus: int,
    node_selector: dict[str, str] | None = None,
    gates: list[str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "registry.example/llm-train:latest",  # never pulled: kwok
                "resources": {"requests": {GPU: str(gpus)}, "limits": {GPU: str(gpus)}},
            }
        ],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def running_pod(kube: Kube, ns: str, name: str, timeout: float = 30) -> client.V1Pod:
    def check() -> client.V1Pod | None:
        pod = kube.core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase == "Running" and pod.spec.node_name else None

    return kube.wait_for(check, timeout, f"pod {ns}/{name} Running")


def pod_condition(pod: client.V1Pod, type_: str) -> client.V1PodCondition | None:
    return next((c for c in pod.status.conditions or [] if c.type == type_), None)


def unschedulable(kube: Kube, ns: str, name: str) -> client.V1Pod:
    def check() -> client.V1Pod | None:
        pod = kube.core.read_namespaced_pod(name, ns)
        cond = pod_condition(pod, "PodScheduled")
        ok = cond is not None and cond.status == "False" and cond.reason == "Unschedulable"
        return pod if ok else None

    return kube.wait_for(check, 30, f"pod {ns}/{name} PodScheduled=False/Unschedulable")


def test_gpu_nodes_from_profile(kube: Kube) -> None:
    nodes = kube.core.list_node(label_selector="type=kwok").items
    products = {n.metadata.labels["nvidia.com/gpu.product"] for n in nodes}
    assert len(nodes) >= 8 and len(products) >= 2
    for n in nodes:
        assert int(n.status.allocatable[GPU]) == int(n.metadata.labels["nvidia.com/gpu.count"])
        assert int(n.metadata.labels["nvidia.com/gpu.memory"]) > 0


def test_8_gpu_pod_is_bound_and_runs(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_pod(namespace, gpu_pod("train", 8))
    pod = running_pod(kube, namespace, "train")
    node = kube.core.read_node(pod.spec.node_name)
    assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
    assert int(node.status.allocatable[GPU]) >= 8
    scheduled = pod_condition(pod, "PodScheduled")
    assert scheduled is not None and scheduled.status == "True"

    def scheduled_by_default_scheduler() -> bool:
        events = kube.core.list_namespaced_event(
            namespace, field_selector="involvedObject.name=train,reason=Scheduled"
        ).items
        return any(
            "default-scheduler" in (e.reporting_component, e.source.component) for e in events
        )

    kube.wait_for(scheduled_by_default_scheduler, what="Scheduled event from default-scheduler")


def test_pod_larger_than_any_node_stays_pending(kube: Kube, namespace: str) -> None:
    most = max(int(n.status.allocatable.get(GPU, 0)) for n in kube.core.list_node().items)
    kube.core.create_namespaced_pod(namespace, gpu_pod("huge", most + 1))
    pod = unschedulable(kube, namespace, "huge")
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None
    assert "Insufficient nvidia.com/gpu" in (pod_condition(pod, "PodScheduled").message or "")


def test_cordoned_node_gets_no_new_pods(kube: Kube, namespace: str) -> None:
    # Own nodes with their own product, so cordoning disturbs no other test.
    product = f"TEST-CORDON-{uuid.uuid4().hex[:6]}"
    pool = {"count": 2, "namePrefix": f"{product.lower()}-", "gpuProduct": product}
    pool |= {"gpusPerNode": 8, "gpuMemoryMiB": 81559}
    cordoned, free = kube.add_nodes(pool)
    try:
        kube.kubectl("cordon", cordoned)
        selector = {"nvidia.com/gpu.product": product}
        for i in range(2):
            kube.core.create_namespaced_pod(namespace, gpu_pod(f"p{i}", 4, selector))
        for i in range(2):
            assert running_pod(kube, namespace, f"p{i}").spec.node_name == free
        # The free node is full now; the cordoned one has room but must stay unused.
        kube.core.create_namespaced_pod(namespace, gpu_pod("p2", 4, selector))
        unschedulable(kube, namespace, "p2")
        kube.kubectl("uncordon", cordoned)
        assert running_pod(kube, namespace, "p2").spec.node_name == cordoned
    finally:
        kube.kubectl("uncordon", cordoned, check=False)
        kube.remove_nodes([cordoned, free])


def test_scheduling_gate_holds_pod_until_removed(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_pod(namespace, gpu_pod("gated", 1, gates=["gpualloc.io/plan"]))
    pod = kube.wait_for(
        lambda: (p := kube.core.read_namespaced_pod("gated", namespace)).status.conditions and p,
        what="gated pod conditions",
    )
    assert pod_condition(pod, "PodScheduled").reason == "SchedulingGated"
    assert pod.spec.node_name is None
    kube.core.patch_namespaced_pod("gated", namespace, {"spec": {"schedulingGates": None}})
    running_pod(kube, namespace, "gated")


def test_deleting_owner_cascades_to_pods(kube: Kube, namespace: str) -> None:
    labels = {"app": "serve"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "serve"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": gpu_pod("x", 1)["spec"]},
        },
    }
    apps = client.AppsV1Api(kube.api_client())
    apps.create_namespaced_deployment(namespace, deployment)

    def pods() -> list[client.V1Pod]:
        return kube.core.list_namespaced_pod(namespace, label_selector="app=serve").items

    kube.wait_for(
        lambda: len(pods()) == 2 and all(p.status.phase == "Running" for p in pods()),
        what="2 deployment pods Running",
    )
    apps.delete_namespaced_deployment("serve", namespace, propagation_policy="Background")
    # The garbage collector deletes the ReplicaSet, then its pods; kwok finishes the deletion.
    kube.wait_for(lambda: not pods(), what="pods garbage-collected")
