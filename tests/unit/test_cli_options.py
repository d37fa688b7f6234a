"""The options `gpualloc run` and `gpualloc explain` share behave the same in both."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gpualloc.cli import main


@pytest.mark.parametrize("command", [["run"], ["explain", "ltj/x"]])
def test_missing_kubeconfig_is_refused_before_anything_runs(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.yaml"
    result = CliRunner().invoke(main, [*command, "--kubeconfig", str(missing)])
    assert result.exit_code == 2
    assert "--kubeconfig" in result.output
    assert "does not exist" in result.output


@pytest.mark.parametrize("command", ["run", "explain"])
def test_kubeconfig_is_documented(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster)." in " ".join(
        result.output.split()
    )
