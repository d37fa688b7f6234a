"""Read Kubernetes YAML files (`kubectl get ... -o yaml`, `kind: List`, multi-document)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class InputError(Exception):
    """Bad input file; the message names the file and, when known, the object and field."""


def load_objects(path: str | Path) -> list[dict[str, Any]]:
    """Every object in the file, with `kind: List` items flattened."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        raise InputError(f"{path}: malformed YAML: {err}") from None
    objects: list[dict[str, Any]] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise InputError(f"{path}: document {index + 1}: expected a Kubernetes object")
        if doc.get("kind") == "List" or (
            str(doc.get("kind", "")).endswith("List") and "items" in doc
        ):
            for item in doc.get("items") or []:
                if not isinstance(item, dict):
                    raise InputError(f"{path}: document {index + 1}: items must be objects")
                objects.append(item)
        else:
            objects.append(doc)
    return objects
