"""GPUQueues end to end on the real local control plane: two teams borrow and reclaim, a job
above its queue's maxPriority and a job naming a queue that does not list its namespace are
refused, the API server refuses bad queues, `kubectl get gq` shows usage/nominal.

GPUQueues are cluster-wide: while they exist every job needs a queue. The module deletes
them at the end so later modules plan as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cluster.conftest import GROUP, VERSION, Env, Kube
from tests.cluster.operator_harness import H100, OperatorProcess, training


def gpu_queue(name: str, namespaces: list[str], nominal: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "GPUQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaces": namespaces,
            "quota": [{"product": H100, "nominal": nominal}],
            **spec,
        },
    }


class Teams:
    """Two teams (namespaces, queues team-a / team-b with 8 H100 each) on one node pool."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.a = Env(kube)  # team-a's namespace and the shared node pool
        self.b_namespace = kube.create_namespace("team-b")
        self.custom = client.CustomObjectsApi(kube.api_client())
        self.queues: list[str] = []

    def add_queue(self, obj: dict[str, Any]) -> None:
        self.custom.create_cluster_custom_object(GROUP, VERSION, "gpuqueues", obj)
        self.queues.append(obj["metadata"]["name"])

    def queue(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_cluster_custom_object(
            GROUP, VERSION, "gpuqueues", name
        )
        return result

    def apply_b(self, obj: dict[str, Any]) -> None:
        obj["metadata"]["namespace"] = self.b_namespace
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.b_namespace, "llmtrainingjobs", obj
        )

    def get_b(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.b_namespace, "llmtrainingjobs", name
        )
        return result

    def close(self) -> None:
        for name in self.queues:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, "gpuqueues", name)
        self.kube.delete_namespace(self.b_namespace)
        self.a.close()


@pytest.fixture
def teams(kube: Kube, operator: OperatorProcess) -> Iterator[Teams]:
    t = Teams(kube)
    try:
        t.add_queue(gpu_queue("team-a", [t.a.namespace], 8, maxPriority=100))
        t.add_queue(gpu_queue("team-b", [t.b_namespace], 8))
        yield t
    finally:
        t.close()


def test_two_teams_borrow_and_reclaim(teams: Teams, operator: OperatorProcess) -> None:
    kube, a = teams.kube, teams.a
    a.add_nodes(2)
    pool = a.pool
    # team-b alone: its second gang borrows team-a's idle nominal
    teams.apply_b(training("b-first", "", pool, workers=1, gpus=8, preemptible=True))
    kube.wait_for(lambda: teams.get_b("b-first").get("status", {}).get("phase") == "Running")
    teams.apply_b(training("b-second", "", pool, workers=1, gpus=8, preemptible=True))
    kube.wait_for(lambda: teams.get_b("b-second").get("status", {}).get("phase") == "Running")
    kube.wait_for(
        lambda: teams.queue("team-b").get("status", {}).get("borrowedGPUs") == 8,
        what="team-b borrowing 8",
    )
    assert teams.queue("team-b")["status"]["gpus"] == "16/8"
    kube.wait_for(
        lambda: (
            operator.metric("gpualloc_queue_borrowed_gpus") == 8
            and operator.metric("gpualloc_queue_nominal_gpus") == 16
        ),
        what="queue metrics: 8 borrowed of 2 x 8 nominal",
    )
    # team-a's demand comes back: the newest borrowing gang is evicted for it
    a.apply(training("a-owner", a.namespace, pool, workers=1, gpus=8))
    a.wait_phase("LLMTrainingJob", "a-owner", "Running", timeout=90)
    second = teams.get_b("b-second")["status"]
    assert second["phase"] in ("Preempted", "Unschedulable"), second
    assert teams.get_b("b-first")["status"]["phase"] == "Running"
    events = kube.core.list_namespaced_event(
        teams.b_namespace, field_selector="involvedObject.name=b-second"
    ).items
    assert any(e.reason == "Preempted" and "reclaimed by queue team-a" in e.message for e in events)
    # and it is not given back: team-b is at its nominal, team-a keeps its GPUs
    kube.wait_for(
        lambda: teams.queue("team-a").get("status", {}).get("gpus") == "8/8",
        what="team-a at 8/8",
    )
    assert "queue team-b is at its nominal 8" in teams.get_b("b-second")["status"]["message"]
    table = kube.kubectl("get", "gq").stdout
    assert "team-a" in table and "8/8" in table
    header = table.splitlines()[0].split()
    assert header[:3] == ["NAME", "PARENT", "WEIGHT"] and "GPUS" in header


def test_a_job_above_max_priority_is_refused(teams: Teams) -> None:
    a = teams.a
    a.add_nodes(1)
    a.apply(training("vip", a.namespace, a.pool, workers=1, gpus=8, priority=1000))
    job = a.wait_phase("LLMTrainingJob", "vip", "Failed")
    assert (
        "spec.priority: 1000 is above the maxPriority 100 of queue team-a"
        in (job["status"]["message"])
    )
    invalid = [c for c in job["status"]["conditions"] if c["type"] == "Invalid"]
    assert invalid and invalid[0]["status"] == "True"
    assert not [p for p in a.pods("vip") if p.spec.node_name]


def test_a_namespace_the_queue_does_not_list_is_refused(teams: Teams) -> None:
    a = teams.a
    a.add_nodes(1)
    a.apply(training("intruder", a.namespace, a.pool, workers=1, gpus=8, queue="team-b"))
    job = a.wait_phase("LLMTrainingJob", "intruder", "Failed")
    assert f"queue team-b does not list namespace {a.namespace}" in job["status"]["message"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"quota": [{"product": H100, "nominal": 4, "lendingLimit": 8}]}, "lendingLimit"),
        ({"quota": [{"product": H100, "nominal": 4}] * 2}, "Duplicate value"),
        ({"weight": 5000}, "spec.weight"),
        ({"parent": "self-loop"}, "spec.parent cannot be the queue itself"),
        ({"preemption": {"withinQueue": "Always"}}, "spec.preemption.withinQueue"),
        ({"namespaces": ["Not_A_Namespace"]}, "spec.namespaces"),
    ],
)
def test_bad_queues_are_refused_by_the_api_server(
    kube: Kube, crds: None, spec: dict[str, Any], message: str
) -> None:
    doc = {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "GPUQueue",
        "metadata": {"name": "self-loop"},
        "spec": spec,
    }
    result = kube.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr
