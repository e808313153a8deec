"""Every panel query of every generated dashboard, executed by a real Prometheus (issue 12).

An environment of its own (tests/monitoring/live/: ``dash-a`` with every web and
database role on 127.0.106.1, ``dash-b`` DNS and a backup repository on 127.0.107.1;
Prometheus and Alertmanager started by ``env up``), the real ``tenantctl run`` serving
its /metrics (which converges the desired state: site, databases, zones, a certificate
from Pebble, then the nightly backup of a never-backed-up subscription), Prometheus
reloaded to scrape every second. Then each query, as Grafana sends it with every
variable on "All", must return at least one series; its label names must be ones the
series API shows for its metrics; the exporter catalogue the static checks rely on
(tests/monitoring/exporters.py) must be what the exporters export; and the new alert
expressions evaluate on the real series with the labels their annotations use.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.conftest import E2E, environment
from monitoring.test_queries import QUERIES, RULE_LIST, Query, grafana, problems

from controller.drivers.embedded import monitoring
from monitoring import exporters, mutations, promql

pytestmark = pytest.mark.embedded

DESIRED = Path(__file__).resolve().parents[1] / "monitoring" / "live"
CLI = str(Path(sys.executable).parent / "tenantctl")
SCRAPE = "1s"

SPARSE = {
    "sum by (property) (tenantctl_conflicts": "a series per property in conflict: this environment has no conflict "
                                             "(its count, tenantctl_subscriptions{sync=\"unsynced\"}, is on the panel)",
    "sum by (resource, level) (tenantctl_overuse": "a series per resource over a limit: nothing is over here "
                                                  "(suspended-for-overuse is on the panel)",
    "tenantctl_certificate_renewal_failures": "exported only for certificates failing renewal (none here)",
    "tenantctl_pitr_": "a series per database server archiving for a plan with backup.pitr (issue 10): none here",
    "tenantctl_dr_drill_": "exported only where a spare server exists (DR-1 drill): this environment has none",
}
"""Queries on families that have series only when something is wrong, and why: they may be
empty here (xfail, not a pass); each such panel also shows an always-present figure."""


@dataclass(frozen=True)
class Live:
    env: E2E
    prometheus: str
    controller: str


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.load(resp)
    assert doc["status"] == "success", doc
    return doc["data"]


def query(base: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(base, "/api/v1/query", query=expr)["result"]
    return result


def wait_for(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """``probe``'s first truthy answer, asked at once and then every second until
    ``timeout`` (0: asked once)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() + 1.0 > deadline:
            raise AssertionError(f"{what}: not seen in {timeout:.0f}s")
        time.sleep(1.0)


READY = ("tenantctl_certificate_expiry_timestamp_seconds", "tenantctl_dns_last_sync_timestamp_seconds",
         "tenantctl_php_fpm_pool_processes", "pg_stat_database_xact_commit",
         "tenantctl_backup_last_success_timestamp_seconds", "tenantctl_backup_drill_duration_seconds",
         "tenantctl_backup_added_bytes")
