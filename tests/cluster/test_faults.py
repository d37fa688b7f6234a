"""Faults of the control plane around a running operator, on the real local cluster:

- a leader paused (SIGSTOP) for longer than its lease: the other replica takes over, and the
  paused one, resumed, writes nothing (proved from the apiserver's audit log);
- the operator's apiserver connections stall (a TCP proxy that stops forwarding): planning
  resumes by itself once they work again, nothing duplicated;
- the apiserver is killed and restarted: likewise;
- a leader that completes no planning round is unhealthy on /healthz (the kubelet restarts it).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Env, Kube
from tests.cluster.operator_harness import OperatorProcess, inference, kubeconfig_copy, training
from tests.cluster.tcp_proxy import TcpProxy

# A short lease keeps the takeover test short: renew deadline 4 s, retry period 0.8 s.
SHORT_LEASE = {"GPUALLOC_LEASE_SECONDS": "6"}
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
# Planning must resume this soon after the fault ends (a stale connection may cost one
# request timeout of 30 s before the operator opens a new one).
RESUME_BOUND = 60.0


@pytest.fixture
def env(kube: Kube, crds: None) -> Iterator[Env]:
    e = Env(kube)
    yield e
    e.close()


def _pods(env: Env) -> dict[str, list[str]]:
    """Pod names by job (label gpualloc.io/job) in the test namespace; '' for unlabelled."""
    found: dict[str, list[str]] = {}
    for pod in env.kube.core.list_namespaced_pod(env.namespace).items:
        job = (pod.metadata.labels or {}).get("gpualloc.io/job", "")
        found.setdefault(job, []).append(pod.metadata.name)
    return found


def _assert_exactly(env: Env, expected: dict[str, int]) -> None:
    """Every job has exactly its pods, each name once; no pod of anything else."""
    pods = _pods(env)
    assert {job: len(names) for job, names in pods.items()} == expected, pods
    for names in pods.values():
        assert len(set(names)) == len(names), names


# -- replicas with their own identity, and what the apiserver saw them write ----------------


class Audit:
    """Writes in the local apiserver's audit log (hack/localcluster.py turns it on)."""

    def __init__(self, kube: Kube) -> None:
        self.path = kube.cluster.audit_log
        if not self.path.exists():
            pytest.fail(
                f"{self.path} missing: the cluster predates audit logging; restart it "
                "(hack/localcluster.py down, then up)"
            )
        self.start = self.path.stat().st_size  # only what happens in this test

    def writes(self, user: str, since: datetime) -> list[dict[str, Any]]:
        """Successful writes by `user` received at or after `since`."""
        with open(self.path, "rb") as f:
            f.seek(self.start)
            lines = f.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line still being written
            received = datetime.fromisoformat(event["requestReceivedTimestamp"])
            if (
                event.get("stage") == "ResponseComplete"
                and event["user"].get("username") == user
                and event.get("verb") in WRITES
                and (event.get("responseStatus") or {}).get("code", 0) < 300
                and received >= since
            ):
                found.append(event)
        return found


def _what(events: list[dict[str, Any]]) -> list[str]:
    return [
        f"{e['requestReceivedTimestamp']} {e['verb']} {e['objectRef'].get('resource')}/"
        f"{e['objectRef'].get('subresource') or ''}{e['objectRef'].get('name') or ''} "
        f"{e['responseStatus'].get('code')} UA={e.get('userAgent')}"
        for e in events
    ]


class Identity:
    """A ServiceAccount (cluster-admin) and a kubeconfig with its token: everything a replica
    sends, Kopf's requests included, carries its own user name in the audit log."""

    def __init__(self, kube: Kube, namespace: str, name: str, directory: Path) -> None:
        self.kube = kube
        self.binding = f"{namespace}-{name}"
        self.user = f"system:serviceaccount:{namespace}:{name}"
        kube.kubectl("create", "serviceaccount", name, "-n", namespace)
        kube.kubectl(
            "create", "clusterrolebinding", self.binding,
            "--clusterrole=cluster-admin", f"--serviceaccount={namespace}:{name}",
        )  # fmt: skip
        token = kube.kubectl("create", "token", name, "-n", namespace, "--duration=1h")
        self.kubeconfig = kubeconfig_copy(
            kube.kubeconfig, directory / f"{name}.kubeconfig", token=token.stdout.strip()
        )

    def close(self) -> None:
        self.kube.kubectl("delete", "clusterrolebinding", self.binding, "--ignore-not-found")


