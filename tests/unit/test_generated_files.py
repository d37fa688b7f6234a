"""Generated files must match their generator: CRDs in crds/ and the Helm chart's copies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
