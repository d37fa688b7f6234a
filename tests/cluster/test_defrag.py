"""Planned defragmentation on the real local cluster: a gang blocked by scattered free GPUs
runs after the plan moves the movable job that loses the least work, and only that one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.conftest import GROUP, VERSION, Env, Kube, operator_under_policy
from tests.cluster.operator_harness import OperatorProcess, training

pytestmark = pytest.mark.cluster
KIND = "LLMTrainingJob"
# moves at once (the defaults wait 5 minutes of runtime), pods stop within a second
POLICY: dict[str, Any] = {
    "defragmentation": {"minRuntimeSeconds": 0},
    "preemption": {"gracePeriodSeconds": 1},
}


@pytest.fixture(scope="module")
def operator(
    kube: Kube, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with operator_under_policy(kube, tmp_path_factory, POLICY) as op:
        yield op


def _pods(env: Env, job: str) -> dict[str, tuple[str, str]]:
    """Pod name -> (uid, node) of the job's running pods."""
    return {
        p.metadata.name: (p.metadata.uid, p.spec.node_name)
        for p in env.pods(job)
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    }


def _run(env: Env, name: str, workers: int, gpus: int, **spec: Any) -> dict[str, tuple[str, str]]:
    env.apply(training(name, env.namespace, env.pool, workers, gpus, **spec))
    env.wait_phase(KIND, name, "Running", timeout=60)
    return env.kube.wait_for(lambda: _pods(env, name), what=f"{name}'s pods running")


def _delete(env: Env, name: str) -> None:
    env.custom.delete_namespaced_custom_object(
        GROUP, VERSION, env.namespace, "llmtrainingjobs", name
    )
    env.kube.wait_for(lambda: not env.pods(name), timeout=60, what=f"{name}'s pods gone")


def test_a_blocked_gang_runs_after_the_cheapest_move(env: Env) -> None:
    env.add_nodes(2)
    # x (2 x 2 GPUs) and y (4) fill one node, w (4) and z (4) the other; y and z leave:
    # 4 + 4 free GPUs on two nodes, and a gang of 1 x 8 cannot run
    x = _run(env, "x", 2, 2, movable=True)
    _run(env, "y", 1, 4)
    w = _run(env, "w", 1, 4, movable=True)
    _run(env, "z", 1, 4)
    x_node = {n for _, n in x.values()}
    (w_node,) = {n for _, n in w.values()}
    assert len(x_node) == 1 and w_node not in x_node
    _delete(env, "y")
    _delete(env, "z")

    env.apply(training("g", env.namespace, env.pool, 1, 8))
    # moving w (1 pod, the least work: it started last) frees w's node; moving x would
    # take 2 pods and lose more
    env.wait_phase(KIND, "g", "Running", timeout=90)
    assert {n for _, n in _pods(env, "g").values()} == {w_node}
    moved = env.kube.wait_for(lambda: _pods(env, "w"), timeout=60, what="w running again")
    assert {n for _, n in moved.values()} == x_node  # re-placed next to x
    assert {u for u, _ in moved.values()}.isdisjoint({u for u, _ in w.values()})  # new pod
    assert _pods(env, "x") == x  # x untouched: the same pods on the same node
    env.wait_phase(KIND, "w", "Running", timeout=60)
    status = env.get(KIND, "w")["status"]
    (cond,) = [c for c in status["conditions"] if c["type"] == "Moved"]
    assert f"make room for {env.namespace}/g" in cond["message"]
    assert status["lastMovedTime"]
    assert any(reason == "Moved" for reason, _ in env.events("w"))