def test_a_paused_leader_is_replaced_and_writes_nothing_when_it_resumes(
    env: Env, tmp_path: Path
) -> None:
    kube = env.kube
    audit = Audit(kube)
    env.add_nodes(2)
    ids = [Identity(kube, env.namespace, n, tmp_path) for n in ("replica-a", "replica-b")]
    a = OperatorProcess(ids[0].kubeconfig, tmp_path, "a")
    b = OperatorProcess(ids[1].kubeconfig, tmp_path, "b")
    try:
        a.start(lease_namespace=env.namespace, env=SHORT_LEASE).wait_leading()
        b.start(lease_namespace=env.namespace, env=SHORT_LEASE)
        kube.wait_for(lambda: b.metric("gpualloc_leader") == 0, what="b up, following")
        env.apply(inference("before", env.namespace, env.pool, replicas=2, gpus=2))
        env.wait_phase("LLMInferenceJob", "before", "Running")
        assert audit.writes(ids[0].user, datetime.min.replace(tzinfo=UTC)), (
            "the audit log shows no write of a: the check below could not fail"
        )
        # frozen with work at hand: just past its debounce, a is reading or planning
        # "during"; the plan it holds must never be acted on once it resumes
        env.apply(inference("during", env.namespace, env.pool, replicas=2, gpus=2))
        time.sleep(0.3)  # the debounce: a is about to plan, or planning
        a.pause()
        paused = time.monotonic()
        b.wait_leading(timeout=30)
        env.wait_phase("LLMInferenceJob", "during", "Running", timeout=30)
        time.sleep(max(0.0, paused + 6 + 2 - time.monotonic()))  # paused > the lease

        resumed = datetime.now(UTC)
        a.resume()
        env.apply(inference("after", env.namespace, env.pool, replicas=2, gpus=2))
        env.wait_phase("LLMInferenceJob", "after", "Running", timeout=30)
        # a is alive again and knows it follows; its lease loop had many tries meanwhile
        kube.wait_for(lambda: a.metric("gpualloc_leader") == 0, timeout=10, what="a follows")
        time.sleep(4)  # a's watches deliver what happened while it was stopped

        leaked = audit.writes(ids[0].user, resumed)
        assert not leaked, "the resumed replica wrote:\n" + "\n".join(_what(leaked))
        assert audit.writes(ids[1].user, resumed), "b's writes are in the log too"
        assert a.healthz()[0] == 200 and b.healthz()[0] == 200
        # only the leader exports allocation numbers
        assert a.metric("gpualloc_job_allocated_gpus") is None
        assert b.metric("gpualloc_job_allocated_gpus") == 12
        _assert_exactly(env, {"before": 2, "during": 2, "after": 2})
    finally:
        if a.proc and a.proc.poll() is None:
            a.resume()  # a stopped process ignores SIGTERM until continued
        a.stop()
        b.stop()
        for identity in ids:
            identity.close()


def test_planning_resumes_after_a_stalled_apiserver_connection(env: Env, tmp_path: Path) -> None:
    kube = env.kube
    env.add_nodes(3)
    proxy = TcpProxy("127.0.0.1", kube.cluster.ports["apiserver"]).start()
    server = f"https://127.0.0.1:{proxy.port}"  # the serving cert names 127.0.0.1
    op = OperatorProcess(
        kubeconfig_copy(kube.kubeconfig, tmp_path / "proxied.kubeconfig", server=server),
        tmp_path,
        "stalled",
    )
    try:
        op.start(lease_namespace=env.namespace).wait_leading()
        env.apply(inference("warm", env.namespace, env.pool, replicas=1, gpus=2))
        env.wait_phase("LLMInferenceJob", "warm", "Running")  # connections are pooled now

        proxy.stall(30)
        stalled = time.monotonic()
        # applied through the real apiserver, not the proxy
        env.apply(training("gang", env.namespace, env.pool, workers=2, gpus=8))
        env.apply(inference("serve", env.namespace, env.pool, replicas=1, gpus=4))
        time.sleep(max(0.0, stalled + 28 - time.monotonic()))
        assert set(_pods(env)) == {"warm"}, "the operator acted through a stalled proxy"
        time.sleep(max(0.0, stalled + 30 - time.monotonic()))

        ended = time.monotonic()
        try:
            for kind, name in (("LLMTrainingJob", "gang"), ("LLMInferenceJob", "serve")):
                left = ended + RESUME_BOUND - time.monotonic()
                env.wait_phase(kind, name, "Running", timeout=max(1.0, left))
        except TimeoutError:
            op.dump_stacks()  # which call hangs without a timeout
            raise AssertionError(f"planning did not resume:\n{op.logs()}") from None
        print(f"planning resumed {time.monotonic() - ended:.1f}s after the stall ended")
        _assert_exactly(env, {"warm": 1, "gang": 2, "serve": 1})
        assert op.healthz()[0] == 200
    finally:
        op.stop()
        proxy.close()


