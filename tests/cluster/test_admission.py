"""The API server itself refuses malformed or hostile gpualloc objects (the CRD schemas of
hack/gen_crds.py), with a message naming the field, and accepts every valid one: the samples
and a pod template using fields gpualloc does not type (volumes, env, command, probes).

Everything is sent with `kubectl apply --dry-run=server`: admission runs in full (defaulting,
the schema, CEL rules) and nothing is stored in the shared cluster."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Kube
from tests.cluster.operator_harness import REPO

pytestmark = pytest.mark.cluster

API = "gpualloc.io/v1alpha1"
NAMESPACE = "default"
CONTAINER = {"name": "main", "image": "example/llm:1"}


def job(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name, "namespace": NAMESPACE}
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


def training(name: str = "ok", **spec: Any) -> dict[str, Any]:
    return job("LLMTrainingJob", name, {"workers": 2, "gpusPerWorker": 8, **spec})


def inference(name: str = "ok", **spec: Any) -> dict[str, Any]:
    return job("LLMInferenceJob", name, {"replicas": 1, "gpusPerReplica": 1, **spec})


def node_affinity(expression: dict[str, Any]) -> dict[str, Any]:
    """Required node affinity of one term with one label expression."""
    term = {"matchExpressions": [expression]}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AllocationPolicy",
        "metadata": {"name": "admission-test"},
        "spec": spec,
    }


def pod_spec(**fields: Any) -> dict[str, Any]:
    """A job template whose pod spec has `fields` next to one valid container."""
    return {"template": {"spec": {"containers": [CONTAINER], **fields}}}


def dry_run(kube: Kube, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kube.kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(doc), check=False
    )


BAD: list[tuple[str, dict[str, Any], str]] = [
    # names: the job names its headless Service (a DNS-1035 label) and pod hostnames
    ("name starts with a digit", training("7b-sft"), "metadata.name"),
    ("name has upper case", training("Llama-SFT"), "metadata.name"),
    ("name of 60 characters", training("a" * 60), "metadata.name"),
    ("name has an underscore", inference("chat_v2"), "metadata.name"),
    # the pod template fields gpualloc reads are typed
    ("toleration not an object", training(**pod_spec(tolerations=["x"])), "tolerations[0]"),
    (
        "toleration operator",
        training(**pod_spec(tolerations=[{"key": "k", "operator": "Maybe"}])),
        "tolerations[0].operator",
    ),
    (
        "toleration effect",
        training(**pod_spec(tolerations=[{"operator": "Exists", "effect": "Sometimes"}])),
        "tolerations[0].effect",
    ),
    (
        "toleration Exists with a value",
        training(**pod_spec(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}])),
        "spec.template.spec.tolerations[0].value",
    ),
    ("nodeName set", training(**pod_spec(nodeName="gpu-1")), "spec.template.spec.nodeName"),
    (
        "nodeSelector value not a string",
        training(**pod_spec(nodeSelector={"pool": 5})),
        "spec.template.spec.nodeSelector.pool",
    ),
    (
        "node affinity operator",
        training(**pod_spec(affinity=node_affinity({"key": "zone", "operator": "Near"}))),
        "nodeSelectorTerms[0].matchExpressions[0].operator",
    ),
    (
        "containers not a list",
        training(template={"spec": {"containers": "x"}}),
        "spec.template.spec.containers",
    ),
    (
        "container not an object",
        training(template={"spec": {"containers": ["x"]}}),
        "spec.template.spec.containers[0]",
    ),
    (
        "cpu request not a quantity",
        training(
            template={
                "spec": {"containers": [{**CONTAINER, "resources": {"requests": {"cpu": "lots"}}}]}
            }
        ),
        "spec.template.spec.containers[0].resources.requests.cpu",
    ),
    (
        "env var without a name",
        training(template={"spec": {"containers": [{**CONTAINER, "env": [{"value": "1"}]}]}}),
        "spec.template.spec.containers[0].env[0].name",
    ),
    (
        "hostNetwork not a boolean",
        training(**pod_spec(hostNetwork="yes")),
        "spec.template.spec.hostNetwork",
    ),
    # counts and sizes are bounded
    ("workers 100000", training(workers=100000), "spec.workers"),
    ("minWorkers 600", training(workers=2, minWorkers=600), "spec.minWorkers"),
    ("gpusPerWorker 1000", training(gpusPerWorker=1000), "spec.gpusPerWorker"),
    ("priority beyond int32", training(priority=2**40), "spec.priority"),
    ("estimatedGPUHours 1e12", training(estimatedGPUHours=1e12), "spec.estimatedGPUHours"),
    ("replicas 1e6", inference(replicas=1_000_000), "spec.replicas"),
    ("maxReplicas 100000", inference(maxReplicas=100000), "spec.maxReplicas"),
    ("gpusPerReplica 1000", inference(gpusPerReplica=1000), "spec.gpusPerReplica"),
    (
        "model.parameters with a payload",
        inference(gpusPerReplica=None, model={"parameters": "70B; DROP"}),
        "spec.model.parameters",
    ),
    (
        "model.parameters of 10 KB",
        inference(gpusPerReplica=None, model={"parameters": "7" * 10240}),
        "spec.model.parameters",
    ),
    (
        "model.parameters 5000T",
        training(workers=None, gpusPerWorker=None, model={"parameters": "5000T"}),
        "spec.model.parameters",
    ),
    (
        "model.parameters 0B",
        training(workers=None, gpusPerWorker=None, model={"parameters": "0B"}),
        "spec.model.parameters",
    ),
    ("gpu.products of 40", training(gpu={"products": ["x"] * 40}), "spec.gpu.products"),
    (
        "preemptionGracePeriodSeconds 99999",
        inference(preemptionGracePeriodSeconds=99999),
        "spec.preemptionGracePeriodSeconds",
    ),
    (
        "failurePolicy.maxRestarts 1000",
        training(failurePolicy={"maxRestarts": 1000}),
        "spec.failurePolicy.maxRestarts",
    ),
    # the AllocationPolicy
    ("policy maxPodsPerJob 0", policy(limits={"maxPodsPerJob": 0}), "spec.limits.maxPodsPerJob"),
    (
        "policy grace period 7200",
        policy(preemption={"gracePeriodSeconds": 7200}),
        "spec.preemption.gracePeriodSeconds",
    ),
    ("policy unboundTimeoutSeconds 1", policy(unboundTimeoutSeconds=1), "unboundTimeoutSeconds"),
    (
        "policy allowPrivileged not a boolean",
        policy(security={"allowPrivileged": "yes"}),
        "spec.security.allowPrivileged",
    ),
    (
        "policy solver time limit of a day",
        policy(solver={"timeLimitSeconds": 86400}),
        "spec.solver.timeLimitSeconds",
    ),
    ("policy resyncSeconds 0", policy(resyncSeconds=0), "spec.resyncSeconds"),
    ("policy nodeSelector key", policy(nodeSelector={"bad key!": "x"}), "spec.nodeSelector"),
]


def _without_nones(doc: dict[str, Any]) -> dict[str, Any]:
    """Spec keys set to None by a case are dropped (a model instead of explicit sizes)."""
    out = copy.deepcopy(doc)
    out["spec"] = {k: v for k, v in out["spec"].items() if v is not None}
    return out


@pytest.mark.parametrize(("doc", "field"), [(d, f) for _, d, f in BAD], ids=[c for c, _, _ in BAD])
def test_hostile_objects_are_refused_naming_the_field(
    kube: Kube, crds: None, doc: dict[str, Any], field: str
) -> None:
    result = dry_run(kube, _without_nones(doc))
    assert result.returncode != 0, f"accepted: {result.stdout[:400]}"
    assert field in result.stderr, result.stderr


def test_a_bad_name_is_refused_with_the_reason(kube: Kube, crds: None) -> None:
    result = dry_run(kube, training("7b-sft"))
    assert "DNS-1035 label of at most 52 characters" in result.stderr, result.stderr
    assert "Service" in result.stderr


def test_names_up_to_52_characters_are_accepted(kube: Kube, crds: None) -> None:
    assert dry_run(kube, training("a" * 52)).returncode == 0
    assert dry_run(kube, inference("a" * 53)).returncode != 0


def test_the_samples_are_accepted(kube: Kube, crds: None) -> None:
    docs = [
        d
        for path in sorted((REPO / "manifests" / "samples").rglob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    jobs = [d for d in docs if d["apiVersion"] == API]
    assert len(jobs) >= 4
    for doc in jobs:
        doc["metadata"]["namespace"] = NAMESPACE  # the samples' namespaces may not exist here
        result = dry_run(kube, doc)
        assert result.returncode == 0, f"{doc['metadata']['name']}: {result.stderr}"


def test_untyped_pod_fields_are_kept(kube: Kube, crds: None) -> None:
    container = {
        **CONTAINER,
        "command": ["torchrun", "train.py"],
        "args": ["--lr", "1e-4"],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "ports": [{"containerPort": 29500}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"tcpSocket": {"port": 29500}},
        "resources": {"requests": {"cpu": "500m", "memory": "64Gi", "nvidia.com/gpu": 8}},
    }
    template = {
        "metadata": {"labels": {"team": "nlp"}, "annotations": {"note": "x"}},
        "spec": {
            "containers": [container],
            "volumes": [{"name": "data", "emptyDir": {"medium": "Memory"}}],
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"example.com/pool": "a100"},
            "priorityClassName": "high",
            "affinity": {
                **node_affinity({"key": "zone", "operator": "In", "values": ["a"]}),
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
            },
        },
    }
    result = dry_run(kube, training(template=template))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["template"] == template  # nothing pruned


def test_new_fields_get_their_defaults(kube: Kube, crds: None) -> None:
    result = dry_run(kube, policy())
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert spec["limits"] == {"maxPodsPerJob": 512}
    assert spec["unboundTimeoutSeconds"] == 120
    assert spec["preemption"]["gracePeriodSeconds"] == 30
    assert spec["security"] == {
        "allowServiceAccountName": False,
        "allowPrivileged": False,
        "allowHostPath": False,
        "allowHostNetwork": False,
        "allowHostPID": False,
        "allowHostIPC": False,
    }
    job = dry_run(kube, training())
    assert job.returncode == 0, job.stderr
    assert json.loads(job.stdout)["spec"]["failurePolicy"] == {"maxRestarts": 0}


def create(kube: Kube, doc: dict[str, Any], namespace: str) -> None:
    doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    kube.kubectl("create", "-f", "-", input=json.dumps(doc))


def test_status_takes_restarts_and_an_invalid_condition(
    kube: Kube, crds: None, namespace: str
) -> None:
    # restricted to a node pool that does not exist: an operator running on this cluster
    # creates no pods for it
    create(kube, training("st", **pod_spec(nodeSelector={"pool": "none"})), namespace)
    status = {
        "phase": "Failed",
        "message": "spec.template.spec.serviceAccountName is not allowed by the policy",
        "restarts": 2,
        "conditions": [
            {
                "type": "Invalid",
                "status": "True",
                "reason": "NotAllowed",
                "message": "spec.template.spec.serviceAccountName is not allowed by the policy",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        ],
    }
    patched = kube.kubectl(
        "patch", "-n", namespace, "llmtrainingjob", "st", "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}), "--dry-run=server", "-o", "json",
    )  # fmt: skip
    got = json.loads(patched.stdout)["status"]
    assert got["restarts"] == 2
    assert [c["type"] for c in got["conditions"]] == ["Invalid"]


PROBE_GROUP = "admission.gpualloc.test"


def probe_crd(with_name_rule: bool) -> dict[str, Any]:
    """The LLMTrainingJob CRD under another group and kind, with or without the name rule, so
    the upgrade path is tried without touching the shared cluster's gpualloc CRDs."""
    crd = copy.deepcopy(_generator().CRDS["llmtrainingjobs.yaml"])
    crd["metadata"]["name"] = f"admissionprobes.{PROBE_GROUP}"
    crd["spec"]["group"] = PROBE_GROUP
    crd["spec"]["names"] = {"kind": "AdmissionProbe", "plural": "admissionprobes"}
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    if not with_name_rule:
        del root["x-kubernetes-validations"]
    return crd


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen_crds", REPO / "hack" / "gen_crds.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_job_named_before_the_rule_stays_updatable(kube: Kube, namespace: str) -> None:
    """The name rule is checked on create only: an existing job with a name the rule now
    refuses still takes status writes, label changes and deletion (finalizers removed)."""
    crd = probe_crd(with_name_rule=False)
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))
    try:
        kube.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}")
        old = {**training("7b-old"), "apiVersion": f"{PROBE_GROUP}/v1alpha1"}
        old["kind"] = "AdmissionProbe"
        kube.wait_for(
            lambda: dry_run(kube, {**old, "metadata": {"name": "7b-new", "namespace": namespace}})
            .returncode == 0,
            what="the probe CRD served",
        )  # fmt: skip
        create(kube, old, namespace)
        kube.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-",
            input=json.dumps(probe_crd(with_name_rule=True)),
        )  # fmt: skip
        new = {**old, "metadata": {"name": "7b-new", "namespace": namespace}}
        kube.wait_for(
            lambda: "DNS-1035" in dry_run(kube, new).stderr, what="the name rule in force"
        )
        probe = ["-n", namespace, "admissionprobe", "7b-old"]
        kube.kubectl("label", *probe, "team=nlp")
        kube.kubectl(
            "patch", *probe, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": {"phase": "Running", "restarts": 1}}),
        )  # fmt: skip
        kube.kubectl("patch", *probe, "--type=merge", "-p", '{"metadata":{"finalizers":["x/y"]}}')
        kube.kubectl("delete", *probe, "--wait=false")
        kube.kubectl("patch", *probe, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        kube.wait_for(
            lambda: kube.kubectl("get", *probe, check=False).returncode != 0,
            what="the probe deleted",
        )
    finally:
        kube.kubectl("delete", "crd", crd["metadata"]["name"], "--wait=false", check=False)
