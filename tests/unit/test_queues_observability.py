"""GPU queues where people see them: `gpualloc plan` with GPUQueue objects, the per-queue
metrics, the dashboard's queue row."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from gpualloc.cli import main
from gpualloc.metrics import exported
from gpualloc.solver import plan
from tests.unit.test_queues import CASES

pytestmark = pytest.mark.unit
DATA = Path(__file__).parent / "data"
QUEUES = [
    {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "GPUQueue",
        "metadata": {"name": "research"},
        "spec": {
            "namespaces": ["research"],
            "quota": [{"product": "NVIDIA-H100-80GB-HBM3", "nominal": 8}],
            "maxPriority": 50,
        },
    },
    {
        "apiVersion": "gpualloc.io/v1alpha1",
        "kind": "GPUQueue",
        "metadata": {"name": "prod"},
        "spec": {"namespaces": ["prod"], "quota": [{"product": "*", "nominal": 8}]},
    },
]


def _plan(tmp_path: Path, *extra: str) -> tuple[int, str]:
    queues = tmp_path / "queues.yaml"
    queues.write_text(yaml.safe_dump_all(QUEUES))
    args = ["plan", "--nodes", str(DATA / "nodes.yaml"), "--jobs", str(DATA / "jobs.yaml")]
    result = CliRunner().invoke(main, [*args, "--queues", str(queues), *extra])
    return result.exit_code, result.output


def test_plan_with_queues_json(tmp_path: Path) -> None:
    code, out = _plan(tmp_path, "-o", "json")
    assert code == 0, out
    doc = json.loads(out)
    why = {u["job"]: u["reason"] for u in doc["unscheduled"]}
    # llama-70b (priority 100) is above research's maxPriority 50
    assert "refused: spec.priority: 100 is above the maxPriority 50" in why["research/llama-70b"]
    assert set(doc["queues"]) == {"prod", "research"}
    prod = doc["queues"]["prod"]
    assert sum(prod["usage"].values()) == 4 and prod["admitted"] == 1  # chat, within nominal
    assert doc["queues"]["research"]["nominal"] == {"NVIDIA-H100-80GB-HBM3": 8}


def test_plan_with_queues_table(tmp_path: Path) -> None:
    code, out = _plan(tmp_path)
    assert code == 0, out
    assert "queue research:" in out and "queue prod:" in out and "fair share" in out
    assert "PENDING: refused: spec.priority" in out


def test_plan_reads_queues_from_the_jobs_file(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text((DATA / "jobs.yaml").read_text() + "---\n" + yaml.safe_dump_all(QUEUES))
    args = ["plan", "--nodes", str(DATA / "nodes.yaml"), "--jobs", str(jobs), "-o", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)["queues"]) == {"prod", "research"}


def _scrape(p: object) -> str:
    registry = CollectorRegistry()
    for gauge in exported.QUEUE_GAUGES:
        registry.register(gauge)
    capacity = {"NVIDIA-H100-80GB-HBM3": 24}
    exported.record_queues(p, capacity, {"NVIDIA-H100-80GB-HBM3": 24})  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_queue_metrics() -> None:
    text = _scrape(plan(CASES[2].snapshot))  # a borrows 16 beyond its nominal 8
    h100 = 'product="NVIDIA-H100-80GB-HBM3"'
    assert f'gpualloc_queue_nominal_gpus{{{h100},queue="a"}} 8.0' in text
    assert f'gpualloc_queue_allocated_gpus{{{h100},queue="a"}} 24.0' in text
    assert f'gpualloc_queue_borrowed_gpus{{{h100},queue="a"}} 16.0' in text
    assert 'gpualloc_queue_fair_share{queue="a"} 16.0' in text
    assert 'gpualloc_queue_pending_jobs{queue="b"} 0.0' in text


def test_without_queues_the_cluster_is_the_one_queue() -> None:
    p = SimpleNamespace(queues={}, unscheduled=[object()])
    text = _scrape(p)
    assert (
        'gpualloc_queue_nominal_gpus{product="NVIDIA-H100-80GB-HBM3",queue="(cluster)"} 24.0'
        in text
    )
    assert 'gpualloc_queue_pending_jobs{queue="(cluster)"} 1.0' in text


def test_dashboard_has_a_queue_row() -> None:
    dashboard = json.loads(
        (Path(__file__).parents[2] / "helm/gpualloc/files/dashboard.json").read_text()
    )
    titles = [p["title"] for p in dashboard["panels"]]
    row = titles.index("GPU queues")
    assert titles[row + 1 : row + 5] == [
        "GPUs in use and nominal per queue",
        "Borrowed GPUs per queue",
        "Pending jobs per queue",
        "Fair share per queue",
    ]
    exprs = [t["expr"] for p in dashboard["panels"][row + 1 : row + 5] for t in p["targets"]]
    assert all("by (queue)" in e for e in exprs)
