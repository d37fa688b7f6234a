"""Gangs done safely, on the real local cluster: the rendezvous Service is reconciled every
round, a failed worker restarts or fails the whole gang, and a placed pod that cannot bind
is reported and placed again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import Env, Kube, operator_under_policy
from tests.cluster.operator_harness import OperatorProcess, inference, training

pytestmark = pytest.mark.cluster
POLICY: dict[str, Any] = {"unboundTimeoutSeconds": 10}


@pytest.fixture(scope="module")
def operator(
    kube: Kube, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with operator_under_policy(kube, tmp_path_factory, POLICY) as op:
        yield op


def _fail(env: Env, pod: str) -> None:
    """What a kubelet reports when a worker's container exits non-zero."""
    env.kube.core.patch_namespaced_pod_status(pod, env.namespace, {"status": {"phase": "Failed"}})


def test_a_deleted_rendezvous_service_is_created_again(env: Env) -> None:
    env.add_nodes(1)
    env.apply(training("rdzv", env.namespace, env.pool, workers=1, gpus=8))
    env.wait_phase("LLMTrainingJob", "rdzv", "Running")
    core = env.kube.core
    env.kube.wait_for(lambda: core.list_namespaced_service(env.namespace).items, what="Service")
    core.delete_namespaced_service("rdzv", env.namespace)
    # the next round (a safety re-plan at the latest) brings it back; a pod change wakes one
    env.apply(training("poke", env.namespace, env.pool, workers=1, gpus=8))
    env.kube.wait_for(
        lambda: [
            s
            for s in core.list_namespaced_service(env.namespace).items
            if s.metadata.name == "rdzv"
        ],
        timeout=30,
        what="the Service created again",
    )


def test_a_failed_worker_restarts_the_whole_gang_then_fails_it(env: Env) -> None:
    env.add_nodes(2)
    gang = training("ft", env.namespace, env.pool, workers=2, gpus=8)
    gang["spec"]["failurePolicy"] = {"maxRestarts": 1}
    env.apply(gang)
    env.wait_phase("LLMTrainingJob", "ft", "Running")
    first = {p.metadata.uid for p in env.pods("ft")}
    _fail(env, "ft-worker-1")
    # restarted whole: both workers are new pods, running again
    env.kube.wait_for(
        lambda: (
            len(pods := env.pods("ft")) == 2
            and not first & {p.metadata.uid for p in pods}
            and all(p.status.phase == "Running" for p in pods)
        ),
        timeout=60,
        what="the gang restarted with two new workers",
    )
    assert env.get("LLMTrainingJob", "ft")["status"]["restarts"] == 1
    assert "Restarting" in [reason for reason, _ in env.events("ft")]
    _fail(env, "ft-worker-0")  # no restart left: Failed, and the survivor gives its GPUs back
    env.wait_phase("LLMTrainingJob", "ft", "Failed", timeout=30)
    env.kube.wait_for(
        lambda: [p.metadata.name for p in env.pods("ft")] == ["ft-worker-0"],
        timeout=30,
        what="the surviving worker deleted",
    )


def test_a_placed_pod_that_cannot_bind_is_reported_and_placed_again(env: Env) -> None:
    env.add_nodes(1)
    stuck = inference("stuck", env.namespace, env.pool, replicas=1, gpus=1)
    # an extended resource no node has: the planner does not model it, kube-scheduler does
    container = stuck["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {
        "requests": {"example.com/fpga": "1"},
        "limits": {"example.com/fpga": "1"},
    }
    env.apply(stuck)
    first = env.kube.wait_for(
        lambda: [p.metadata.uid for p in env.pods("stuck") if not p.spec.scheduling_gates],
        what="the replica pinned and ungated",
    )
    events = env.kube.wait_for(
        lambda: [m for r, m in env.events("stuck") if r == "Unbound"],
        timeout=40,
        what="an Unbound event",
    )
    assert "stayed unbound" in events[0]
    env.kube.wait_for(
        lambda: [p for p in env.pods("stuck") if p.metadata.uid not in first],
        timeout=30,
        what="a new replica pod",
    )
