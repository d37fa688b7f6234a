"""`gpualloc plan` keeps its contract (DESIGN.md section 6) and names bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpualloc.cli import main

DATA = Path(__file__).parent / "data"
# the demo cluster's nodes, the sample jobs, and what already runs there
SAMPLE = (
    "--nodes",
    str(DATA / "nodes.yaml"),
    "--jobs",
    str(DATA / "jobs.yaml"),
    "--pods",
    str(DATA / "pods.yaml"),
)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["plan", *args])
    return result.exit_code, result.output


def test_json_contract() -> None:
    code, out = _run(
        *SAMPLE,
        "-o",
        "json",
    )
    assert code == 0, out
    doc = json.loads(out)
    assert set(doc) == {
        "status",
        "objective",
        "bound",
        "solve_seconds",
        "placements",
        "evictions",
        "unscheduled",
    }
    assert doc["status"] == "OPTIMAL"
    for p in doc["placements"]:
        assert set(p) == {"job", "kind", "replica", "node", "gpus"}
    placed = {p["job"] for p in doc["placements"]}
    waiting = {u["job"] for u in doc["unscheduled"]}
    assert placed | waiting == {"prod/chat", "research/llama-70b", "research/finetune"}
    assert not placed & waiting
    # 70B bf16 training needs 3 x 8 H100s; only 2 exist
    reason = next(u["reason"] for u in doc["unscheduled"] if u["job"] == "research/llama-70b")
    assert "needs 3 workers x 8 GPUs of NVIDIA-H100-80GB-HBM3" in reason
    # the notebook's 4 GPUs on a100-0 are used; the finished pod's are not
    assert {p["node"] for p in doc["placements"] if p["job"] == "research/finetune"} <= {
        "h100-0",
        "h100-1",
    }


def test_table_output_for_people() -> None:
    code, out = _run("--nodes", str(DATA / "nodes.yaml"), "--jobs", str(DATA / "jobs.yaml"))
    assert code == 0
    assert "prod/chat" in out and "PENDING: needs 3 workers" in out


def test_missing_file_named(tmp_path: Path) -> None:
    code, out = _run("--nodes", str(tmp_path / "nope.yaml"), "--jobs", str(DATA / "jobs.yaml"))
    assert code != 0 and "nope.yaml" in out and "cannot read" in out


def test_malformed_yaml_named(tmp_path: Path) -> None:
    bad = tmp_path / "jobs.yaml"
    bad.write_text("kind: [unclosed\n")
    code, out = _run("--nodes", str(DATA / "nodes.yaml"), "--jobs", str(bad))
    assert code != 0 and "jobs.yaml: malformed YAML" in out


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{workers: 2}", "spec.gpusPerWorker: is required when spec.model is not given"),
        ("{workers: -2, gpusPerWorker: 8}", "spec.workers: must be >= 1 (got -2)"),
        ("{workers: 2, gpusPerWorker: 0}", "spec.gpusPerWorker: must be >= 1"),
        ("{workers: 2, minWorkers: 3, gpusPerWorker: 8}", "spec.minWorkers: must be <= workers"),
        ("{model: {parameters: 7B, precision: fp3}}", "spec.model: model.precision must be"),
    ],
)
def test_bad_job_names_file_object_and_field(tmp_path: Path, spec: str, field: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: gpualloc.io/v1alpha1\nkind: LLMTrainingJob\n"
        f"metadata: {{name: x, namespace: team}}\nspec: {spec}\n"
    )
    code, out = _run("--nodes", str(DATA / "nodes.yaml"), "--jobs", str(bad))
    assert code != 0
    assert f"bad.yaml: LLMTrainingJob team/x: {field}" in out


def test_help_explains() -> None:
    result = CliRunner().invoke(main, ["plan", "--help"])
    assert "kubectl get nodes -o yaml" in result.output and "--time-limit" in result.output


def test_inference_scaled_to_zero_places_nothing(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "apiVersion: gpualloc.io/v1alpha1\nkind: LLMInferenceJob\n"
        "metadata: {name: idle, namespace: prod}\n"
        "spec: {replicas: 0, minReplicas: 1, maxReplicas: 4, gpusPerReplica: 2}\n"
    )
    code, out = _run("--nodes", str(DATA / "nodes.yaml"), "--jobs", str(jobs), "-o", "json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["placements"] == [] and doc["unscheduled"] == []


def test_table_says_what_would_unblock_a_waiting_job() -> None:
    # llama-70b needs 3 x 8 H100 and 2 exist: it would fit with 2 workers
    code, out = _run(
        *SAMPLE,
    )
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("unblock research/llama-70b:"))
    assert "with 2 workers instead of 3" in line
    code, out = _run(
        "--nodes",
        str(DATA / "nodes.yaml"),
        "--jobs",
        str(DATA / "jobs.yaml"),
        "--unblock-budget",
        "0",
    )
    assert code == 0 and "unblock " not in out
