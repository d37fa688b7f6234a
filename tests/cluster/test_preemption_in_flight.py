"""Preemptions one after another on the real control plane: while a victim's pods are still
terminating, the job it was evicted for waits for exactly that room, and a later job may
evict elsewhere at once instead of waiting for the first victim (no cluster-wide pause, no
second victim for the first job)."""

from __future__ import annotations

from kubernetes import client

from tests.cluster.conftest import Env
from tests.cluster.operator_harness import training

HOLD = "gpualloc.io/test-hold"  # a finalizer: the pod stays terminating until it is removed


def _hold(env: Env, job: str, on: bool) -> None:
    for pod in env.pods(job):
        body = {"metadata": {"finalizers": [HOLD] if on else None}}
        env.kube.core.patch_namespaced_pod(pod.metadata.name, env.namespace, body)


def _terminating(pods: list[client.V1Pod]) -> bool:
    return bool(pods) and all(p.metadata.deletion_timestamp for p in pods)


def test_a_second_preemptor_evicts_while_the_first_victim_terminates(env: Env) -> None:
    env.add_nodes(2)
    for name in ("low-a", "low-b"):
        env.apply(training(name, env.namespace, env.pool, workers=1, gpus=8, preemptible=True))
        env.wait_phase("LLMTrainingJob", name, "Running")
        _hold(env, name, True)
    try:
        env.apply(training("first", env.namespace, env.pool, workers=1, gpus=8, priority=100))
        first_victim = env.kube.wait_for(
            lambda: next((n for n in ("low-a", "low-b") if _terminating(env.pods(n))), None),
            timeout=30,
            what="a victim evicted for `first`",
        )
        other = "low-b" if first_victim == "low-a" else "low-a"
        room = env.pods(first_victim)[0].spec.node_name
        env.wait_phase("LLMTrainingJob", first_victim, "Preempted")

        env.apply(training("second", env.namespace, env.pool, workers=1, gpus=8, priority=100))
        # evicted while the first victim's pod is still terminating (held by its finalizer)
        env.kube.wait_for(
            lambda: _terminating(env.pods(other)), timeout=30, what=f"{other} evicted"
        )
        assert _terminating(env.pods(first_victim))
        message = env.get("LLMTrainingJob", "first")["status"]["message"]
        assert first_victim in message or "once the preempted pods" in message, message
        assert env.phase("LLMTrainingJob", "first") == "Unschedulable"
        _hold(env, first_victim, False)  # its pod goes: `first` gets the room it left
        env.wait_phase("LLMTrainingJob", "first", "Running")
        assert env.pods("first")[0].spec.node_name == room
        assert env.phase("LLMTrainingJob", "second") == "Unschedulable"
    finally:
        _hold(env, "low-a", False)
        _hold(env, "low-b", False)
    env.wait_phase("LLMTrainingJob", "second", "Running")
    # two evictions for two jobs, none more
    assert all("Preempted" in dict(env.events(n)) for n in ("low-a", "low-b"))
