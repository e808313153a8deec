"""Prometheus and Alertmanager of an embedded environment (issue 12), end to end.

An environment of its own (``mon-a`` with every database and web role on 127.0.98.1,
``mon-b`` web and dns on 127.0.99.1) brought up by ``env_up``, which starts the exporters
on the servers (bootstrap) and Prometheus and Alertmanager on the host; the scrape
interval is then cut to one second and tenantctl's rules replaced by a copy generated
from them in which only the ``for`` of the alerts under test (``UNDER_TEST``) is cut to
``FAST_FOR`` (a reload), and the controller's metrics are served from this process. Checked through the real programs' HTTP APIs and curl: every target
up, each exporter only on its server's address, the exporters' own health series, an
alert firing in Prometheus' alerts API within its ``for`` and two scrape intervals (issue
12) when PHP-FPM stops and resolving when it starts again; the same for ServerDiskFull
when a server's small tmpfs (``servers.FILL_MOUNT``) is filled, and for
CertificateExpiringSoon when the controller exports a certificate that really expires in
7 days, each leaving when the disk is emptied or the certificate renewed."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from controller import metrics
from controller.drivers import embedded
from controller.drivers.embedded import engine, monitoring, servers
from controller.drivers.tls import metrics as tls_metrics
from controller.drivers.tls import store as tls_store

from .conftest import check_down, sessions_root

MON_A = embedded.ServerSpec(name="mon-a", region="eu-west", provider="docker", address="127.0.98.1",
                            roles=("web", "db-mariadb", "db-postgresql", "dns"))
MON_B = embedded.ServerSpec(name="mon-b", region="us-east", provider="docker", address="127.0.99.1",
                            roles=("web", "dns"))
SPECS = [MON_A, MON_B]
INTERVAL = 1.0
pytestmark = pytest.mark.embedded
#: the alerts these tests make fire; their ``for`` is ``FAST_FOR`` in the test copy of
#: tenantctl's rules (production's: minutes to an hour), all else as in production
UNDER_TEST = ("ServerServiceDown", "ServerDiskFull", "CertificateExpiringSoon")
FAST_FOR = "5s"
#: polling the alerts API every half interval, plus its answer: the margin over a bound
POLL_SLACK = 1.0
T = TypeVar("T")


def seconds(duration: str) -> float:
    """A rule's ``for`` (``30s``, ``10m``, ``1h``) in seconds."""
    found = re.fullmatch(r"(\d+)([smh])", duration)
    assert found, duration
    return float(int(found[1]) * {"s": 1, "m": 60, "h": 3600}[found[2]])


def fast_rules(production: dict[str, Any]) -> dict[str, Any]:
    """tenantctl's rules with the ``for`` of the ``UNDER_TEST`` alerts cut to ``FAST_FOR``."""
    doc = copy.deepcopy(production)
    cut = []
    for rule in (r for g in doc["groups"] for r in g["rules"] if r.get("alert") in UNDER_TEST):
        rule["for"] = FAST_FOR
        cut.append(rule["alert"])
    assert sorted(cut) == sorted(UNDER_TEST), cut
    return doc


def write_fast_rules(directory: Path) -> Path:
    """The test copy of ``monitoring.RULES`` in ``directory``, generated from it (no drift)."""
    path = directory / monitoring.RULES.name
    path.write_text(yaml.safe_dump(fast_rules(yaml.safe_load(monitoring.RULES.read_text())), sort_keys=False))
    return path


@dataclass(frozen=True)
class Mon:
    state_dir: Path
    prometheus: str
    up_seconds: float
    controller: str
    metrics: metrics.Metrics
    """the controller's metrics this process serves (``controller``) to Prometheus"""
    rules: Path
    """the test copy of tenantctl's rules Prometheus runs (``write_fast_rules``)"""


@pytest.fixture(scope="module")
def mon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mon]:
    state_dir = tmp_path_factory.mktemp("monitoring-state")
    rules = write_fast_rules(tmp_path_factory.mktemp("monitoring-rules"))
    with embedded.hold(state_dir):
        embedded.remove_abandoned(SPECS, prefix=sessions_root(tmp_path_factory))
        exported = metrics.Metrics(version="test")
        exposition = exported.serve(f"{monitoring.host(state_dir)}:0")
        try:
            started = time.monotonic()
            embedded.env_up(SPECS, state_dir)
            up_seconds = time.monotonic() - started
            print(f"\nmonitoring env up (image, containers, bootstrap, prometheus) in {up_seconds:.1f}s")
            controller = f"{exposition.host}:{exposition.port}"
            assert monitoring.up(SPECS, state_dir, scrape_interval=f"{INTERVAL:.0f}s", controller=controller,
                                 rules=rules) == {"alertmanager": "running", "prometheus": "reloaded"}
            yield Mon(state_dir, monitoring.prometheus_url(state_dir), up_seconds, controller, exported, rules)
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
    assert monitoring.up(SPECS, mon.state_dir, scrape_interval=f"{INTERVAL:.0f}s", controller=mon.controller,
                         rules=mon.rules) == {"alertmanager": "running", "prometheus": "running"}


