"""The Helm chart and the kustomize base, for real: helm lint/template, `helm install` into the
local cluster (kwok runs the operator pods), then the operator run as a process with the chart's
ServiceAccount token does a full allocation round (the RBAC suffices) and is refused what the
role does not grant. `kubectl apply -k manifests` installs the same."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.cluster.conftest import Env, Kube
from tests.cluster.operator_harness import REPO, OperatorProcess, training

CHART = REPO / "helm" / "gpualloc"


def helm(kube: Kube, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(kube.bin / "helm"), "--kubeconfig", str(kube.kubeconfig), *args],
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def rendered(kube: Kube, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "gpualloc", str(CHART), "--namespace", "gpualloc-system"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(kube, *args).stdout) if d]


def _generator(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, REPO / "hack" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_helm_lint_and_values_schema(kube: Kube) -> None:
    lint = helm(kube, "lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout
    bad = helm(kube, "template", "x", str(CHART), "--set", "replicaCount=0", check=False)
    assert bad.returncode != 0 and "replicaCount" in bad.stderr
    bad = helm(
        kube, "template", "x", str(CHART), "--set", "servicemonitor.enabled=true", check=False
    )
    assert bad.returncode != 0 and "servicemonitor" in bad.stderr  # typo'd keys are refused


def test_helm_template_defaults(kube: Kube) -> None:
    docs = rendered(kube)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "AllocationPolicy",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "FlowSchema",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": 8080, "health": 8081}
    assert {e["name"] for e in container["env"]} >= {"POD_NAME", "POD_NAMESPACE"}
    assert container["resources"]["requests"] and container["resources"]["limits"]

    role = next(d for d in docs if d["kind"] == "ClusterRole")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert "secrets" not in resources and "configmaps" not in resources
    assert not any("*" in rule["verbs"] or "*" in rule["resources"] for rule in role["rules"])

    dashboard = next(d for d in docs if d["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    expected = (CHART / "files" / "dashboard.json").read_text().rstrip("\n")
    assert dashboard["data"]["gpualloc.json"] == expected


def test_helm_template_monitoring(kube: Kube) -> None:
    docs = rendered(kube, "serviceMonitor.enabled=true", "prometheusRule.enabled=true")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    # the rules file verbatim (`{{ $labels.x }}` kept for Prometheus, not eaten by Helm)
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"GpuallocSolverFailing", "GpuallocJobPendingTooLong"} <= alerts
    assert {"GpuallocPrometheusInputDown"} <= alerts


def test_manifests_are_the_chart_defaults() -> None:
    for path, text in _generator("gen_manifests").render().items():
        assert (REPO / "manifests" / path).read_text() == text, f"manifests/{path}: make manifests"


def _sa_kubeconfig(kube: Kube, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig with a token from the TokenRequest API for `sa` (no admin credentials)."""
    token = kube.kubectl("create", "token", sa, "-n", namespace, "--duration=30m").stdout.strip()
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": cluster}],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "local", "user": sa}}],
                "current-context": "sa",
            }
        )
    )
    return path


@pytest.fixture
def release(kube: Kube, crds: None) -> Iterator[tuple[str, str]]:
    namespace = kube.create_namespace("helm")
    name = f"ga-{uuid.uuid4().hex[:6]}"
    try:
        yield name, namespace
    finally:
        helm(kube, "uninstall", name, "-n", namespace, "--wait", check=False)
        kube.delete_namespace(namespace)


def test_helm_install_and_the_service_account_suffices(
    kube: Kube, release: tuple[str, str], tmp_path: Path
) -> None:
    name, namespace = release
    helm(kube, "install", name, str(CHART), "-n", namespace, "--wait", "--timeout", "120s")
    fullname = f"{name}-gpualloc"
    kube.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", f"deploy/{fullname}", "--timeout=60s"
    )
    deploy = yaml.safe_load(
        kube.kubectl("get", "-n", namespace, f"deploy/{fullname}", "-o", "yaml").stdout
    )
    assert deploy["status"]["availableReplicas"] == 2
    policy = yaml.safe_load(kube.kubectl("get", "allocationpolicy", "default", "-o", "yaml").stdout)
    assert policy["metadata"]["labels"]["app.kubernetes.io/instance"] == name

    sa_config = _sa_kubeconfig(kube, namespace, fullname, tmp_path / "sa.kubeconfig")
    api = config.new_client_from_config(config_file=str(sa_config))
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as err:
        core.list_namespaced_secret(namespace)
    assert err.value.status == 403
    with pytest.raises(ApiException) as err:
        core.list_config_map_for_all_namespaces()
    assert err.value.status == 403

    # the operator, as the chart's ServiceAccount, plans and places a job
    env = Env(kube)
    op = OperatorProcess(sa_config, tmp_path, "sa").start(lease_namespace=namespace)
    try:
        op.wait_leading()
        # the chart's FlowSchema: its Lease requests are served in the cluster's
        # leader-election priority level (API Priority and Fairness), its other requests not
        level = kube.kubectl(
            "get", "prioritylevelconfiguration", "leader-election", "-o", "jsonpath={.metadata.uid}"
        ).stdout
        lease = client.CoordinationV1Api(api).read_namespaced_lease_with_http_info(
            "gpualloc-leader", namespace
        )
        assert lease[2]["X-Kubernetes-PF-PriorityLevel-UID"] == level
        pods = core.list_namespaced_pod_with_http_info(namespace)
        assert pods[2]["X-Kubernetes-PF-PriorityLevel-UID"] not in ("", level)
        env.add_nodes(1)
        env.apply(training("rbac", env.namespace, env.pool, workers=1, gpus=8))
        job = env.wait_phase("LLMTrainingJob", "rbac", "Running", timeout=40)
        assert job["status"]["allocation"][0]["node"] == env.nodes[0]
        assert env.events("rbac"), "events are posted"
        denied = [line for line in op.logs().splitlines() if "403" in line or "Forbidden" in line]
        assert not denied, denied
    finally:
        op.stop()
        env.close()


def test_kubectl_apply_k_manifests(kube: Kube, crds: None) -> None:
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "manifests"))
    try:
        kube.kubectl(
            "wait",
            "-n",
            "gpualloc-system",
            "--for=condition=Available",
            "deploy/gpualloc",
            "--timeout=90s",
        )
        out = kube.kubectl(
            "apply", "--dry-run=server", "-k", str(REPO / "manifests" / "policy")
        ).stdout
        assert "allocationpolicy.gpualloc.io/default" in out
    finally:
        kube.kubectl("delete", "-f", str(REPO / "manifests" / "operator.yaml"), "--wait=false")
        kube.kubectl("delete", "namespace", "gpualloc-system", "--wait=false")
