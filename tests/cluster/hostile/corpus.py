"""Hostile objects a careless or malicious tenant can write, as a table.

Each case is one object. The campaign creates it next to valid jobs and expects the API
server to refuse it, or gpualloc to report it on the object's own status, without hurting
anyone else. Jobs run in the test's node pool (nodeSelector), so they compete for real GPUs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from tests.cluster.operator_harness import H100, POOL_LABEL, inference, job, training

Obj = dict[str, Any]
TRAINING, INFERENCE = "LLMTrainingJob", "LLMInferenceJob"
TYPO_PRODUCT = "NVIDIA-H100-80GB-HBM"  # H100 without its "3": matches no node
SERVICE_ACCOUNT = "powerful"  # the campaign creates it: a real account the job must not borrow


@dataclass(frozen=True)
class Case:
    """One hostile object and what else, besides refusal or a report, is acceptable."""

    id: str
    obj: Obj = field(repr=False)
    why: str
    # a confused-deputy template: gpualloc must never create a pod from it
    security: bool = False
    # hostile only by its name: running with a working rendezvous Service is also correct
    name_only: bool = False

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def _one(kind: str, name: str, namespace: str, pool: str, **spec: Any) -> Obj:
    """A 1-GPU, 1-pod job: cheap if it is wrongly placed."""
    if kind == TRAINING:
        return training(name, namespace, pool, workers=1, gpus=1, **spec)
    return inference(name, namespace, pool, replicas=1, gpus=1, **spec)


def _pod(obj: Obj, **fields: Any) -> Obj:
    obj["spec"]["template"]["spec"].update(fields)
    return obj


def _main(obj: Obj, **fields: Any) -> Obj:
    obj["spec"]["template"]["spec"]["containers"][0].update(fields)
    return obj


def _sized(name: str, namespace: str, pool: str, parameters: Any, products: list[str]) -> Obj:
    """A training job whose workers and GPUs gpualloc derives from the model size."""
    return job(
        TRAINING,
        name,
        namespace,
        pool,
        model={"parameters": parameters, "precision": "bf16"},
        gpu={"products": products},
    )


def _affinity(*terms: Obj) -> Obj:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)
    }}}  # fmt: skip


def job_cases(namespace: str, pool: str, node_in_pool: str) -> list[Case]:
    """The hostile jobs; `node_in_pool` is a real node of the pool (for the nodeName case)."""
    ns, p = namespace, pool
    T, I = TRAINING, INFERENCE  # noqa: E741
    big_query = "sum(rate(vllm:request_success_total[2m]))" + " + vector(1)" * 9000
    cases = [
        Case("h-toleration-str", _pod(_one(T, "h-toleration-str", ns, p), tolerations=["x"]),
             "a toleration that is a string (AttributeError in convert today)"),
        Case("h-toleration-op", _pod(_one(T, "h-toleration-op", ns, p),
             tolerations=[{"key": "x", "operator": "Sometimes"}]), "a toleration operator"),
        Case("h-containers-str", _pod(_one(T, "h-containers-str", ns, p), containers="main"),
             "containers is a string"),
        Case("h-template-spec-list", _one(I, "h-template-spec-list", ns, p),
             "the template's spec is a list"),
        Case("h-no-image", _pod(_one(T, "h-no-image", ns, p), containers=[{"name": "main"}]),
             "a container without an image: every pod create is refused"),
        Case("h-typo-70b", _sized("h-typo-70b", ns, p, "70B", [TYPO_PRODUCT]),
             "70B with a typo'd product: sized against 1 MiB GPUs, ~185,000 pods today"),
        Case("h-params-1000t", _sized("h-params-1000t", ns, p, "1000T", [H100]),
             "a 1000T model: more workers than any cap"),
        Case("h-params-int-huge", _sized("h-params-int-huge", ns, p, 2**62, [H100]),
             "an integer parameter count of 2^62"),
        Case("h-params-999t", _sized("h-params-999t", ns, p, "999T", [H100]),
             "999T: just under a 1000T maximum, still millions of GPUs"),
        Case("h-workers-huge", training("h-workers-huge", ns, p, workers=100_000, gpus=1),
             "100,000 workers"),
        Case("h-replicas-huge", inference("h-replicas-huge", ns, p, replicas=100_000, gpus=1,
             maxReplicas=100_000), "100,000 replicas"),
        Case("7b-sft", training("7b-sft", ns, p, workers=2, gpus=1),
             "a name a Service may not have (starts with a digit)", name_only=True),
        Case("a" * 60, training("a" * 60, ns, p, workers=2, gpus=1),
             "a 60-character name: <name>-worker-0 is no valid hostname", name_only=True),
        Case("h-Upper", _one(T, "h-Upper", ns, p), "a name with uppercase letters"),
        Case("h-priority-str", _one(T, "h-priority-str", ns, p), "priority 'high'"),
        Case("h-priority-float", _one(T, "h-priority-float", ns, p), "priority 1.5"),
        Case("h-priority-2e40", _one(T, "h-priority-2e40", ns, p), "priority 2^40"),
        Case("h-priority-neg", _one(I, "h-priority-neg", ns, p), "priority -2^40"),
        Case("h-cpu-lots", _main(_one(T, "h-cpu-lots", ns, p),
             resources={"requests": {"cpu": "lots"}}), "a CPU request 'lots'"),
        Case("h-memory-negative", _main(_one(I, "h-memory-negative", ns, p),
             resources={"requests": {"memory": "-1Gi"}}), "a negative memory request"),
        Case("h-gpu-sidecar", _pod(_one(T, "h-gpu-sidecar", ns, p), containers=[
            {"name": "main", "image": "example/llm:1"},
            {"name": "side", "image": "example/llm:1",
             "resources": {"limits": {"nvidia.com/gpu": "4"}}},
        ]), "4 more GPUs requested by a second container of the template"),
        Case("h-gpu-init", _pod(_one(T, "h-gpu-init", ns, p), initContainers=[
            {"name": "init", "image": "example/llm:1",
             "resources": {"limits": {"nvidia.com/gpu": "16"}}},
        ]), "an init container asking 16 GPUs (no node has 16)"),
        Case("h-nodeselector-list", _pod(_one(T, "h-nodeselector-list", ns, p),
             nodeSelector={POOL_LABEL: p, "zone": ["a", "b"]}), "a nodeSelector value list"),
        Case("h-affinity-op", _pod(_one(T, "h-affinity-op", ns, p), affinity=_affinity(
            {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}
        )), "node affinity with the operator 'Near'"),
        Case("h-affinity-nokey", _pod(_one(I, "h-affinity-nokey", ns, p), affinity=_affinity(
            {"matchExpressions": [{"operator": "Exists"}]}
        )), "a node affinity expression without a key (KeyError in convert today)"),
        Case("h-matchfields-uid", _pod(_one(T, "h-matchfields-uid", ns, p), affinity=_affinity(
            {"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["x"]}]}
        )), "matchFields on a field nodes cannot be selected by"),
        Case("h-matchfields-empty", _pod(_one(T, "h-matchfields-empty", ns, p),
             affinity=_affinity({"matchFields": [
                 {"key": "metadata.name", "operator": "In", "values": []}]})),
             "matchFields metadata.name In []"),
        Case("h-env-object", _main(_one(T, "h-env-object", ns, p),
             env=[{"name": "A", "value": {"x": 1}}]), "an env value that is an object"),
        Case("h-service-account", _pod(_one(T, "h-service-account", ns, p),
             serviceAccountName=SERVICE_ACCOUNT), "borrows a ServiceAccount", security=True),
        Case("h-privileged", _main(_one(T, "h-privileged", ns, p),
             securityContext={"privileged": True}), "a privileged container", security=True),
        Case("h-hostpath", _main(_pod(_one(I, "h-hostpath", ns, p),
             volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
             volumeMounts=[{"name": "root", "mountPath": "/host"}]),
             "mounts the node's / ", security=True),
        Case("h-hostnetwork", _pod(_one(T, "h-hostnetwork", ns, p), hostNetwork=True),
             "hostNetwork", security=True),
        Case("h-hostpid", _pod(_one(T, "h-hostpid", ns, p), hostPID=True),
             "hostPID", security=True),
        Case("h-hostipc", _pod(_one(I, "h-hostipc", ns, p), hostIPC=True),
             "hostIPC", security=True),
        Case("h-nodename", _pod(_one(T, "h-nodename", ns, p), nodeName=node_in_pool),
             "nodeName in the template: bypasses the planner's accounting", security=True),
        Case("h-label-10kb", _one(T, "h-label-10kb", ns, p),
             "a 10 KB label value in the template"),
        Case("h-annotation-300kb", _one(I, "h-annotation-300kb", ns, p),
             "300 KB of annotations: more than a pod may carry"),
        Case("h-query-huge", inference("h-query-huge", ns, p, replicas=1, gpus=1, maxReplicas=4,
             autoscaling={"query": big_query, "targetPerReplica": 10}),
             "a ~100 KB autoscaling query"),
        Case("h-target-zero", inference("h-target-zero", ns, p, replicas=1, gpus=1,
             maxReplicas=4, autoscaling={"query": "sum(up)", "targetPerReplica": 0}),
             "targetPerReplica 0"),
        Case("h-target-negative", inference("h-target-negative", ns, p, replicas=1, gpus=1,
             maxReplicas=4, autoscaling={"query": "sum(up)", "targetPerReplica": -5}),
             "targetPerReplica -5"),
        Case("h-min-gt-max", inference("h-min-gt-max", ns, p, replicas=2, gpus=1,
             minReplicas=5, maxReplicas=2), "minReplicas > maxReplicas"),
        Case("h-products-int", _one(T, "h-products-int", ns, p, gpu={"products": [1, {}]}),
             "gpu.products items that are not strings"),
    ]  # fmt: skip
    by_id = {c.id: c.obj for c in cases}
    by_id["h-template-spec-list"]["spec"]["template"]["spec"] = ["x"]
    by_id["h-priority-str"]["spec"]["priority"] = "high"
    by_id["h-priority-float"]["spec"]["priority"] = 1.5
    by_id["h-priority-2e40"]["spec"]["priority"] = 2**40
    by_id["h-priority-neg"]["spec"]["priority"] = -(2**40)
    by_id["h-label-10kb"]["spec"]["template"]["metadata"] = {"labels": {"big": "x" * 10_240}}
    by_id["h-annotation-300kb"]["spec"]["template"]["metadata"] = {
        "annotations": {f"a{i}": "x" * 60_000 for i in range(5)}
    }
    return cases


def squatter(namespace: str, pool: str, job_name: str) -> Obj:
    """A plain pod holding the name, labels and one GPU of `job_name`'s worker 0, with no
    ownerReference: gpualloc must neither adopt, count, change nor delete it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job_name}-worker-0",
            "namespace": namespace,
            "labels": {
                "gpualloc.io/job": job_name,
                "gpualloc.io/kind": TRAINING,
                "gpualloc.io/replica": "0",
            },
        },
        "spec": {
            "nodeSelector": {POOL_LABEL: pool},
            "containers": [
                {
                    "name": "main",
                    "image": "example/squat:1",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
    }


@dataclass(frozen=True)
class NodeCase:
    """A kwok node with malformed GPU Feature Discovery labels or allocatable."""

    id: str
    labels: dict[str, str]
    allocatable_gpus: str = "8"
    allocatable_cpu: str = "96"
    # what the node's memory label promises: None when it is not a usable MiB number
    memory_mib: int | None = None


def node_cases() -> list[NodeCase]:
    mem = "nvidia.com/gpu.memory"
    prod = "nvidia.com/gpu.product"
    return [
        NodeCase("mem-lots", {prod: H100, mem: "lots"}),
        NodeCase("mem-missing", {prod: H100}),
        NodeCase("mem-huge", {prod: H100, mem: "9" * 20}, memory_mib=int("9" * 20)),
        NodeCase("product-300", {prod: "N" * 300, mem: "81559"}, memory_mib=81559),
        NodeCase("product-empty", {prod: "", mem: "81559"}, memory_mib=81559),
        NodeCase("gpus-negative", {prod: H100, mem: "81559"}, "-1", memory_mib=81559),
        NodeCase("gpus-1e9", {prod: "NVIDIA-GB200", mem: "81559"}, "1e9", memory_mib=81559),
        NodeCase("gpus-half", {prod: H100, mem: "81559"}, "0.5", memory_mib=81559),
        NodeCase("cpu-lots", {prod: H100, mem: "81559"}, allocatable_cpu="lots", memory_mib=81559),
    ]


def node_manifest(case: NodeCase, name: str, pool: str) -> Obj:
    """A kwok node (as hack/localcluster.py makes them) carrying the case's labels."""
    resources = {
        "cpu": case.allocatable_cpu,
        "memory": "1Ti",
        "pods": "110",
        "nvidia.com/gpu": case.allocatable_gpus,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "type": "kwok",
                POOL_LABEL: pool,
                **case.labels,
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "status": {"capacity": copy.deepcopy(resources), "allocatable": resources},
    }


# AllocationPolicy `default` specs with bad values; each is applied alone, then a good one.
BAD_POLICIES: list[tuple[str, Obj]] = [
    ("time-limit-negative", {"solver": {"timeLimitSeconds": -1}}),
    ("time-limit-huge", {"solver": {"timeLimitSeconds": 1e9}}),
    ("workers-100000", {"solver": {"workers": 100_000}}),
    ("gap-5", {"solver": {"relativeGap": 5}}),
    ("solver-string", {"solver": "fast"}),
    ("weight-int32-max", {"weights": {"fragmentation": 2**31 - 1, "throughput": 2**31 - 1}}),
    ("throughput-1e308", {"throughput": {H100: 1e308}}),
    ("debounce-huge", {"debounceSeconds": 1e9}),
    ("max-pods-negative", {"limits": {"maxPodsPerJob": -1}}),
    # the largest values a schema may let through: accepted, they must still be safe
    ("workers-64", {"solver": {"workers": 64, "timeLimitSeconds": 600}}),
    ("weights-1000", {"weights": {"fragmentation": 1000, "throughput": 1000},
                      "throughput": {H100: 1000, "NVIDIA-A100-SXM4-40GB": 0}}),
    ("max-pods-10000", {"limits": {"maxPodsPerJob": 10_000}, "resyncSeconds": 86_400}),
]  # fmt: skip
