"""Prometheus and Alertmanager of an embedded environment (issue 12), end to end.

An environment of its own (``mon-a`` with every database and web role on 127.0.98.1,
``mon-b`` web and dns on 127.0.99.1) brought up by ``env_up``, which starts the exporters
on the servers (bootstrap) and Prometheus and Alertmanager on the host; the scrape
interval is then cut to one second (a reload) and the controller's metrics are served
from this process. Checked through the real programs' HTTP APIs and curl: every target
up, each exporter only on its server's address, the exporters' own health series, an
alert firing when PHP-FPM stops and resolving when it starts again."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controller import metrics
from controller.drivers import embedded
from controller.drivers.embedded import engine, monitoring, servers

from .conftest import check_down, sessions_root

MON_A = embedded.ServerSpec(name="mon-a", region="eu-west", provider="docker", address="127.0.98.1",
                            roles=("web", "db-mariadb", "db-postgresql", "dns"))
MON_B = embedded.ServerSpec(name="mon-b", region="us-east", provider="docker", address="127.0.99.1",
                            roles=("web", "dns"))
SPECS = [MON_A, MON_B]
INTERVAL = 1.0
T = TypeVar("T")


@dataclass(frozen=True)
class Mon:
    state_dir: Path
    prometheus: str
    up_seconds: float
    controller: str


@pytest.fixture(scope="module")
def mon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mon]:
    state_dir = tmp_path_factory.mktemp("monitoring-state")
    with embedded.hold(state_dir):
        embedded.remove_abandoned(SPECS, prefix=sessions_root(tmp_path_factory))
        exposition = metrics.Metrics(version="test").serve(f"{monitoring.host(state_dir)}:0")
        try:
            started = time.monotonic()
            embedded.env_up(SPECS, state_dir)
            up_seconds = time.monotonic() - started
            print(f"\nmonitoring env up (image, containers, bootstrap, prometheus) in {up_seconds:.1f}s")
            controller = f"{exposition.host}:{exposition.port}"
            assert monitoring.up(SPECS, state_dir, scrape_interval=f"{INTERVAL:.0f}s", controller=controller) == {
                "alertmanager": "running", "prometheus": "reloaded"}
            yield Mon(state_dir, monitoring.prometheus_url(state_dir), up_seconds, controller)
        finally:
            exposition.shutdown()
            check_down(embedded.env_down(state_dir, only=SPECS, destroy_data=True), state_dir)
            assert not monitoring.status(state_dir)["prometheus"]["running"]
            assert not monitoring.status(state_dir)["alertmanager"]["running"]


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        doc = json.load(resp)
    assert doc["status"] == "success", doc
    return doc["data"]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(INTERVAL / 2)
    raise AssertionError(f"{what} not seen in {timeout:.0f}s")


def expected_targets() -> set[tuple[str, str]]:
    """``(job, instance)`` of every exporter of every server."""
    return {(e.job, s.name) for s in SPECS for e in monitoring.EXPORTERS if e.role is None or e.role in s.roles}


def curl(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}", url],
                          capture_output=True, text=True, timeout=10)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(base, "/api/v1/query", query=expr)["result"]
    return result


def test_every_target_of_every_server_and_the_controller_is_up(mon: Mon) -> None:
    def all_up() -> dict[tuple[str, str], str] | None:
        active = api(mon.prometheus, "/api/v1/targets", state="active")["activeTargets"]
        health = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
        return health if health and all(h == "up" for h in health.values()) else None

    health = wait_for("every target up", all_up, timeout=30)
    servers_ = {k for k in health if k[0] not in ("tenantctl", "prometheus", "alertmanager")}
    assert servers_ == expected_targets()
    assert ("tenantctl", mon.controller) in health
    assert {job for job, _ in health} >= {"prometheus", "alertmanager"}


def test_up_of_the_node_job_returns_the_servers(mon: Mon) -> None:
    def found() -> dict[str, str] | None:
        result = query(mon.prometheus, 'up{job="node"} == 1')
        got = {r["metric"]["instance"]: r["metric"]["region"] for r in result}
        return got if len(got) == len(SPECS) else None

    assert wait_for('up{job="node"}', found, timeout=30) == {s.name: s.region for s in SPECS}


@pytest.mark.parametrize("expr", [
    pytest.param('mysql_up{instance="mon-a"} == 1', id="mariadb-login"),
    pytest.param('pg_up{instance="mon-a"} == 1', id="postgresql-login"),
    pytest.param('nginx_up{instance="mon-b"} == 1', id="nginx-stub-status"),
    pytest.param('phpfpm_up{instance="mon-b"} == 1', id="php-fpm-status"),
    pytest.param('tenantctl_php_fpm_master_processes{job="node",instance="mon-a"} >= 1', id="php-fpm-textfile"),
    pytest.param('tenantctl_php_fpm_pool_processes{job="node",instance="mon-a",pool="www"} >= 1',
                 id="php-fpm-pool"),
    pytest.param('pdns_auth_uptime{instance="mon-b"} > 0', id="pdns-metrics"),
    pytest.param('node_filesystem_avail_bytes{instance="mon-b",mountpoint="/"} > 0', id="node-filesystem"),
])
def test_each_exporter_reports_its_service(mon: Mon, expr: str) -> None:
    wait_for(expr, lambda: query(mon.prometheus, expr), timeout=30)


@pytest.mark.parametrize("port", [pytest.param(e.port, id=e.job) for e in monitoring.EXPORTERS
                                  if e.job not in ("pdns",)])
def test_each_exporter_listens_on_its_server_s_address_only(mon: Mon, port: int) -> None:
    exporter = next(e for e in monitoring.EXPORTERS if e.port == port)
    for server in SPECS:
        if exporter.role is not None and exporter.role not in server.roles:
            continue
        assert curl(f"http://{server.address}:{port}{exporter.path}").stdout == "200", (server.name, exporter.job)
        refused = curl(f"http://127.0.0.1:{port}{exporter.path}")
        assert refused.returncode == 7, (exporter.job, refused.stdout, refused.stderr)  # connection refused
    # the host network: every environment's servers are listed, none on a wildcard address
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True)
    locals_ = {line.split()[3].rsplit(":", 1)[0] for line in listening.stdout.splitlines()}
    assert {s.address for s in SPECS if exporter.role is None or exporter.role in s.roles} <= locals_
    assert not locals_ & {"0.0.0.0", "*", "[::]", "127.0.0.1"}, f"port {port} on {sorted(locals_)}"


def test_env_status_shows_prometheus_and_alertmanager(mon: Mon) -> None:
    doc = embedded.env_status(SPECS, mon.state_dir)
    assert doc["monitoring"]["prometheus"] == {"url": mon.prometheus, "running": True}
    assert doc["monitoring"]["alertmanager"]["running"] is True
    assert doc["healthy"], doc["servers"]
    a = next(s for s in doc["servers"] if s["name"] == "mon-a")
    assert {"node-exporter", "mysqld-exporter", "postgres-exporter", "nginx-exporter"} <= a["services"].keys()


def test_alertmanager_is_prometheus_s_alertmanager(mon: Mon) -> None:
    active = api(mon.prometheus, "/api/v1/alertmanagers")["activeAlertmanagers"]
    assert [a["url"] for a in active] == [f"{monitoring.alertmanager_url(mon.state_dir)}/api/v2/alerts"]


def test_rules_are_loaded(mon: Mon) -> None:
    groups = api(mon.prometheus, "/api/v1/rules")["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"ServerServiceDown", "TenantctlDown", "BackupTooOld"} <= names


def test_up_again_changes_nothing(mon: Mon) -> None:
    assert monitoring.up(SPECS, mon.state_dir, scrape_interval=f"{INTERVAL:.0f}s", controller=mon.controller) == {
        "alertmanager": "running", "prometheus": "running"}


def _exec(server: embedded.ServerSpec, state_dir: Path, *argv: str) -> None:
    eng = engine.find_engine()
    assert eng is not None
    with contextlib.closing(eng.client):
        container = eng.client.containers.get(servers.container_name(embedded.env_id(state_dir), server))
        code, out = container.exec_run(list(argv))
        assert code == 0, out.decode(errors="replace")


def firing(base: str, alert: str, instance: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = api(base, "/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alert and a["labels"].get("instance") == instance
            and a["state"] == "firing"]


def test_stopping_php_fpm_fires_an_alert_that_resolves_after_restart(mon: Mon) -> None:
    """ServerServiceDown has ``for: 2m``: it must fire within that plus two scrape
    intervals of the first failed scrape, and leave once PHP-FPM answers again."""
    _exec(MON_B, mon.state_dir, "service", "php8.2-fpm", "stop")
    try:
        stopped = time.monotonic()
        alerts = wait_for("ServerServiceDown firing", lambda: firing(mon.prometheus, "ServerServiceDown", "mon-b"),
                          timeout=120 + 4 * INTERVAL + 5)
        took = time.monotonic() - stopped
        assert {a["labels"]["job"] for a in alerts} == {"php-fpm"}
        assert alerts[0]["labels"]["severity"] == "critical"
        assert took >= 120, f"fired after {took:.0f}s, before its `for`"
        print(f"\nServerServiceDown fired {took:.1f}s after php-fpm stopped")
    finally:
        _exec(MON_B, mon.state_dir, "service", "php8.2-fpm", "start")
    wait_for("ServerServiceDown resolved",
             lambda: not firing(mon.prometheus, "ServerServiceDown", "mon-b") or None, timeout=10 * INTERVAL + 5)
