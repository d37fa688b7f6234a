"""OpenAPI schema builders for hack/gen_crds.py, and the typed pod template gpualloc reads.

Every string has a maxLength, every array maxItems and every map maxProperties: the API server
needs them to bound the cost of CEL rules, and they refuse oversized hostile input at admission.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# A label value (also a taint or toleration value): <= 63 characters, alphanumeric at both ends.
LABEL_VALUE = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
# A label key: an optional DNS-subdomain prefix and '/', then a name of <= 63 characters.
LABEL_KEY = (
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_KEY_MAX = 317  # 253 (prefix) + 1 + 63 (name)
# A Kubernetes resource quantity (k8s.io/apimachinery resource.Quantity), without a sign:
# negative requests are refused by the pod API anyway.
QUANTITY = (
    "^\\+?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))"
    "(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$"
)
DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def cel_string(pattern: str) -> str:
    """A regex as a single-quoted CEL string literal."""
    return "'" + pattern.replace("\\", "\\\\") + "'"


def obj(description: str, properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "description": description, "properties": properties, **extra}


def open_obj(description: str, properties: dict[str, Schema], **extra: Any) -> Schema:
    """An object whose listed fields are typed and any other field is kept as given."""
    return obj(description, properties, **{"x-kubernetes-preserve-unknown-fields": True}, **extra)


def integer(
    description: str, minimum: int | None = None, maximum: int | None = None, **extra: Any
) -> Schema:
    schema: Schema = {"type": "integer", "format": "int32", "description": description, **extra}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def number(description: str, minimum: float, maximum: float, **extra: Any) -> Schema:
    return {
        "type": "number",
        "minimum": minimum,
        "maximum": maximum,
        "description": description,
        **extra,
    }


def boolean(description: str, **extra: Any) -> Schema:
    return {"type": "boolean", "description": description, **extra}


def string(description: str, max_length: int, **extra: Any) -> Schema:
    return {"type": "string", "description": description, "maxLength": max_length, **extra}


def array(description: str, items: Schema, max_items: int, **extra: Any) -> Schema:
    return {
        "type": "array",
        "description": description,
        "items": items,
        "maxItems": max_items,
        **extra,
    }


def rule(expr: str, message: str, field_path: str | None = None, **extra: Any) -> Schema:
    r: Schema = {"rule": expr, "message": message}
    if field_path:
        r["fieldPath"] = field_path
    return {**r, **extra}


def validations(*rules: Schema) -> Schema:
    return {"x-kubernetes-validations": list(rules)}


def label_map(description: str, max_properties: int, values: Schema) -> Schema:
    """A map keyed by label keys (labels, nodeSelector, resource names)."""
    return {
        "type": "object",
        "description": description,
        "maxProperties": max_properties,
        "additionalProperties": values,
        **validations(
            rule(
                f"self.all(k, size(k) <= {LABEL_KEY_MAX} && k.matches({cel_string(LABEL_KEY)}))",
                "keys must be label keys ([prefix/]name, name <= 63 characters)",
            )
        ),
    }


def label_value(description: str) -> Schema:
    return string(description, 63, pattern=LABEL_VALUE)


def quantity(description: str) -> Schema:
    return {
        "x-kubernetes-int-or-string": True,
        "description": description,
        "minimum": 0,
        "maxLength": 64,
        "pattern": QUANTITY,
    }


# -- the pod template ---------------------------------------------------------------------
# Only the fields gpualloc reads (or that the AllocationPolicy's security settings judge) are
# typed; everything else (image, command, env values, volumes' sources, probes, ...) is kept as
# given and checked by the pod API when gpualloc creates the pods.

RESOURCES = open_obj(
    "Compute resources; gpualloc sets the nvidia.com/gpu request and limit of the first "
    "container and plans CPU and memory from the requests.",
    {
        "requests": label_map(
            "Requested quantities by resource name, e.g. cpu: 8, memory: 64Gi.",
            32,
            quantity("A Kubernetes quantity, e.g. 500m, 8, 64Gi."),
        ),
        "limits": label_map(
            "Limits by resource name (a limit without a request counts as the request).",
            32,
            quantity("A Kubernetes quantity, e.g. 500m, 8, 64Gi."),
        ),
    },
)

ENV_VAR = open_obj(
    "An environment variable (value or valueFrom as in a Pod).",
    {
        "name": string("Variable name.", 1024),
        "value": string("Literal value.", 131072),
    },
    required=["name"],
)

CONTAINER = open_obj(
    "A container, as in a Pod.",
    {
        "name": string("Container name (a DNS label).", 63, pattern=DNS_LABEL),
        "image": string("Container image.", 4096),
        "resources": RESOURCES,
        "env": array(
            "Environment variables; gpualloc sets WORLD_SIZE, RANK, MASTER_ADDR and "
            "MASTER_PORT for training workers.",
            ENV_VAR,
            1024,
        ),
        "securityContext": open_obj(
            "Container security settings.",
            {
                "privileged": boolean(
                    "Privileged container; refused unless the AllocationPolicy's "
                    "security.allowPrivileged is true."
                )
            },
        ),
    },
    required=["name", "image"],
)

TOLERATION = obj(
    "A toleration, as in a Pod.",
    {
        "key": string(
            "Taint key to tolerate; empty with operator Exists tolerates every taint.",
            LABEL_KEY_MAX,
        ),
        "operator": string("Exists or Equal (empty means Equal).", 8, enum=["", "Exists", "Equal"]),
        "value": string("Taint value to match (operator Equal).", 63, pattern=LABEL_VALUE),
        "effect": string(
            "Taint effect to tolerate; empty tolerates all effects.",
            16,
            enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"],
        ),
        "tolerationSeconds": {
            "type": "integer",
            "format": "int64",
            "description": "How long a NoExecute taint is tolerated before eviction.",
        },
    },
    **validations(
        rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) "
            "|| self.value == ''",
            "value must be empty when operator is Exists",
            ".value",
        ),
        rule(
            "(has(self.key) && self.key != '') "
            "|| (has(self.operator) && self.operator == 'Exists')",
            "an empty key needs operator Exists",
            ".operator",
        ),
    ),
)

SELECTOR_REQUIREMENT = obj(
    "A node selector requirement, as in a Pod's node affinity.",
    {
        "key": string("Label key (matchExpressions) or field name (matchFields).", LABEL_KEY_MAX),
        "operator": string(
            "How the key relates to the values.",
            16,
            enum=["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"],
        ),
        "values": array(
            "Values (In, NotIn: one or more; Gt, Lt: one integer; Exists, DoesNotExist: none).",
            string("A label value or node name.", 253),
            256,
        ),
    },
    required=["key", "operator"],
)

NODE_SELECTOR_TERM = obj(
    "Requirements that must all hold (the terms of the list are ORed).",
    {
        "matchExpressions": array("Requirements on node labels.", SELECTOR_REQUIREMENT, 64),
        "matchFields": array(
            "Requirements on node fields (metadata.name).", SELECTOR_REQUIREMENT, 64
        ),
    },
)

AFFINITY = open_obj(
    "Scheduling affinity; gpualloc plans with the required node affinity and keeps the rest.",
    {
        "nodeAffinity": open_obj(
            "Node affinity.",
            {
                "requiredDuringSchedulingIgnoredDuringExecution": obj(
                    "Nodes the pods may run on; gpualloc only places pods on such nodes and "
                    "adds its own pin to every term.",
                    {
                        "nodeSelectorTerms": array(
                            "Terms, ORed.", NODE_SELECTOR_TERM, 64, minItems=1
                        ),
                    },
                    required=["nodeSelectorTerms"],
                )
            },
        )
    },
)

VOLUME = open_obj(
    "A volume, as in a Pod.",
    {
        "name": string("Volume name (a DNS label).", 63),
        "hostPath": open_obj(
            "A directory of the node; refused unless the AllocationPolicy's "
            "security.allowHostPath is true.",
            {"path": string("Path on the node.", 4096)},
        ),
    },
    required=["name"],
)

POD_SPEC = open_obj(
    "The pod spec; the fields below are typed because gpualloc reads them, any other Pod "
    "field is kept as given.",
    {
        "containers": array("Containers (default: one pause container).", CONTAINER, 64),
        "initContainers": array(
            "Init containers (their largest request counts, as kube-scheduler does).",
            CONTAINER,
            64,
        ),
        "tolerations": array("Taints the pods tolerate.", TOLERATION, 64),
        "nodeSelector": label_map(
            "Node labels the pods require.", 64, label_value("Required label value.")
        ),
        "affinity": AFFINITY,
        "schedulingGates": array(
            "Scheduling gates; gpualloc adds gpualloc.io/placement and removes it when it "
            "places the pod.",
            obj("A scheduling gate.", {"name": string("Gate name.", 317)}, required=["name"]),
            16,
        ),
        "restartPolicy": string(
            "Default: Never for training workers, Always for inference replicas.",
            16,
            enum=["Always", "OnFailure", "Never"],
        ),
        "serviceAccountName": string(
            "ServiceAccount the pods run as; refused unless the AllocationPolicy's "
            "security.allowServiceAccountName is true.",
            253,
        ),
        "serviceAccount": string(
            "Deprecated alias of serviceAccountName, judged the same way.", 253
        ),
        "nodeName": string("Must not be set: gpualloc chooses the node of each pod.", 253),
        "hostNetwork": boolean(
            "Use the node's network namespace; refused unless security.allowHostNetwork."
        ),
        "hostPID": boolean("Use the node's PID namespace; refused unless security.allowHostPID."),
        "hostIPC": boolean("Use the node's IPC namespace; refused unless security.allowHostIPC."),
        "volumes": array("Volumes.", VOLUME, 256),
    },
    **validations(
        rule(
            "!has(self.nodeName)",
            "nodeName must not be set: gpualloc places the pods (use nodeSelector or node "
            "affinity to restrict the nodes)",
            ".nodeName",
        )
    ),
)

TEMPLATE = open_obj(
    "Pod template for each worker or replica (a PodTemplateSpec: metadata and spec). "
    "gpualloc adds the GPU request, labels, the scheduling gate and node affinity.",
    {
        "metadata": open_obj(
            "Labels and annotations copied to every pod.",
            {
                "labels": label_map("Pod labels.", 64, label_value("Label value.")),
                "annotations": {
                    "type": "object",
                    "description": "Pod annotations.",
                    "maxProperties": 128,
                    "additionalProperties": string("Annotation value.", 65536),
                },
            },
        ),
        "spec": POD_SPEC,
    },
)
