"""The operator process does not load pandas (OR-Tools imports it; gpualloc never uses it),
and planning still works with the stand-in: ~30 MB less resident memory per replica."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

_SCRIPT = """
import sys
import click
from gpualloc.cli import main
main.get_command(click.Context(main), "run")  # what `gpualloc run` loads before its body
assert "pandas" not in sys.modules, "the CLI loaded pandas before the operator started"
from gpualloc.cli_run import _without_pandas
_without_pandas()
import gpualloc.controller.handlers
from gpualloc.model import Job, JobKind, Node, Snapshot
from gpualloc.solver.planner import plan
nodes = (Node("n1", "H100", 8, 81920, 64000, 512000),)
jobs = (Job("a/sft", JobKind.TRAINING, 0, 2, 2, 4),)
result = plan(Snapshot(nodes=nodes, jobs=jobs, pods=()))
print(len(result.placements), hasattr(sys.modules["pandas"], "__version__"))
"""


def test_operator_plans_without_pandas() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert out == ["2", "False"]  # both workers placed; pandas is the stand-in, not pandas


def test_stand_in_refuses_real_use() -> None:
    code = (
        "from gpualloc.cli_run import _without_pandas; _without_pandas()\n"
        "import pandas; pandas.DataFrame"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "pandas is not loaded in the gpualloc operator" in run.stderr
