"""Generate crds/*.yaml (the single source of truth for the API) and the Helm chart's copies.

Run `make generate`; a unit test fails when the files drift from this script. The schemas refuse
malformed or hostile objects at admission (bounds on every count, size and string; a typed pod
template for the fields gpualloc reads); hack/crd_schema.py has the builders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crd_schema import (
    DNS_LABEL,
    INT32_MAX,
    INT32_MIN,
    LABEL_KEY,
    LABEL_KEY_MAX,
    TEMPLATE,
    Schema,
    array,
    boolean,
    cel_string,
    integer,
    label_map,
    label_value,
    number,
    obj,
    rule,
    string,
    validations,
)

ROOT = Path(__file__).resolve().parent.parent
GROUP = "gpualloc.io"
VERSION = "v1alpha1"
PRECISIONS = ["fp32", "bf16", "fp16", "fp8", "int8", "int4"]
PHASES = ["Pending", "Unschedulable", "Allocated", "Running", "Succeeded", "Failed", "Preempted"]
MAX_COUNT = 512  # workers / replicas of one job
MAX_GPUS_PER_POD = 64
MAX_PODS_PER_JOB = 10000  # the largest AllocationPolicy limits.maxPodsPerJob
MAX_PARAMETERS = 10**15  # 1000T
# The job names its headless Service (a DNS-1035 label) and pods `<job>-worker-<i>` whose
# hostname must fit 63 characters with the index up to 511 (`-worker-511` is 11).
JOB_NAME = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
JOB_NAME_MAX = 52
NUMBER = "[0-9]+(\\.[0-9]+)?"
# What gpualloc.model.sizing.parse_parameters accepts, restricted to a positive number.
PARAMETERS = "^\\s*([0-9]*[1-9][0-9]*(\\.[0-9]+)?|[0-9]+\\.[0-9]*[1-9][0-9]*)\\s*[KMBGTkmbgt]?\\s*$"


GPU = obj(
    "Which GPUs a worker may use.",
    {
        "products": array(
            "Allowed GPU products (node label nvidia.com/gpu.product), e.g. "
            "NVIDIA-H100-80GB-HBM3. Empty means any product.",
            label_value("A GPU product name."),
            32,
        ),
        "minMemoryMiB": integer(
            "Minimum memory per GPU in MiB (node label nvidia.com/gpu.memory).", 0, 2**20
        ),
    },
)

MODEL = obj(
    "The model being trained or served; used to size GPUs and workers when they are omitted.",
    {
        "parameters": {
            "x-kubernetes-int-or-string": True,
            "description": "Parameter count: an integer or a size such as 7B, 70B, 1.5T "
            "(suffixes K, M, B or G, T), at most 1000T.",
            "minimum": 1,
            "maximum": MAX_PARAMETERS,
            "maxLength": 16,
            "pattern": PARAMETERS,
            **validations(
                rule(
                    f"type(self) == int ? self > 0 && self <= {MAX_PARAMETERS} : "
                    f"self.matches({cel_string(PARAMETERS)}) && "
                    f"double(self.find({cel_string(NUMBER)})) * "
                    "{'': 1.0, 'K': 1e3, 'M': 1e6, 'B': 1e9, 'G': 1e9, 'T': 1e12}"
                    "[self.find('[KMBGTkmbgt]').upperAscii()] <= 1e15",
                    "must be a positive integer or a size such as 7B, 70B or 1.5T, at most 1000T",
                )
            ),
        },
        "precision": string(
            "Numeric precision of the weights.", 8, enum=PRECISIONS, default="bf16"
        ),
    },
    required=["parameters"],
)

CONDITION = obj(
    "A status condition.",
    {
        "type": string(
            "Condition type: Allocated, Ready, Preempted, Invalid (jobs) or "
            "PrometheusReachable (policy).",
            316,
        ),
        "status": string("True, False or Unknown.", 8, enum=["True", "False", "Unknown"]),
        "reason": string("Machine-readable reason in CamelCase.", 1024),
        "message": string("Human-readable explanation.", 32768),
        "lastTransitionTime": string("When the status last changed.", 64, format="date-time"),
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "Generation the condition was computed for.",
        },
    },
    required=["type", "status"],
)

CONDITIONS = array(
    "Conditions by type (Allocated, Ready, Preempted, Moved; Invalid when the job cannot be used, "
    "with the reason).",
    CONDITION,
    32,
    **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
)


def job_status(training: bool) -> Schema:
    restarts = (
        {"restarts": integer("Times the whole gang was restarted after a worker failed.", 0)}
        if training
        else {}
    )
    return obj(
        "Observed state, written by gpualloc.",
        {
            "phase": string("Lifecycle phase.", 16, enum=PHASES),
            "message": string(
                "Why the job is in this phase, e.g. the planner's reason it waits.", 32768
            ),
            "gpus": integer("GPUs currently allocated to the job."),
            "placed": integer("Workers or replicas currently placed."),
            "nodes": string("Nodes the job's pods are placed on (comma separated).", 65536),
            "desiredReplicas": integer("Replicas wanted (after autoscaling, inference only)."),
            "selector": string(
                "Label selector of the job's pods (for the scale subresource).", 1024
            ),
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The spec generation this status reflects.",
            },
            **restarts,
            "allocation": array(
                "Where each worker or replica is placed.",
                obj(
                    "One placed worker or replica.",
                    {
                        "replica": integer("Worker or replica index."),
                        "node": string("Node name.", 253),
                        "gpus": integer("GPUs it holds."),
                    },
                ),
                MAX_PODS_PER_JOB,
            ),
            "conditions": CONDITIONS,
            "unblock": UNBLOCK,
            "lastMovedTime": string(
                "When the plan last moved the job's pods (defragmentation).", 64, format="date-time"
            ),
        },
    )


UNBLOCK = obj(
    "What would let the job run now (while it waits), from counterfactual plans of the same "
    "model: `gpualloc explain` answers the same on demand.",
    {
        "message": string("The answer in words.", 32768),
        "complete": {
            "type": "boolean",
            "description": "False when the time budget ran out before every question.",
        },
        "evict": array(
            "Running jobs that would have to move or be evicted (the fewest GPUs).",
            obj(
                "One running job in the way.",
                {
                    "job": string("namespace/name.", 317),
                    "gpus": integer("GPUs it holds."),
                    "gpuHoursLost": {"type": "number", "description": "Work it would lose."},
                    "preemptible": {"type": "boolean", "description": "spec.preemptible."},
                },
            ),
            MAX_PODS_PER_JOB,
        ),
        "evictProof": string("Solver status of that choice (OPTIMAL: proven fewest).", 64),
        "alternatives": array(
            "Changes to the job that fit now without evicting anything.",
            string("One change, e.g. 'with 2 workers instead of 4'.", 256),
            16,
        ),
        "freeAt": string("When running jobs' estimates free enough GPUs.", 64, format="date-time"),
    },
)


MAX_TOPOLOGY_LEVELS = 8  # gpualloc.k8s.convert.MAX_TOPOLOGY_LEVELS


def _level(description: str) -> Schema:
    return string(description, LABEL_KEY_MAX, pattern=LABEL_KEY)


JOB_TOPOLOGY = obj(
    "Where the job's pods may go in the cluster's topology (AllocationPolicy "
    "spec.topology.levels); a level the policy does not list makes the job Invalid.",
    {
        "required": _level(
            "A topology level (node label key), e.g. topology.kubernetes.io/rack: every worker "
            "or replica inside one domain of it (one rack), or the job waits."
        ),
        "preferred": _level(
            "A topology level (node label key): as few domains of it as possible, without "
            "ever placing fewer GPUs for it."
        ),
    },
)

QUEUE_NAME = string("A GPUQueue name (a DNS-1123 label).", 63, pattern=DNS_LABEL)

COMMON_SPEC = {
    "priority": integer(
        "Higher always wins over lower; jobs of equal priority: older first. With GPUQueues, "
        "priority orders jobs inside a queue and may not exceed the queue's maxPriority.",
        INT32_MIN,
        INT32_MAX,
        default=0,
    ),
    "queue": {
        **QUEUE_NAME,
        "description": "The GPUQueue the job runs in (it must list the job's namespace). "
        "Default: the one queue that lists the namespace, else AllocationPolicy "
        "spec.defaultQueue.",
    },
    "gpu": GPU,
    "topology": JOB_TOPOLOGY,
    "movable": boolean(
        "The plan may move its running pods to other nodes (evict and re-place them in the "
        "same plan) so a waiting job fits: a training job that checkpoints, or inference.",
        default=False,
    ),
    "checkpoint": obj(
        "How often the job checkpoints: a move loses the work since the last checkpoint.",
        {"intervalSeconds": integer("Seconds between checkpoints.", 1, 7 * 86400)},
    ),
    "model": MODEL,
    "template": TEMPLATE,
    "preemptionGracePeriodSeconds": integer(
        "Seconds a preempted pod gets to checkpoint before it is killed; overrides the "
        "AllocationPolicy's preemption.gracePeriodSeconds.",
        0,
        3600,
    ),
}

TRAINING_SPEC = obj(
    "A gang of identical multi-GPU workers, placed all or nothing.",
    {
        **COMMON_SPEC,
        "workers": integer("Worker pods in the gang. Sized from model when omitted.", 1, MAX_COUNT),
        "minWorkers": integer(
            "Elastic gangs run with minWorkers..workers; defaults to workers.", 1, MAX_COUNT
        ),
        "gpusPerWorker": integer(
            "GPUs per worker, all on one node (a tensor-parallel group). Sized from model "
            "when omitted.",
            1,
            MAX_GPUS_PER_POD,
        ),
        "preemptible": boolean(
            "May be evicted (the whole gang) for higher priority.", default=False
        ),
        "estimatedGPUHours": number("Expected GPU hours; used for completion estimates.", 0, 1e8),
        "failurePolicy": obj(
            "What happens when a worker fails.",
            {
                "maxRestarts": integer(
                    "The whole gang is restarted up to this many times, then the job is Failed.",
                    0,
                    100,
                    default=0,
                )
            },
            default={},
        ),
    },
    **validations(
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
    ),
)

INFERENCE_SPEC = obj(
    "Replicas of a model server; replicas are placed independently.",
    {
        **COMMON_SPEC,
        "replicas": integer(
            "Desired replicas; with autoscaling gpualloc picks within minReplicas..maxReplicas.",
            0,
            MAX_COUNT,
            default=1,
        ),
        "minReplicas": integer("Fewest replicas worth running.", 0, MAX_COUNT, default=1),
        "maxReplicas": integer("Most replicas autoscaling may ask for.", 1, MAX_COUNT),
        "gpusPerReplica": integer(
            "GPUs per replica, on one node. Sized from model when omitted.",
            1,
            MAX_GPUS_PER_POD,
        ),
        "autoscaling": obj(
            "Scale replicas by demand measured in Prometheus.",
            {
                "query": string(
                    "PromQL giving the current demand, e.g. requests per second.", 4096
                ),
                "targetPerReplica": {
                    "type": "number",
                    "exclusiveMinimum": True,
                    "minimum": 0,
                    "maximum": 1e12,
                    "description": "Demand one replica serves.",
                },
            },
            required=["query", "targetPerReplica"],
        ),
        "preemptible": boolean("May be evicted for higher priority.", default=False),
    },
    **validations(
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
    ),
)


def _allow(what: str) -> Schema:
    return boolean(
        f"Let a job's pod template {what}; when false such a job is reported Invalid.",
        default=False,
    )


POLICY_SPEC = obj(
    "Cluster-wide allocation settings; the AllocationPolicy named `default` applies.",
    {
        "solver": obj(
            "CP-SAT solver limits.",
            {
                "timeLimitSeconds": number("Time limit per planning round.", 0.1, 600, default=10),
                "relativeGap": number(
                    "Stop when within this relative gap of the bound.", 0, 1, default=0
                ),
                "workers": integer("CP-SAT search workers (threads).", 1, 64, default=2),
            },
            default={},
        ),
        "preemption": obj(
            "Evicting lower-priority preemptible gangs.",
            {
                "enabled": boolean("Allow evictions at all.", default=True),
                "maxEvictionsPerRound": integer(
                    "At most this many jobs evicted per round.", 0, 10000
                ),
                "gracePeriodSeconds": integer(
                    "Seconds a preempted pod gets to checkpoint before it is killed (a job's "
                    "spec.preemptionGracePeriodSeconds overrides it).",
                    0,
                    3600,
                    default=30,
                ),
            },
            default={},
        ),
        "weights": obj(
            "Relative weights inside the lower objective levels.",
            {
                "fragmentation": integer("Weight of keeping whole nodes free.", 0, 1000, default=1),
                "throughput": integer(
                    "Weight of faster products for higher priority.", 0, 1000, default=1
                ),
            },
            default={},
        ),
        "throughput": label_map(
            "Relative speed per GPU product (1.0 = baseline), e.g. NVIDIA-H100-80GB-HBM3: 3.0.",
            256,
            number("Speed relative to the baseline.", 0, 1000),
        ),
        "limits": obj(
            "Bounds on what one job may cost the planner.",
            {
                "maxPodsPerJob": integer(
                    "Sizing never produces more pods (workers or replicas) for one job.",
                    1,
                    MAX_PODS_PER_JOB,
                    default=512,
                )
            },
            default={},
        ),
        "security": obj(
            "Pod template settings a job may use; creating a job must not grant more than "
            "creating the pod would.",
            {
                "allowServiceAccountName": _allow("set serviceAccountName"),
                "allowPrivileged": _allow("run privileged containers"),
                "allowHostPath": _allow("mount hostPath volumes"),
                "allowHostNetwork": _allow("set hostNetwork"),
                "allowHostPID": _allow("set hostPID"),
                "allowHostIPC": _allow("set hostIPC"),
            },
            default={},
        ),
        "topology": obj(
            "The cluster's network topology, from node labels.",
            {
                "levels": array(
                    "Node label keys of the topology levels, widest first, e.g. "
                    "topology.kubernetes.io/zone, network.example.com/block, "
                    "topology.kubernetes.io/rack, nvidia.com/gpu.clique. A domain of a level "
                    "is the nodes with the same values of it and of every wider level.",
                    _level("A node label key."),
                    MAX_TOPOLOGY_LEVELS,
                    **{"x-kubernetes-list-type": "set"},
                )
            },
        ),
        "defragmentation": obj(
            "Moves of movable jobs (spec.movable) that let a waiting job run: only for a "
            "strictly better plan, losing the least work.",
            {
                "enabled": boolean("Plan moves at all.", default=True),
                "maxMovesPerRound": integer("Most pods moved in one round.", 0, 1000, default=16),
                "minRuntimeSeconds": integer(
                    "A job is moved only after running this long.", 0, 7 * 86400, default=300
                ),
                "cooldownSeconds": integer(
                    "A job is not moved again within this long.", 0, 7 * 86400, default=1800
                ),
            },
        ),
        "unboundTimeoutSeconds": integer(
            "A placed pod still unbound after this long is reported and its gang re-planned.",
            10,
            86400,
            default=120,
        ),
        "defaultQueue": {
            **QUEUE_NAME,
            "description": "The GPUQueue for jobs of namespaces that no queue lists; unset, "
            "such jobs wait.",
        },
        "debounceSeconds": number(
            "Changes within this window are planned together.", 0, 60, default=1
        ),
        "resyncSeconds": number("Periodic safety re-plan interval.", 1, 86400, default=60),
        "nodeSelector": label_map(
            "Only nodes with all these labels are managed; empty = all GPU nodes.",
            64,
            label_value("Required label value."),
        ),
        "prometheus": obj(
            "Where to read GPU health and inference demand.",
            {
                "url": string(
                    "Prometheus base URL, e.g. http://prometheus:9090.",
                    2048,
                    pattern="^(https?://.+)?$",
                ),
                "intervalSeconds": number("Polling interval.", 1, 3600, default=15),
                "unhealthyGPUQuery": string(
                    "PromQL returning one series per unhealthy GPU (labels Hostname, gpu).",
                    4096,
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
        "conditions": array(
            "PrometheusReachable and similar conditions.",
            CONDITION,
            32,
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        ),
        "lastStatus": string(
            "Solver status of the last planning round (OPTIMAL, FEASIBLE, ...).", 64
        ),
    },
)

# Checked on create only (names are immutable): an object created before this rule existed
# stays updatable, so its status, finalizers and deletion keep working.
NAME_RULE = rule(
    f"oldSelf.hasValue() || (size(self.metadata.name) <= {JOB_NAME_MAX} && "
    f"self.metadata.name.matches({cel_string(JOB_NAME)}))",
    f"metadata.name must be a DNS-1035 label of at most {JOB_NAME_MAX} characters (lower case "
    "letters, digits and '-', starting with a letter): it names the job's Service and pod "
    "hostnames",
    ".metadata.name",
    optionalOldSelf=True,
    reason="FieldValueInvalid",
)


MAX_QUEUE_GPUS = 10**6


def _gpus(description: str) -> Schema:
    return integer(description, 0, MAX_QUEUE_GPUS)


QUOTA = obj(
    "GPUs of one product for the queue.",
    {
        "product": string(
            "A GPU product (node label nvidia.com/gpu.product), or * for every product the "
            "queue lists no entry for.",
            63,
            pattern="^([*]|(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]))$",
        ),
        "nominal": _gpus(
            "GPUs guaranteed to the queue whenever it has the demand; unused, they are lent "
            "to other queues and reclaimed when needed."
        ),
        "borrowingLimit": _gpus(
            "Most GPUs the queue may use beyond nominal (idle GPUs of other queues); unset: no "
            "limit."
        ),
        "lendingLimit": _gpus(
            "Most of the queue's unused nominal GPUs other queues may use; the rest stays idle "
            "for it. Unset: all of it."
        ),
    },
    required=["product", "nominal"],
    **validations(
        rule(
            "!has(self.lendingLimit) || self.lendingLimit <= self.nominal",
            "lendingLimit must be <= nominal",
            ".lendingLimit",
        )
    ),
)

QUEUE_SPEC = obj(
    "A queue of GPU work: the namespaces it serves, its guaranteed quota per GPU product, "
    "how much it may borrow and lend, its weight in sharing borrowable GPUs, the highest "
    "priority its jobs may have.",
    {
        "namespaces": array(
            "Namespaces whose jobs may use this queue.",
            string("A namespace.", 63, pattern=DNS_LABEL),
            1024,
            **{"x-kubernetes-list-type": "set"},
        ),
        "parent": {
            **QUEUE_NAME,
            "description": "A parent GPUQueue: children share its quota (a parent without "
            "namespaces of its own is a cohort).",
        },
        "quota": array(
            "Quota per GPU product.",
            QUOTA,
            64,
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["product"]},
        ),
        "weight": number(
            "Share of borrowable GPUs under contention: borrowed GPUs / weight are levelled "
            "(weighted max-min). 0: only what no other queue wants.",
            0,
            1000,
            default=1,
        ),
        "maxPriority": integer(
            "Jobs in this queue (and its children) may not have a higher spec.priority; such "
            "jobs are refused (Invalid).",
            INT32_MIN,
            INT32_MAX,
        ),
        "preemption": obj(
            "What the queue's jobs may evict.",
            {
                "reclaimWithinParent": boolean(
                    "Evict other queues' preemptible borrowing work to get this queue's "
                    "nominal quota back.",
                    default=True,
                ),
                "withinQueue": string(
                    "LowerPriority: a job may evict lower-priority preemptible jobs of the same "
                    "queue; Never: it waits.",
                    16,
                    enum=["LowerPriority", "Never"],
                    default="LowerPriority",
                ),
            },
            default={},
        ),
    },
)


def _per_product(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "maxProperties": 64,
        "additionalProperties": integer("GPUs.", 0),
    }


QUEUE_STATUS = obj(
    "What the last plan gave the queue (and its children), written by gpualloc.",
    {
        "usage": _per_product("GPUs held by the queue's jobs, per GPU product."),
        "nominal": _per_product("Nominal GPUs per quota entry (product or *)."),
        "borrowed": _per_product("GPUs held beyond nominal, per quota entry."),
        "gpus": string("GPUs in use / nominal GPUs, e.g. 12/16.", 64),
        "borrowedGPUs": integer("GPUs held beyond nominal, all entries.", 0),
        "pendingJobs": integer("Jobs waiting.", 0),
        "admittedJobs": integer("Jobs placed or running.", 0),
        "fairShare": {
            "type": "number",
            "description": "Borrowed GPUs / weight, the value weighted max-min fairness levels.",
        },
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The spec generation this status reflects.",
        },
        "conditions": array(
            "Active: the queue is planned (False with the reason when it cannot be used).",
            CONDITION,
            32,
            **{"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        ),
    },
)

QUEUE_RULES = (
    rule(
        f"oldSelf.hasValue() || (size(self.metadata.name) <= 63 && "
        f"self.metadata.name.matches({cel_string(DNS_LABEL)}))",
        "metadata.name must be a DNS-1123 label (it is the queue's name in jobs' spec.queue "
        "and in metrics)",
        ".metadata.name",
        optionalOldSelf=True,
        reason="FieldValueInvalid",
    ),
    rule(
        "!has(self.spec) || !has(self.spec.parent) || self.spec.parent != self.metadata.name",
        "spec.parent cannot be the queue itself",
        ".spec.parent",
    ),
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
    root_rules: tuple[Schema, ...] = (),
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
    # Only metadata.name may be described; its maxLength bounds the root rule's CEL cost.
    metadata: Schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 253}},
    }
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
                                "apiVersion": string("API version of this object.", 253),
                                "kind": string("Kind of this object.", 63),
                                "metadata": metadata,
                                "spec": spec,
                                "status": status,
                            },
                            required=["spec"] if scope == "Namespaced" else [],
                            **(validations(*root_rules) if root_rules else {}),
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
        job_status(training=True),
        columns("Workers", ".status.placed"),
        root_rules=(NAME_RULE,),
    ),
    "llminferencejobs.yaml": crd(
        "LLMInferenceJob",
        "llminferencejobs",
        ["lij"],
        "Namespaced",
        INFERENCE_SPEC,
        job_status(training=False),
        columns("Replicas", ".status.placed"),
        scale=True,
        root_rules=(NAME_RULE,),
    ),
    "allocationpolicies.yaml": crd(
        "AllocationPolicy",
        "allocationpolicies",
        ["ap"],
        "Cluster",
        {**POLICY_SPEC, "default": {}},
        POLICY_STATUS,
        [
            {"name": "Last Status", "type": "string", "jsonPath": ".status.lastStatus"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    ),
    "gpuqueues.yaml": crd(
        "GPUQueue",
        "gpuqueues",
        ["gq"],
        "Cluster",
        QUEUE_SPEC,
        QUEUE_STATUS,
        [
            {"name": "Parent", "type": "string", "jsonPath": ".spec.parent"},
            {"name": "Weight", "type": "number", "jsonPath": ".spec.weight"},
            {"name": "GPUs", "type": "string", "jsonPath": ".status.gpus"},
            {"name": "Borrowed", "type": "integer", "jsonPath": ".status.borrowedGPUs"},
            {"name": "Pending", "type": "integer", "jsonPath": ".status.pendingJobs"},
            {"name": "Admitted", "type": "integer", "jsonPath": ".status.admittedJobs"},
            {"name": "Fair Share", "type": "number", "jsonPath": ".status.fairShare"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        root_rules=QUEUE_RULES,
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
