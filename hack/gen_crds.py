"""Generate crds/*.yaml (the single source of truth for the API) and the Helm chart's copies.

Run `make generate`; a unit test fails when the files drift from this script.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
GROUP = "gpualloc.io"
VERSION = "v1alpha1"
PRECISIONS = ["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
PHASES = ["Pending", "Unschedulable", "Allocated", "Running", "Succeeded", "Failed", "Preempted"]

Schema = dict[str, Any]


def obj(description: str, properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "description": description, "properties": properties, **extra}


def integer(description: str, minimum: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", "format": "int32", "description": description, **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def rule(expr: str, message: str, field_path: str | None = None) -> Schema:
    r: Schema = {"rule": expr, "message": message}
    if field_path:
        r["fieldPath"] = field_path
    return r


GPU = obj(
    "Which GPUs a worker may use.",
    {
        "products": {
            "type": "array",
            "description": "Allowed GPU products (node label nvidia.com/gpu.product), e.g. "
            "NVIDIA-H100-80GB-HBM3. Empty means any product.",
            "items": {"type": "string"},
            "maxItems": 32,
        },
        "minMemoryMiB": integer(
            "Minimum memory per GPU in MiB (node label nvidia.com/gpu.memory).", 0
        ),
    },
)

MODEL = obj(
    "The model being trained or served; used to size GPUs and workers when they are omitted.",
    {
        "parameters": {
            "x-kubernetes-int-or-string": True,
            "description": "Parameter count: an integer or a size such as 7B, 70B, 1.5T.",
            "x-kubernetes-validations": [
                rule(
                    "type(self) == int ? self > 0 : "
                    "self.matches('^[0-9]+(\\\\.[0-9]+)?[KMBGTkmbgt]?$')",
                    "must be a positive integer or a size such as 7B, 70B or 1.5T",
                )
            ],
        },
        "precision": string("Numeric precision of the weights.", enum=PRECISIONS, default="bf16"),
    },
    required=["parameters"],
)

TEMPLATE = {
    "type": "object",
    "description": "Pod template for each worker or replica (a PodTemplateSpec: metadata and "
    "spec). gpualloc adds the GPU request, labels, the scheduling gate and node affinity.",
    "x-kubernetes-preserve-unknown-fields": True,
}

CONDITION = obj(
    "A status condition.",
    {
        "type": string("Condition type: Allocated, Ready or Preempted."),
        "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
        "reason": string("Machine-readable reason in CamelCase."),
        "message": string("Human-readable explanation."),
        "lastTransitionTime": string("When the status last changed.", format="date-time"),
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "Generation the condition was computed for.",
        },
    },
    required=["type", "status"],
)

STATUS = obj(
    "Observed state, written by gpualloc.",
    {
        "phase": string("Lifecycle phase.", enum=PHASES),
        "message": string("Why the job is in this phase, e.g. the planner's reason it waits."),
        "gpus": integer("GPUs currently allocated to the job."),
        "placed": integer("Workers or replicas currently placed."),
        "nodes": string("Nodes the job's pods are placed on (comma separated)."),
        "desiredReplicas": integer("Replicas wanted (after autoscaling, inference only)."),
        "selector": string("Label selector of the job's pods (for the scale subresource)."),
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The spec generation this status reflects.",
        },
        "allocation": {
            "type": "array",
            "description": "Where each worker or replica is placed.",
            "items": obj(
                "One placed worker or replica.",
                {
                    "replica": integer("Worker or replica index."),
                    "node": string("Node name."),
                    "gpus": integer("GPUs it holds."),
                },
            ),
        },
        "conditions": {
            "type": "array",
            "description": "Allocated, Ready and Preempted conditions.",
            "items": CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    },
)

COMMON_SPEC = {
    "priority": integer(
        "Higher always wins over lower; jobs of equal priority: older first.", default=0
    ),
    "gpu": GPU,
    "model": MODEL,
    "template": TEMPLATE,
}

TRAINING_SPEC = obj(
    "A gang of identical multi-GPU workers, placed all or nothing.",
    {
        **COMMON_SPEC,
        "workers": integer("Worker pods in the gang. Sized from model when omitted.", 1),
        "minWorkers": integer(
            "Elastic gangs run with minWorkers..workers; defaults to workers.", 1
        ),
        "gpusPerWorker": integer(
            "GPUs per worker, all on one node (a tensor-parallel group). Sized from model "
            "when omitted.",
            1,
            maximum=64,
        ),
        "preemptible": {
            "type": "boolean",
            "default": False,
            "description": "May be evicted (the whole gang) for higher priority.",
        },
        "estimatedGPUHours": {
            "type": "number",
            "minimum": 0,
            "description": "Expected GPU hours; used for completion estimates.",
        },
    },
    **{
        "x-kubernetes-validations": [
            rule(
                "has(self.gpusPerWorker) || has(self.model)",
                "gpusPerWorker or model is required",
                ".gpusPerWorker",
            ),
            rule(
                "!has(self.minWorkers) || !has(self.workers) || self.minWorkers <= self.workers",
                "minWorkers must be <= workers",
                ".minWorkers",
            ),
        ]
    },
)

INFERENCE_SPEC = obj(
    "Replicas of a model server; replicas are placed independently.",
    {
        **COMMON_SPEC,
        "replicas": integer(
            "Desired replicas; with autoscaling gpualloc picks within minReplicas..maxReplicas.",
            0,
            default=1,
        ),
        "minReplicas": integer("Fewest replicas worth running.", 0, default=1),
        "maxReplicas": integer("Most replicas autoscaling may ask for.", 1),
        "gpusPerReplica": integer(
            "GPUs per replica, on one node. Sized from model when omitted.", 1, maximum=64
        ),
        "autoscaling": obj(
            "Scale replicas by demand measured in Prometheus.",
            {
                "query": string("PromQL giving the current demand, e.g. requests per second."),
                "targetPerReplica": {
                    "type": "number",
                    "exclusiveMinimum": True,
                    "minimum": 0,
                    "description": "Demand one replica serves.",
                },
            },
            required=["query", "targetPerReplica"],
        ),
        "preemptible": {
            "type": "boolean",
            "default": False,
            "description": "May be evicted for higher priority.",
        },
    },
    **{
        "x-kubernetes-validations": [
            rule(
                "has(self.gpusPerReplica) || has(self.model)",
                "gpusPerReplica or model is required",
                ".gpusPerReplica",
            ),
            rule(
                "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "minReplicas must be <= maxReplicas",
                ".minReplicas",
            ),
            rule(
                "!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
                "replicas must be <= maxReplicas",
                ".replicas",
            ),
        ]
    },
)

POLICY_SPEC = obj(
    "Cluster-wide allocation settings; the AllocationPolicy named `default` applies.",
    {
        "solver": obj(
            "CP-SAT solver limits.",
            {
                "timeLimitSeconds": {
                    "type": "number",
                    "minimum": 0.1,
                    "default": 10,
                    "description": "Time limit per planning round.",
                },
                "relativeGap": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "default": 0,
                    "description": "Stop when within this relative gap of the bound.",
                },
                "workers": integer("CP-SAT search workers (threads).", 1, default=2),
            },
        ),
        "preemption": obj(
            "Evicting lower-priority preemptible gangs.",
            {
                "enabled": {
                    "type": "boolean",
                    "default": True,
                    "description": "Allow evictions at all.",
                },
                "maxEvictionsPerRound": integer("At most this many jobs evicted per round.", 0),
            },
        ),
        "weights": obj(
            "Relative weights inside the lower objective levels.",
            {
                "fragmentation": integer("Weight of keeping whole nodes free.", 0, default=1),
                "throughput": integer(
                    "Weight of faster products for higher priority.", 0, default=1
                ),
            },
        ),
        "throughput": {
            "type": "object",
            "description": "Relative speed per GPU product (1.0 = baseline), e.g. "
            "NVIDIA-H100-80GB-HBM3: 3.0.",
            "additionalProperties": {"type": "number", "minimum": 0},
        },
        "debounceSeconds": {
            "type": "number",
            "minimum": 0,
            "default": 1,
            "description": "Changes within this window are planned together.",
        },
        "resyncSeconds": {
            "type": "number",
            "minimum": 1,
            "default": 60,
            "description": "Periodic safety re-plan interval.",
        },
        "nodeSelector": {
            "type": "object",
            "description": "Only nodes with all these labels are managed; empty = all GPU nodes.",
            "additionalProperties": {"type": "string"},
        },
        "prometheus": obj(
            "Where to read GPU health and inference demand.",
            {
                "url": string("Prometheus base URL, e.g. http://prometheus:9090."),
                "intervalSeconds": {
                    "type": "number",
                    "minimum": 1,
                    "default": 15,
                    "description": "Polling interval.",
                },
                "unhealthyGPUQuery": string(
                    "PromQL returning one series per unhealthy GPU (labels Hostname, gpu).",
                    default="max by (Hostname, gpu) "
                    "(max_over_time(DCGM_FI_DEV_XID_ERRORS[5m])) > 0",
                ),
            },
        ),
    },
)

POLICY_STATUS = obj(
    "Observed state, written by gpualloc.",
    {
        "conditions": {
            "type": "array",
            "description": "PrometheusReachable and similar conditions.",
            "items": CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
        "lastStatus": string("Solver status of the last planning round (OPTIMAL, FEASIBLE, ...)."),
    },
)


def columns(count_column: str, count_path: str) -> list[Schema]:
    return [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
        {"name": count_column, "type": "string", "jsonPath": count_path},
        {"name": "Nodes", "type": "string", "jsonPath": ".status.nodes"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd(
    kind: str,
    plural: str,
    short: list[str],
    scope: str,
    spec: Schema,
    status: Schema,
    printer: list[Schema],
    scale: bool = False,
) -> Schema:
    subresources: Schema = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.placed",
            "labelSelectorPath": ".status.selector",
        }
    names: Schema = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": ["gpualloc"],
    }
    if short:
        names["shortNames"] = short
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": names,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": printer,
                    "schema": {
                        "openAPIV3Schema": obj(
                            f"{kind}: an object of the gpualloc.io API (see the gpualloc README).",
                            {
                                "apiVersion": string("API version of this object."),
                                "kind": string("Kind of this object."),
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                            required=["spec"] if scope == "Namespaced" else [],
                        )
                    },
                }
            ],
        },
    }


CRDS = {
    "llmtrainingjobs.yaml": crd(
        "LLMTrainingJob",
        "llmtrainingjobs",
        ["ltj"],
        "Namespaced",
        TRAINING_SPEC,
        STATUS,
        columns("Workers", ".status.placed"),
    ),
    "llminferencejobs.yaml": crd(
        "LLMInferenceJob",
        "llminferencejobs",
        ["lij"],
        "Namespaced",
        INFERENCE_SPEC,
        STATUS,
        columns("Replicas", ".status.placed"),
        scale=True,
    ),
    "allocationpolicies.yaml": crd(
        "AllocationPolicy",
        "allocationpolicies",
        ["ap"],
        "Cluster",
        POLICY_SPEC,
        POLICY_STATUS,
        [
            {"name": "Last Status", "type": "string", "jsonPath": ".status.lastStatus"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
}


def render() -> dict[str, str]:
    header = "# Generated by hack/gen_crds.py (make generate). Do not edit.\n"
    return {
        name: header + yaml.safe_dump(doc, sort_keys=False, width=100) for name, doc in CRDS.items()
    }


def main() -> int:
    targets = [ROOT / "crds", ROOT / "helm" / "gpualloc" / "crds"]
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        for name, text in render().items():
            (target / name).write_text(text)
    print(f"wrote {len(CRDS)} CRDs to " + ", ".join(str(t.relative_to(ROOT)) for t in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