def test_planning_resumes_after_an_apiserver_restart(env: Env, tmp_path: Path) -> None:
    kube = env.kube
    cluster = kube.cluster
    env.add_nodes(3)
    op = OperatorProcess(kube.kubeconfig, tmp_path, "restart")
    try:
        op.start(lease_namespace=env.namespace).wait_leading()
        env.apply(inference("warm", env.namespace, env.pool, replicas=1, gpus=2))
        env.wait_phase("LLMInferenceJob", "warm", "Running")

        # jobs arrive, and the apiserver dies while the operator is busy with them
        env.apply(training("gang", env.namespace, env.pool, workers=2, gpus=8))
        env.apply(inference("serve", env.namespace, env.pool, replicas=1, gpus=4))
        pid = cluster.pid("kube-apiserver")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        kube.wait_for(lambda: cluster.pid("kube-apiserver") is None, what="apiserver gone")
        time.sleep(12)  # past the renew deadline (10 s): the operator stops leading too
        # the same command line as `up` (localcluster's own start: ports, pid file, log)
        cluster._start_and_wait("kube-apiserver", 90)
        up = time.monotonic()

        try:
            for kind, name in (("LLMTrainingJob", "gang"), ("LLMInferenceJob", "serve")):
                left = up + RESUME_BOUND - time.monotonic()
                env.wait_phase(kind, name, "Running", timeout=max(1.0, left))
            print(f"placed {time.monotonic() - up:.1f}s after the apiserver was back")
            env.apply(inference("later", env.namespace, env.pool, replicas=1, gpus=2))
            env.wait_phase("LLMInferenceJob", "later", "Running", timeout=RESUME_BOUND)
        except TimeoutError:
            op.dump_stacks()
            raise AssertionError(f"planning did not resume:\n{op.logs()}") from None
        print(f"a job applied after it ran {time.monotonic() - up:.1f}s after the restart")
        _assert_exactly(env, {"warm": 1, "gang": 2, "serve": 1, "later": 1})
        assert op.healthz()[0] == 200
    finally:
        op.stop()


def test_healthz_fails_while_the_leader_completes_no_round(env: Env, tmp_path: Path) -> None:
    """A leader that plans no round within --round-deadline is unhealthy (the kubelet would
    restart it); a follower with nothing to plan stays healthy; a round makes it healthy."""
    kube = env.kube
    env.add_nodes(1)
    idle = ["--round-deadline", "4", "--resync", "600"]  # no periodic round to save it
    leader = OperatorProcess(kube.kubeconfig, tmp_path, "leader")
    follower = OperatorProcess(kube.kubeconfig, tmp_path, "follower")
    try:
        leader.start(lease_namespace=env.namespace, extra_args=idle).wait_leading()
        follower.start(lease_namespace=env.namespace, extra_args=idle)

        def unhealthy() -> dict[str, Any] | None:
            status, body = leader.healthz()
            return body if status == 500 else None

        body = kube.wait_for(unhealthy, timeout=20, what="the idle leader unhealthy")
        assert any("planning round" in p for p in body["problems"]), body
        assert follower.metric("gpualloc_leader") == 0
        # its endpoint starts with the process, which a loaded machine makes slow: wait for it
        # to answer at all, then it must say healthy
        answer = kube.wait_for(
            lambda: follower.healthz()[0] or None, timeout=30, what="the follower's /healthz"
        )
        assert answer == 200
        env.apply(inference("wake", env.namespace, env.pool, replicas=1, gpus=1))
        env.wait_phase("LLMInferenceJob", "wake", "Running")
        assert leader.healthz()[0] == 200  # the round just completed
    finally:
        leader.stop()
        follower.stop()