def production_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(monitoring.RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_the_test_rules_differ_from_production_only_in_the_for_of_the_alerts_under_test(tmp_path: Path) -> None:
    production = yaml.safe_load(monitoring.RULES.read_text())
    test_copy = yaml.safe_load(write_fast_rules(tmp_path).read_text())
    assert [g["name"] for g in test_copy["groups"]] == [g["name"] for g in production["groups"]]
    for group, written in zip(test_copy["groups"], production["groups"], strict=True):
        assert {k: v for k, v in group.items() if k != "rules"} == {k: v for k, v in written.items() if k != "rules"}
        for rule, prod in zip(group["rules"], written["rules"], strict=True):
            assert rule["expr"] == prod["expr"], rule.get("alert", rule.get("record"))
            if prod.get("alert") in UNDER_TEST:
                assert rule["for"] == FAST_FOR
                assert seconds(prod["for"]) > seconds(FAST_FOR) + 2 * INTERVAL, prod  # else the cut tests nothing
                assert {k: v for k, v in rule.items() if k != "for"} == {k: v for k, v in prod.items() if k != "for"}
            else:
                assert rule == prod


def test_prometheus_runs_the_test_copy_of_the_rules(mon: Mon) -> None:
    """Every alert with production's labels and annotations, and production's ``for``
    except the ``UNDER_TEST`` ones' (the expressions: the test above, on the file)."""
    groups = api(mon.prometheus, "/api/v1/rules", type="alert")["groups"]
    assert {g["file"] for g in groups} == {str(mon.rules.resolve())}
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    written = {r["alert"]: r for r in production_rules() if "alert" in r}
    assert loaded.keys() == written.keys()
    for name, rule in written.items():
        want = seconds(FAST_FOR) if name in UNDER_TEST else seconds(rule.get("for", "0s"))
        assert loaded[name]["duration"] == want, (name, loaded[name]["duration"])
        assert (loaded[name].get("labels") or {}) == rule.get("labels", {}), name
        assert (loaded[name].get("annotations") or {}) == rule.get("annotations", {}), name


def _exec(server: embedded.ServerSpec, state_dir: Path, *argv: str) -> None:
    eng = engine.find_engine()
    assert eng is not None
    with contextlib.closing(eng.client):
        container = eng.client.containers.get(servers.container_name(embedded.env_id(state_dir), server))
        code, out = container.exec_run(list(argv))
        assert code == 0, out.decode(errors="replace")


def active(base: str, alert: str, **labels: str) -> list[dict[str, Any]]:
    """Alerts named ``alert`` with ``labels``, pending or firing."""
    alerts: list[dict[str, Any]] = api(base, "/api/v1/alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alert
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def instant(text: str) -> float:
    """Unix time of Prometheus' RFC 3339 timestamps (nanoseconds cut to microseconds)."""
    return dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")).timestamp()


def production_for(alert: str) -> float:
    """The ``for`` of ``alert`` in tenantctl's rules file (what production waits)."""
    return seconds(next(r for r in production_rules() if r.get("alert") == alert)["for"])


def fires(base: str, alert: str, before: float, after: float, **labels: str) -> dict[str, Any]:
    """The one alert ``alert`` with ``labels`` after a change made between ``before`` and
    ``after`` (Unix times): active within two scrape intervals (a scrape, then an
    evaluation) of the change, firing in Prometheus' alerts API no sooner than its ``for``
    (the test copy's ``FAST_FOR``) and within that plus two scrape intervals (issue 12)."""
    alerts = wait_for(f"{alert} active", lambda: active(base, alert, **labels), timeout=10 * INTERVAL + 5)
    assert len(alerts) == 1, alerts
    became = instant(alerts[0]["activeAt"]) - after
    assert became <= 2 * INTERVAL + POLL_SLACK, f"{alert} active {became:.1f}s after the change"
    fired = wait_for(f"{alert} firing", lambda: [a for a in active(base, alert, **labels) if a["state"] == "firing"],
                     timeout=seconds(FAST_FOR) + 10 * INTERVAL + 5)
    seen = time.time()
    print(f"\n{alert} active {became:.1f}s and firing {seen - after:.1f}s after the change "
          f"(for: {FAST_FOR} here, {production_for(alert):.0f}s in production)")
    assert seen - before >= seconds(FAST_FOR), f"{alert} fired {seen - before:.1f}s after the change, before its for"
    assert seen - after <= seconds(FAST_FOR) + 2 * INTERVAL + POLL_SLACK, f"{alert} fired {seen - after:.1f}s after"
    assert len(fired) == 1, fired
    return fired[0]


def resolves(base: str, alert: str, fixed: float, **labels: str) -> float:
    """Seconds from ``fixed`` (Unix time) until ``alert`` with ``labels`` left the alerts API."""
    wait_for(f"{alert} resolved", lambda: not active(base, alert, **labels) or None, timeout=10 * INTERVAL + 5)
    took = time.time() - fixed
    print(f"{alert} resolved {took:.1f}s after the fix")
    return took


def test_stopping_php_fpm_fires_an_alert_that_resolves_after_restart(mon: Mon) -> None:
    """ServerServiceDown of mon-b's php-fpm job only; it leaves once PHP-FPM answers again."""
    where = {"instance": "mon-b", "job": "php-fpm"}
    assert not active(mon.prometheus, "ServerServiceDown", **where)
    before = time.time()
    _exec(MON_B, mon.state_dir, "service", "php8.2-fpm", "stop")
    try:
        alert = fires(mon.prometheus, "ServerServiceDown", before, time.time(), **where)
        assert alert["labels"]["severity"] == "critical"
        assert {a["labels"]["job"] for a in active(mon.prometheus, "ServerServiceDown", instance="mon-b")} == {
            "php-fpm"}
    finally:
        _exec(MON_B, mon.state_dir, "service", "php8.2-fpm", "start")
    resolves(mon.prometheus, "ServerServiceDown", time.time(), **where)


def test_filling_a_server_s_disk_raises_server_disk_full_until_it_is_emptied(mon: Mon) -> None:
    """94 % of mon-b's 16 MiB tmpfs (15 MiB of zeros written with dd) is above the rule's
    85 %; the alert names that mount point only and leaves once the file is removed."""
    where = {"instance": "mon-b", "mountpoint": servers.FILL_MOUNT}
    size = wait_for("the tmpfs in node exporter", lambda: query(
        mon.prometheus, f'node_filesystem_size_bytes{{instance="mon-b",mountpoint="{servers.FILL_MOUNT}"}}'),
                    timeout=30)
    assert size[0]["metric"]["fstype"] == "tmpfs"
    assert not active(mon.prometheus, "ServerDiskFull", **where)
    fill = f"{servers.FILL_MOUNT}/fill"
    before = time.time()
    _exec(MON_B, mon.state_dir, "dd", "if=/dev/zero", f"of={fill}", "bs=1M", "count=15")
    try:
        alert = fires(mon.prometheus, "ServerDiskFull", before, time.time(), **where)
        assert alert["labels"]["severity"] == "warning"
        assert 90 < float(alert["value"]) < 95, alert["value"]
    finally:
        _exec(MON_B, mon.state_dir, "rm", "-f", fill)
    resolves(mon.prometheus, "ServerDiskFull", time.time(), **where)


EXPIRING = "expiring.example"


def certificate(directory: Path, days: int) -> bytes:
    """A self-signed certificate of ``EXPIRING`` valid ``days`` from now (openssl)."""
    key, cert = directory / f"key-{days}.pem", directory / f"cert-{days}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={EXPIRING}",
                    "-addext", f"subjectAltName=DNS:{EXPIRING}"], check=True, capture_output=True, timeout=30)
    return cert.read_bytes()


