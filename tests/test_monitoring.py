"""monitoring/: the Prometheus rules pass promtool's checks and unit tests; the Grafana
dashboards are exactly what ``tenantctl dashboards`` generates (controller/dashboards/)
and their panels fit the grid. tests/monitoring/ checks that the rule tests bite
(mutations) and that every query names exported series and returns data;
tests/embedded/test_dashboards_live.py runs every panel query on a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.testing

from controller.cli import dashboards as cli_dashboards
from controller.dashboards import boards

MON = Path(__file__).resolve().parent.parent / "monitoring"
RULES = MON / "prometheus" / "tenantctl.rules.yml"
GRAFANA = MON / "grafana"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `make deps` installs the Debian package prometheus"
    return path


def test_rules_pass_promtool_check() -> None:
    p = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: 38 rules found" in p.stdout


def test_rules_unit_tests_pass() -> None:
    p = subprocess.run([promtool(), "test", "rules", "tenantctl.rules.test.yml"], cwd=RULES.parent,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_checked_in_dashboards_are_the_generated_ones() -> None:
    """Byte for byte, and nothing else in the folder: edit controller/dashboards/, then
    run `tenantctl dashboards`."""
    assert sorted(p.name for p in GRAFANA.glob("*.json")) == sorted(boards.BOARDS)
    for name, text in boards.rendered().items():
        assert (GRAFANA / name).read_bytes() == text.encode(), f"{name}: run `tenantctl dashboards`"


def cli(*args: str) -> Any:
    """``tenantctl dashboards ARGS`` through the command function (controller/cli/dashboards.py)."""
    app = typer.Typer()
    app.command(name="dashboards")(cli_dashboards.dashboards)
    app.command(name="unused")(lambda: None)  # two commands: typer keeps the name as a subcommand
    return typer.testing.CliRunner().invoke(app, ["dashboards", *args])


def test_the_command_writes_identical_files_and_checks_them(tmp_path: Path) -> None:
    done = cli("--out", str(tmp_path))
    assert done.exit_code == 0, done.output
    for name in boards.BOARDS:
        assert (tmp_path / name).read_bytes() == (GRAFANA / name).read_bytes(), name
    again = cli("--out", str(tmp_path))
    assert "(0 changed)" in again.output, again.output
    assert cli("--out", str(tmp_path), "--check").exit_code == 0
    edited = tmp_path / "tenantctl-tls.json"
    edited.write_text(edited.read_text().replace("Days to the soonest expiry", "Days"))
    stale = cli("--out", str(tmp_path), "--check")
    assert stale.exit_code == 1
    assert "tenantctl-tls.json differs" in stale.output
    assert "Days to the soonest expiry" not in edited.read_text(), "--check wrote the file"


def dashboards() -> list[Any]:
    return [pytest.param(json.loads((GRAFANA / name).read_text()), id=name) for name in sorted(boards.BOARDS)]


@pytest.mark.parametrize("dash", dashboards())
def test_dashboard_panels_have_unique_ids_and_fit_the_grid(dash: dict[str, Any]) -> None:
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"].startswith("tenantctl-")
    for p in dash["panels"]:
        assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


@pytest.mark.parametrize("dash", dashboards())
def test_dashboard_panels_do_not_overlap(dash: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], int] = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in taken, f"panel {p['id']} overlaps panel {taken[(x, y)]}"
                taken[(x, y)] = p["id"]


@pytest.mark.parametrize("dash", dashboards())
def test_every_query_is_filtered_by_the_dashboard_s_variable(dash: dict[str, Any]) -> None:
    """A dashboard shows what its variable selects (``instance`` of the controller,
    ``server``): every selector of every query names it, except the servers' exporters
    (``up``, ``job="..."``) on the controller's dashboards: those show every server."""
    names = {v["name"] for v in dash["templating"]["list"]} - {"datasource"}
    assert len(names) == 1
    (var,) = names
    found = 0
    for p in dash["panels"]:
        for t in p.get("targets", ()):
            for metric, matchers in re.findall(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", t["expr"]):
                found += 1
                if var == "instance" and (metric == "up" or "job=" in matchers):
                    continue  # the servers' exporters: every server of the cluster
                assert f'instance=~"${var}"' in matchers, (p["title"], t["expr"])
    assert found >= 10