"""What the controller and servers export once ``run`` has converged and backed up."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with environment(tmp_path_factory, DESIRED, "dashboards-live") as env:
        host = monitoring.host(env.state)
        addr = f"{host}:{free_port(host)}"
        with (env.state / "run.log").open("w") as log:
            run = subprocess.Popen([CLI, "run", "-f", str(env.desired), "--metrics-addr", addr, "--resync", "5"],
                                   env=env.env, stdout=log, stderr=subprocess.STDOUT)
            try:
                monitoring.up(env.specs, env.state, scrape_interval=SCRAPE, controller=addr)
                base = monitoring.prometheus_url(env.state)
                started = time.monotonic()
                for expr in READY:
                    wait_for(expr, lambda e=expr: query(base, e), timeout=300)  # type: ignore[misc]
                    print(f"\n{expr}: after {time.monotonic() - started:.0f}s")
                time.sleep(10)  # rate() and the recorded ratios over a few scrapes
                print(f"\ndashboards live: converged and backed up in {time.monotonic() - started:.0f}s after run")
                yield Live(env, base, addr)
            finally:
                run.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.wait(60)
                if run.poll() is None:
                    run.kill()


def live_expr(expr: str) -> str:
    """As Grafana sends it with every variable on "All" (the rate interval: 30s at 1s scrapes)."""
    return grafana(expr.replace("$__rate_interval", "30s"))


def sparse(q: Query) -> str | None:
    return next((why for key, why in SPARSE.items() if key in q.expr), None)


@pytest.mark.parametrize("q", [pytest.param(q, id=q.where) for q in QUERIES])
def test_panel_query_returns_series(live: Live, q: Query) -> None:
    expr = live_expr(q.expr)
    try:
        result = wait_for(q.where, lambda: query(live.prometheus, expr), timeout=0 if sparse(q) else 15)
    except AssertionError:
        why = sparse(q)
        if why:
            pytest.xfail(why)
        raise AssertionError(f"{q.where}: no series for {expr}") from None
    assert all(len(r["value"]) == 2 for r in result)


def live_labels(base: str, names: set[str]) -> dict[str, set[str]]:
    """Label names of each metric in ``names`` as the series API lists them."""
    out: dict[str, set[str]] = {}
    for name in sorted(names):
        series = api(base, "/api/v1/series", **{"match[]": name, "start": str(time.time() - 600)})
        if series:
            out[name] = set().union(*(set(s) for s in series)) - {"__name__"}
    return out


@pytest.fixture(scope="module")
def known(live: Live) -> dict[str, set[str]]:
    names = set().union(*(promql.names(live_expr(q.expr)).metrics for q in QUERIES),
                        *(promql.names(r["expr"]).metrics for r in RULE_LIST), exporters.SERIES)
    return live_labels(live.prometheus, names)


@pytest.mark.parametrize("q", [pytest.param(q, id=q.where) for q in QUERIES])
def test_panel_query_uses_labels_the_series_api_shows(known: dict[str, set[str]], q: Query) -> None:
    missing = {m for m in promql.names(live_expr(q.expr)).metrics if m not in known}
    if missing and sparse(q):
        pytest.xfail(sparse(q))
    assert not problems(live_expr(q.expr), q.legend, known), (q.where, q.expr)


@pytest.mark.parametrize("name", sorted(exporters.SERIES))
def test_the_exporter_catalogue_is_what_the_exporters_export(known: dict[str, set[str]], name: str) -> None:
    job, labels = exporters.SERIES[name]
    assert name in known, f"{name} is not exported by the {job} job"
    if job != "*":
        assert known[name] == set(labels), f"{name}: the series API shows labels {sorted(known[name])}"


NEW_ALERTS = ("ServerDiskFull", "ServerInodesLow", "ServerLoadHigh", "ServerMemoryLow", "MariaDBDown", "PostgreSQLDown",
              "MariaDBConnectionsNearMax", "PostgreSQLConnectionsNearMax", "CertificateExpiringSoon")
"""OPS-1 alerts whose expression, without its threshold, has series here (their thresholds
are tested by promtool: tests/monitoring/test_rule_mutations.py)."""


@pytest.mark.parametrize("alert", NEW_ALERTS)
def test_alert_expression_returns_series_with_the_labels_it_uses(live: Live, alert: str) -> None:
    rule = next(r for r in RULE_LIST if r.get("alert") == alert)
    lhs = mutations.threshold(rule["expr"]).lhs
    result = wait_for(alert, lambda: query(live.prometheus, lhs), timeout=15)
    used = set(re.findall(r"\$labels\.(\w+)", yaml.safe_dump(rule["annotations"])))
    assert used
    for r in result:
        assert used <= set(r["metric"]), f"{alert}: {sorted(used - set(r['metric']))} missing from {r['metric']}"
    assert {r["metric"]["instance"] for r in result if "instance" in r["metric"]}