def export_certificate(m: metrics.Metrics, chain: bytes) -> None:
    """What the tls driver does with a certificate it issued (``_success``: its notAfter
    through ``cert_info``) and the controller's loop with the driver's figures."""
    tls_metrics.observe(EXPIRING, expiry=tls_store.cert_info(chain).not_after.timestamp(), renewed=time.time(),
                        failures=0)
    m.set_tls(metrics.TlsSnapshot(expiry=tls_metrics.certificate_expiry(), renewed=tls_metrics.last_renewal(),
                                  failures=tls_metrics.renewal_failures()))


def test_a_certificate_expiring_in_seven_days_raises_an_alert_until_it_is_renewed(
        mon: Mon, tmp_path: Path) -> None:
    """No clock is faked: the exported figure is the certificate's notAfter and the rule
    compares it with Prometheus' time(), so a certificate that really expires in 7 days
    (below the rule's 14) is the test; a 90-day one, as a renewal gives, clears it."""
    where = {"subscription": EXPIRING, "instance": mon.controller}
    assert not active(mon.prometheus, "CertificateExpiringSoon", **where)
    try:
        chain = certificate(tmp_path, 7)
        before = time.time()
        export_certificate(mon.metrics, chain)
        alert = fires(mon.prometheus, "CertificateExpiringSoon", before, time.time(), **where)
        assert alert["labels"]["severity"] == "warning"
        assert 6.9 < float(alert["value"]) < 7.0, alert["value"]
        renewal = certificate(tmp_path, 90)
        renewed = time.time()
        export_certificate(mon.metrics, renewal)
        resolves(mon.prometheus, "CertificateExpiringSoon", renewed, **where)
        days = query(mon.prometheus, f'(tenantctl_certificate_expiry_timestamp_seconds{{subscription="{EXPIRING}"}}'
                                     " - time()) / 86400")
        assert 89 < float(days[0]["value"][1]) <= 90, days
    finally:
        tls_metrics.forget(EXPIRING)
        mon.metrics.set_tls(metrics.TlsSnapshot(expiry=tls_metrics.certificate_expiry()))
