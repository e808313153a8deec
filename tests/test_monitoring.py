"""monitoring/: the Prometheus rules pass promtool's checks and unit tests, and every
metric the rules and the Grafana dashboard query is one tenantctl exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from controller import metrics

MON = Path(__file__).resolve().parent.parent / "monitoring"
RULES = MON / "prometheus" / "tenantctl.rules.yml"
DASHBOARD = MON / "grafana" / "tenantctl-overview.json"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `make setup` installs the prometheus package"
    return path


def test_rules_pass_promtool_check() -> None:
    p = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_rules_unit_tests_pass() -> None:
    p = subprocess.run([promtool(), "test", "rules", "tenantctl.rules.test.yml"], cwd=RULES.parent,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def exported() -> set[str]:
    m = metrics.Metrics(version="test")
    m.set_subscription_summary([{"sync": "synced", "state": "active", "stateReason": None,
                                 "conflicts": [{"property": "hosting.php.version"}], "concerns": {"web": "failed"}}])
    m.observe_reconcile("success", 0.1)
    m.set_dns({("dns-1", "primary"): 3}, {"dns-1": 1.0})
    names = set()
    for line in m.exposition().decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def queried(expr: str) -> set[str]:
    return set(re.findall(r"\btenantctl_[a-z_]+\b", expr))


def test_every_queried_metric_is_exported() -> None:
    names = exported()
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 10
    for expr in exprs:
        for name in queried(expr):
            assert name in names or name in recorded, f"{name} is not exported (in {expr!r})"


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
