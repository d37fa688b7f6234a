"""What would unblock a waiting job, on the real local cluster: the operator writes
status.unblock between rounds and clears it once the job runs; `gpualloc explain` answers
the same on demand."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.cluster.conftest import Env
from tests.cluster.operator_harness import training

pytestmark = pytest.mark.cluster
KIND = "LLMTrainingJob"


def _unblock(env: Env, name: str) -> dict[str, Any] | None:
    answer: dict[str, Any] | None = (env.get(KIND, name).get("status") or {}).get("unblock")
    return answer


def test_waiting_gang_is_told_whom_to_move_and_explain_agrees(env: Env) -> None:
    # two 8-GPU nodes: `a` (4 GPUs, preemptible, estimated 40 GPU-h = 10 h) on one, `b` (6
    # GPUs) on the other; a gang of 2 x 4 GPUs finds 4 + 2 free GPUs and waits
    env.add_nodes(2)
    env.apply(training("a", env.namespace, env.pool, 1, 4, preemptible=True, estimatedGPUHours=40))
    env.wait_phase(KIND, "a", "Running")
    env.apply(training("b", env.namespace, env.pool, 1, 6))
    env.wait_phase(KIND, "b", "Running")
    env.apply(training("w", env.namespace, env.pool, 2, 4))
    env.wait_phase(KIND, "w", "Unschedulable")

    answer = env.kube.wait_for(lambda: _unblock(env, "w"), timeout=60, what="status.unblock")
    # evicting `a` frees a whole node with the fewest GPUs taken (b holds 6), proven
    assert [(v["job"], v["gpus"], v["preemptible"]) for v in answer["evict"]] == [
        (f"{env.namespace}/a", 4, True)
    ]
    assert answer["evictProof"] == "OPTIMAL"
    assert answer["alternatives"] == ["with 1 worker instead of 2"]
    free_at = datetime.strptime(answer["freeAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 9.5 < (free_at.timestamp() - time.time()) / 3600 < 10.1  # a's estimate runs out
    assert f"{env.namespace}/a" in answer["message"]

    asked = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpualloc.cli",
            "explain",
            "ltj/w",
            "-n",
            env.namespace,
            "--kubeconfig",
            str(env.kube.kubeconfig),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0, asked.stderr
    live = json.loads(asked.stdout)
    assert [v["job"] for v in live["evict"]] == [f"{env.namespace}/a"]
    assert live["alternatives"] == answer["alternatives"]

    # the answer is right: once `a` is gone the gang runs, and its answer is cleared
    env.custom.delete_namespaced_custom_object(
        "gpualloc.io", "v1alpha1", env.namespace, "llmtrainingjobs", "a"
    )
    env.wait_phase(KIND, "w", "Running", timeout=60)
    env.kube.wait_for(lambda: _unblock(env, "w") is None, timeout=60, what="unblock cleared")


def test_explain_names_a_missing_job_and_a_bad_kind(env: Env) -> None:
    base = [
        sys.executable,
        "-m",
        "gpualloc.cli",
        "explain",
        "--kubeconfig",
        str(env.kube.kubeconfig),
    ]
    missing = subprocess.run(
        [*base, "ltj/nope", "-n", env.namespace], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode != 0 and f"{env.namespace}/nope not found" in missing.stderr
    bad = subprocess.run([*base, "deploy/x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown kind 'deploy'" in bad.stderr
