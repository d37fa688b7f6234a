"""promtool (installed with Prometheus by `make deps`) checks the PromQL we ship: the alert rules
(syntax and `promtool test rules` scenarios) and every query of the Grafana dashboard."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.cluster.operator_harness import REPO

CHART = REPO / "helm" / "gpualloc"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: run `make deps`"
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=REPO)


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    check = promtool("check", "rules", str(CHART / "files" / "alerts.yaml"))
    assert check.returncode == 0, check.stdout + check.stderr
    tested = promtool("test", "rules", "tests/promtool/alerts_test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"]}
    tests = yaml.safe_load((REPO / "tests" / "promtool" / "alerts_test.yaml").read_text())
    covered = {
        t["alertname"]
        for case in tests["tests"]
        for t in case["alert_rule_test"]
        if t.get("exp_alerts")
    }
    assert names == covered


def test_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    rules = [
        {
            "record": f"gpualloc:dashboard_query_{i}",
            "expr": t["expr"].replace("$__rate_interval", "1m"),
        }
        for i, t in enumerate(t for p in dashboard["panels"] for t in p.get("targets") or [])
    ]
    assert len(rules) >= 20
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout
