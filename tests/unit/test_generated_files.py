"""Generated files must match their generator: CRDs in crds/ and the Helm chart's copies;
the CRD schemas describe and bound every field."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_crds", REPO / "hack" / "gen_crds.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_crds_match_generator() -> None:
    for name, text in _generator().render().items():
        assert (REPO / "crds" / name).read_text() == text, f"crds/{name}: run `make generate`"


def test_chart_crds_are_byte_identical_to_crds() -> None:
    ours = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (REPO / "helm" / "gpualloc" / "crds").glob("*.yaml"))
    assert ours == chart
    for name in ours:
        assert (REPO / "crds" / name).read_bytes() == (
            REPO / "helm" / "gpualloc" / "crds" / name
        ).read_bytes(), name


def _nodes(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below `schema` (properties, array items, map values) with its path."""
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _schemas() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in _generator().CRDS.items():
        for version in doc["spec"]["versions"]:
            root = version["schema"]["openAPIV3Schema"]
            for key in ("spec", "status"):
                yield from _nodes(root["properties"][key], f"{name}:{key}")


def test_every_field_is_described_and_every_size_is_bounded() -> None:
    """Bounds let the API server price CEL rules and refuse oversized input at admission."""
    for path, node in _schemas():
        assert node.get("description"), f"{path}: no description"
        if node.get("type") == "string" or node.get("x-kubernetes-int-or-string"):
            assert "maxLength" in node or "enum" in node, f"{path}: string without maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path}: array without maxItems"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path}: map without maxProperties"


def test_every_number_gpualloc_reads_is_bounded() -> None:
    for path, node in _schemas():
        if (
            ":spec" in path
            and ".template" not in path
            and node.get("type")
            in (
                "integer",
                "number",
            )
        ):
            assert "minimum" in node and "maximum" in node, f"{path}: unbounded number"
