"""Creating a job grants no more than creating a pod: on the real local cluster, a job's
pods are created in its namespace, so that namespace's Pod Security admission applies, and a
template setting the AllocationPolicy does not allow is refused on the job alone."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import Env
from tests.cluster.operator_harness import training

pytestmark = pytest.mark.cluster


def test_pod_security_admission_of_the_jobs_namespace_applies_to_its_pods(env: Env) -> None:
    env.kube.core.patch_namespace(
        env.namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}
    )
    env.add_nodes(2)
    bad = training("netadmin", env.namespace, env.pool, workers=1, gpus=8)
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}  # baseline forbids
    env.apply(bad)
    env.apply(training("fine", env.namespace, env.pool, workers=1, gpus=8))
    env.wait_phase("LLMTrainingJob", "fine", "Running", timeout=40)
    refused = env.kube.wait_for(
        lambda: [m for r, m in env.events("netadmin") if r == "FailedCreatePod"],
        timeout=30,
        what="the refused pod creation reported on the job",
    )
    assert "PodSecurity" in refused[0] or "forbidden" in refused[0].lower()
    assert env.pods("netadmin") == []
    status = env.get("LLMTrainingJob", "netadmin")["status"]
    assert "the last API write failed" in status["message"]


def test_a_template_asking_for_host_access_is_refused_on_its_own_status(env: Env) -> None:
    env.add_nodes(1)
    job = training("hostnet", env.namespace, env.pool, workers=1, gpus=8)
    job["spec"]["template"]["spec"]["hostNetwork"] = True
    env.apply(job)
    failed = env.wait_phase("LLMTrainingJob", "hostnet", "Failed", timeout=30)
    assert "hostNetwork" in failed["status"]["message"]
    assert "AllocationPolicy spec.security" in failed["status"]["message"]
    assert next(c["type"] for c in failed["status"]["conditions"]) == "Invalid"
    assert env.pods("hostnet") == []
