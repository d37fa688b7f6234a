"""Topology-aware gangs on the real local cluster: kwok nodes labelled with racks, the policy
lists the levels, a gang with a required rack lands inside one rack, and a gang no rack can
hold waits with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import GROUP, VERSION, Env, Kube, default_policy
from tests.cluster.operator_harness import H100, POOL_LABEL, training

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
ZONE, RACK = "topology.kubernetes.io/zone", "topology.kubernetes.io/rack"
POLICY: dict[str, Any] = {"topology": {"levels": [ZONE, RACK]}}


@pytest.fixture(scope="module", autouse=True)
def policy_with_levels(kube: Kube, crds: None) -> Iterator[None]:
    """The default AllocationPolicy lists the levels (before the operator of the module)."""
    with default_policy(kube, POLICY):
        yield


def add_rack(env: Env, rack: str, count: int) -> list[str]:
    """`count` 8-GPU H100 kwok nodes of the test's pool in `rack` (zone-a)."""
    names = env.kube.add_nodes(
        {
            "count": count,
            "namePrefix": f"{env.pool}-{rack}-",
            "gpuProduct": H100,
            "gpusPerNode": 8,
            "gpuMemoryMiB": 81559,
            "labels": {POOL_LABEL: env.pool, ZONE: "zone-a", RACK: f"{env.pool}-{rack}"},
        }
    )
    env.nodes += names
    return names


def racks_of(env: Env, job: str) -> set[str]:
    nodes = {p.spec.node_name for p in env.pods(job)}
    return {env.kube.core.read_node(n).metadata.labels[RACK] for n in nodes if n}


def test_gang_with_a_required_rack_lands_in_one_rack(env: Env) -> None:
    # two racks of 2 nodes; a gang of 2 workers fits either rack, never both
    add_rack(env, "r1", 2)
    add_rack(env, "r2", 2)
    # a 1-node job first makes best-fit's fullest-node choice straddle the racks
    env.apply(training("single", env.namespace, env.pool, workers=1, gpus=4))
    env.wait_phase("LLMTrainingJob", "single", "Running", timeout=60)
    gang = training("rack-gang", env.namespace, env.pool, workers=2, gpus=8)
    gang["spec"]["topology"] = {"required": RACK}
    env.apply(gang)
    env.wait_phase("LLMTrainingJob", "rack-gang", "Running", timeout=60)
    assert len(env.pods("rack-gang")) == 2
    (rack,) = racks_of(env, "rack-gang")
    status = env.get("LLMTrainingJob", "rack-gang")["status"]
    assert status["message"] == f"2/2 placed; spans 1 rack (zone-a/{rack})"


def test_a_level_the_policy_does_not_list_is_refused(env: Env) -> None:
    env.add_nodes(1)
    gang = training("typo", env.namespace, env.pool, workers=1, gpus=8)
    gang["spec"]["topology"] = {"required": "topology.kubernetes.io/rak"}
    env.apply(gang)
    status = env.wait_phase("LLMTrainingJob", "typo", "Failed", timeout=60)["status"]
    assert (
        "spec.topology.required: topology.kubernetes.io/rak is not a topology level"
        in (status["message"])
    )
    invalid = next(c for c in status["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True"


def test_gang_no_rack_can_hold_waits_with_the_reason(env: Env) -> None:
    # 3 workers x 8 GPUs: 4 free nodes in all, but 2 per rack
    add_rack(env, "r1", 2)
    add_rack(env, "r2", 2)
    gang = training("too-wide", env.namespace, env.pool, workers=3, gpus=8)
    gang["spec"]["topology"] = {"required": RACK}
    env.apply(gang)
    status = env.wait_phase("LLMTrainingJob", "too-wide", "Unschedulable", timeout=60)["status"]
    assert "in one rack; no rack has 3 nodes with 8 free (the most is 2" in status["message"]
    assert not [p for p in env.pods("too-wide") if p.spec.node_name]


def test_the_topology_samples_are_accepted(kube: Kube, crds: None) -> None:
    for path in sorted((REPO / "manifests" / "samples" / "topology").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc.get("metadata", {}).get("namespace"):
                doc["metadata"]["namespace"] = "default"
            result = kube.kubectl(
                "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False
            )
            assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_a_malformed_level_is_refused_at_admission(kube: Kube, crds: None) -> None:
    bad = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMTrainingJob",
        "metadata": {"name": "bad-level", "namespace": "default"},
        "spec": {"workers": 1, "gpusPerWorker": 8, "topology": {"required": "not a key!"}},
    }
    result = kube.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(bad), check=False
    )
    assert result.returncode != 0
    assert "spec.topology.required" in result.stderr
