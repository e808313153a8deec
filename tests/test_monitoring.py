"""monitoring/: the Prometheus rules pass promtool's checks and unit tests; the dashboard's
panels fit its grid. tests/monitoring/ checks that the rule tests bite (mutations) and
that every query names exported series and returns data."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

MON = Path(__file__).resolve().parent.parent / "monitoring"
RULES = MON / "prometheus" / "tenantctl.rules.yml"
DASHBOARD = MON / "grafana" / "tenantctl-overview.json"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `make deps` installs the Debian package prometheus"
    return path


def test_rules_pass_promtool_check() -> None:
    p = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: 23 rules found" in p.stdout


def test_rules_unit_tests_pass() -> None:
    p = subprocess.run([promtool(), "test", "rules", "tenantctl.rules.test.yml"], cwd=RULES.parent,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_dashboard_panels_have_unique_ids_and_fit_the_grid() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


def test_dashboard_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], int] = {}
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"panel {p['id']} overlaps panel {taken[(x, y)]}"
                taken[(x, y)] = p["id"]
