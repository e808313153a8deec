"""controller.metrics: names, summary gauges, the queue hook, exposition and serving.

``promtool check metrics`` must pass on the exposition. promtool comes from the Debian
package ``prometheus``; the test fails (it does not skip) when it is missing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from prometheus_client import parser

from controller import clock, metrics
from controller.reconcile import queue


def item(
    sync: str = "synced",
    state: str = "active",
    reason: str | None = None,
    conflicts: tuple[str, ...] = (),
    concerns: dict[str, str] | None = None,
    name: str = "a.example",
) -> dict[str, Any]:
    return {
        "name": name,
        "sync": sync,
        "state": state,
        "stateReason": reason,
        "conflicts": [{"property": p, "planValue": "x", "availableValue": "y"} for p in conflicts],
        "concerns": concerns or {},
    }


def figures(**changes: Any) -> metrics.BackupFigures:
    """Backups of two source servers (eu-west-1, us-east-1) copied to each other's region."""
    base = metrics.BackupFigures(
        last_success={("eu-west-1", "eu-west"): 1_700_000_000.0, ("eu-west-1", "us-east"): 1_700_000_300.0,
                      ("us-east-1", "us-east"): 1_700_010_000.0, ("us-east-1", "eu-west"): 1_699_900_000.0},
        last_duration={("eu-west-1", "eu-west"): 120.5, ("eu-west-1", "us-east"): 30.0,
                       ("us-east-1", "us-east"): 95.0, ("us-east-1", "eu-west"): 12.0},
        stale={"eu-west": 3, "us-east": 0},
        failed={"eu-west-1": 0, "us-east-1": 2},
        added_bytes={"eu-west-1": 1_048_576.0, "us-east-1": 0.0},
        drill_failed=1, drill_last=1_700_020_000.0, drill_seconds=250.0,
        repo_ok={"eu-west": True, "us-east": False},
        repo_checked={"eu-west": 1_700_030_000.0, "us-east": 1_700_030_100.0},
    )
    return dataclasses.replace(base, **changes)


def backup_series(m: metrics.Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every ``tenantctl_backup_*`` sample of the exposition, parsed back by prometheus_client."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in parser.text_string_to_metric_families(m.exposition().decode())
            for s in family.samples if s.name.startswith("tenantctl_backup_")}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def value(m: metrics.Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


@pytest.fixture
def m() -> metrics.Metrics:
    return metrics.Metrics(version="0.1.0-test")


def populated(m: metrics.Metrics, n: int = 3) -> metrics.Metrics:
    for result, seconds in [("success", 0.01), ("error", 2.0), ("requeue", 0.3)]:
        m.observe_reconcile(result, seconds)
    q = queue.WorkQueue[str](clock=clock.FakeClock(), metrics=m.workqueue)
    q.add("a.example")
    q.add_rate_limited("b.example")
    q.get(0)
    m.set_subscription_summary(
        [
            item(
                sync=["synced", "unsynced", "locked", "custom"][i % 4],
                state="suspended" if i % 5 == 0 else "active",
                reason="expired" if i % 5 == 0 else None,
                conflicts=("hosting.php.version", "hosting.hardQuota") if i % 4 == 1 else (),
                concerns={"web": "provisioned", "dns": "failed" if i % 7 == 0 else "provisioned"},
                name=f"s{i}.example",
            )
            for i in range(n)
        ]
    )
    m.set_dns({("dns-1", "primary"): n, ("dns-2", "secondary"): n}, {"dns-1": 1.7e9})
    m.set_tls(metrics.TlsSnapshot(
        expiry={"s1.example": 1.8e9}, renewed={"s1.example": 1.7e9}, failures={"s2.example": 3},
        requests={"ok": 40, "error": 2}, request_seconds={"ok": 1.5, "error": 0.2},
        orders={"issued": 4, "failed": 1}, order_seconds={"issued": 4.4, "failed": 0.9},
    ))
    m.set_backup(figures())
    m.count_interrupted()
    m.set_desired_state(True, 1.7e9)
    m.set_deletions_held(7)
    for i in range(20):
        m.set_server_reachable(f"web-{i}", i != 3)
    m.inc_generation_change("web-5")
    m.set_backoff(deferred=n // 10, permanent=1)
    return m


def test_tls_and_dns_series(m: metrics.Metrics) -> None:
    text = populated(m).exposition().decode()
    assert 'tenantctl_certificate_expiry_timestamp_seconds{subscription="s1.example"} 1.8e+09' in text
    assert 'tenantctl_acme_requests_total{result="error"} 2.0' in text
    assert 'tenantctl_acme_order_duration_seconds_count{result="issued"} 4.0' in text
    assert 'tenantctl_dns_zones{server="dns-2",state="secondary"} 3.0' in text


def test_promtool_check_metrics(m: metrics.Metrics) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install the Debian package 'prometheus' (make deps does)")
    exposition = populated(m, 10_000).exposition()
    done = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert done.stdout + done.stderr == b""  # no lint warnings either


class TestNames:
    def test_controller_runtime_style_names(self, m: metrics.Metrics) -> None:
        text = populated(m).exposition().decode()
        for family in [
            "tenantctl_reconcile_total counter",
            "tenantctl_reconcile_errors_total counter",
            "tenantctl_reconcile_time_seconds histogram",
            "tenantctl_workqueue_depth gauge",
            "tenantctl_workqueue_adds_total counter",
            "tenantctl_workqueue_retries_total counter",
            "tenantctl_workqueue_queue_duration_seconds histogram",
            "tenantctl_subscriptions gauge",
            "tenantctl_subscriptions_by_state gauge",
            "tenantctl_conflicts gauge",
            "tenantctl_concern_status gauge",
            "tenantctl_build_info gauge",
            "tenantctl_desired_state_valid gauge",
            "tenantctl_desired_state_last_success_timestamp_seconds gauge",
            "tenantctl_deletions_held gauge",
            "tenantctl_server_reachable gauge",
            "tenantctl_server_generation_changes_total counter",
            "tenantctl_deferred gauge",
            "tenantctl_backoff_permanent gauge",
            "tenantctl_backup_last_success_timestamp_seconds gauge",
            "tenantctl_backup_stale_subscriptions gauge",
            "tenantctl_backup_repository_check_ok gauge",
        ]:
            assert f"# TYPE {family}\n" in text

    def test_build_info(self, m: metrics.Metrics) -> None:
        assert value(m, "tenantctl_build_info", version="0.1.0-test") == 1

    def test_private_registries(self) -> None:
        a, b = metrics.Metrics(), metrics.Metrics()
        a.observe_reconcile("success", 0.1)
        assert value(a, "tenantctl_reconcile_total", result="success") == 1
        assert value(b, "tenantctl_reconcile_total", result="success") == 0
        assert b"tenantctl_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


class TestReconcile:
    def test_results_errors_and_time(self, m: metrics.Metrics) -> None:
        populated(m)
        assert value(m, "tenantctl_reconcile_total", result="success") == 1
        assert value(m, "tenantctl_reconcile_total", result="error") == 1
        assert value(m, "tenantctl_reconcile_total", result="requeue") == 1
        assert value(m, "tenantctl_reconcile_errors_total") == 1
        assert value(m, "tenantctl_reconcile_time_seconds_count") == 3
        assert value(m, "tenantctl_reconcile_time_seconds_sum") == pytest.approx(2.31)

    @pytest.mark.parametrize("result", [pytest.param("ok", id="unknown"),
                                        pytest.param("interrupted", id="interrupted-has-no-duration")])
    def test_unknown_result_refused(self, m: metrics.Metrics, result: str) -> None:
        with pytest.raises(ValueError, match="success"):
            m.observe_reconcile(result, 1)

    def test_interrupted_passes(self, m: metrics.Metrics) -> None:
        assert value(m, "tenantctl_reconcile_total", result="interrupted") == 0  # present before the first
        m.count_interrupted(2)
        assert value(m, "tenantctl_reconcile_total", result="interrupted") == 2
        assert value(m, "tenantctl_reconcile_time_seconds_count") == 0
        assert value(m, "tenantctl_reconcile_errors_total") == 0


class TestControllerHealth:
    """Issue 7: desired state, deletion guard, servers, backoff, as the run loop sets them."""

    def test_desired_state(self, m: metrics.Metrics) -> None:
        assert value(m, "tenantctl_desired_state_valid") == 0  # nothing loaded yet
        assert value(m, "tenantctl_desired_state_last_success_timestamp_seconds") == 0
        m.set_desired_state(True, 1_700_000_000.5)
        assert value(m, "tenantctl_desired_state_valid") == 1
        assert value(m, "tenantctl_desired_state_last_success_timestamp_seconds") == 1_700_000_000.5
        m.set_desired_state(False, None)  # a failed load: the last good one still stands
        assert value(m, "tenantctl_desired_state_valid") == 0
        assert value(m, "tenantctl_desired_state_last_success_timestamp_seconds") == 1_700_000_000.5
        m.set_desired_state(True, 1_700_000_060.0)
        assert value(m, "tenantctl_desired_state_valid") == 1
        assert value(m, "tenantctl_desired_state_last_success_timestamp_seconds") == 1_700_000_060.0

    def test_deletions_held(self, m: metrics.Metrics) -> None:
        assert value(m, "tenantctl_deletions_held") == 0
        m.set_deletions_held(8)
        assert value(m, "tenantctl_deletions_held") == 8
        m.set_deletions_held(0)
        assert value(m, "tenantctl_deletions_held") == 0

    def test_servers(self, m: metrics.Metrics) -> None:
        m.set_server_reachable("web-1", True)
        m.set_server_reachable("db-1", False)
        assert value(m, "tenantctl_server_reachable", server="web-1") == 1
        assert value(m, "tenantctl_server_reachable", server="db-1") == 0
        # the counter exists at 0 before the first change, so increase() sees the change
        assert value(m, "tenantctl_server_generation_changes_total", server="web-1") == 0
        m.inc_generation_change("web-1")
        m.inc_generation_change("web-1")
        assert value(m, "tenantctl_server_generation_changes_total", server="web-1") == 2
        assert value(m, "tenantctl_server_generation_changes_total", server="db-1") == 0
        m.set_server_reachable("db-1", True)
        assert value(m, "tenantctl_server_reachable", server="db-1") == 1

    def test_forget_server(self, m: metrics.Metrics) -> None:
        m.set_server_reachable("web-1", True)
        m.inc_generation_change("web-1")
        m.set_server_reachable("web-2", False)
        m.forget_server("web-1")
        m.forget_server("never-seen")  # no error
        text = m.exposition().decode()
        assert 'server="web-1"' not in text
        assert 'tenantctl_server_reachable{server="web-2"} 0.0' in text

    def test_backoff(self, m: metrics.Metrics) -> None:
        m.set_backoff(deferred=5, permanent=2)
        assert value(m, "tenantctl_deferred") == 5
        assert value(m, "tenantctl_backoff_permanent") == 2
        m.set_backoff(deferred=0, permanent=0)
        assert value(m, "tenantctl_deferred") == 0
        assert value(m, "tenantctl_backoff_permanent") == 0

    def test_one_series_per_server_at_most(self, m: metrics.Metrics) -> None:
        text = populated(m, 10_000).exposition().decode()
        for family in ("tenantctl_desired_state_valid", "tenantctl_deletions_held", "tenantctl_deferred",
                       "tenantctl_backoff_permanent"):
            assert text.count(f"\n{family} ") == 1
        assert text.count("\ntenantctl_server_reachable{") == 20
        assert text.count("\ntenantctl_server_generation_changes_total{") == 20


class TestBackup:
    """Issue 9 item 8 (BKP-1..3): gauges per (server, region), region or server, never per
    subscription, replaced whole by each ``set_backup``."""

    def test_exactly_the_expected_series(self, m: metrics.Metrics) -> None:
        m.set_backup(figures())
        assert backup_series(m) == {
            key("tenantctl_backup_last_success_timestamp_seconds", server="eu-west-1", region="eu-west"): 1.7e9,
            key("tenantctl_backup_last_success_timestamp_seconds", server="eu-west-1", region="us-east"): 1_700_000_300,
            key("tenantctl_backup_last_success_timestamp_seconds", server="us-east-1", region="us-east"): 1_700_010_000,
            key("tenantctl_backup_last_success_timestamp_seconds", server="us-east-1", region="eu-west"): 1_699_900_000,
            key("tenantctl_backup_last_duration_seconds", server="eu-west-1", region="eu-west"): 120.5,
            key("tenantctl_backup_last_duration_seconds", server="eu-west-1", region="us-east"): 30.0,
            key("tenantctl_backup_last_duration_seconds", server="us-east-1", region="us-east"): 95.0,
            key("tenantctl_backup_last_duration_seconds", server="us-east-1", region="eu-west"): 12.0,
            key("tenantctl_backup_stale_subscriptions", region="eu-west"): 3,
            key("tenantctl_backup_stale_subscriptions", region="us-east"): 0,
            key("tenantctl_backup_failed_subscriptions", server="eu-west-1"): 0,
            key("tenantctl_backup_failed_subscriptions", server="us-east-1"): 2,
            key("tenantctl_backup_added_bytes", server="eu-west-1"): 1_048_576,
            key("tenantctl_backup_added_bytes", server="us-east-1"): 0,
            key("tenantctl_backup_drill_failed_subscriptions"): 1,
            key("tenantctl_backup_drill_last_timestamp_seconds"): 1_700_020_000,
            key("tenantctl_backup_drill_duration_seconds"): 250.0,
            key("tenantctl_backup_repository_check_ok", region="eu-west"): 1,
            key("tenantctl_backup_repository_check_ok", region="us-east"): 0,
            key("tenantctl_backup_repository_check_timestamp_seconds", region="eu-west"): 1_700_030_000,
            key("tenantctl_backup_repository_check_timestamp_seconds", region="us-east"): 1_700_030_100,
        }

    def test_gauges_with_help(self, m: metrics.Metrics) -> None:
        m.set_backup(figures())
        families = {f.name: f for f in parser.text_string_to_metric_families(m.exposition().decode())
                    if f.name.startswith("tenantctl_backup_")}
        assert len(families) == 10
        assert all(f.type == "gauge" and f.documentation.strip() for f in families.values())

    def test_a_removed_server_drops_its_series(self, m: metrics.Metrics) -> None:
        m.set_backup(figures())
        m.set_backup(figures(
            last_success={("eu-west-1", "eu-west"): 1.8e9, ("eu-west-1", "us-east"): 1.8e9},
            last_duration={("eu-west-1", "eu-west"): 100.0, ("eu-west-1", "us-east"): 20.0},
            failed={"eu-west-1": 0}, added_bytes={"eu-west-1": 2048.0},
        ))
        series = backup_series(m)
        assert not [k for k in series if ("server", "us-east-1") in k[1]]
        assert series[key("tenantctl_backup_last_success_timestamp_seconds", server="eu-west-1",
                          region="eu-west")] == 1.8e9
        assert series[key("tenantctl_backup_added_bytes", server="eu-west-1")] == 2048
        assert len(series) == 2 + 2 + 2 + 1 + 1 + 3 + 2 + 2

    def test_a_removed_region_drops_its_series(self, m: metrics.Metrics) -> None:
        m.set_backup(figures())
        m.set_backup(figures(stale={"eu-west": 0}, repo_ok={"eu-west": True}, repo_checked={"eu-west": 1.8e9},
                             last_success={("eu-west-1", "eu-west"): 1.8e9},
                             last_duration={("eu-west-1", "eu-west"): 1.0}))
        assert not [k for k in backup_series(m) if ("region", "us-east") in k[1]]

    def test_no_drill_yet(self, m: metrics.Metrics) -> None:
        """Never drilled: the last drill reads 0 (RestoreDrillNotRun fires), no duration."""
        m.set_backup(figures(drill_failed=0, drill_last=None, drill_seconds=None))
        series = backup_series(m)
        assert series[key("tenantctl_backup_drill_last_timestamp_seconds")] == 0
        assert series[key("tenantctl_backup_drill_failed_subscriptions")] == 0
        assert key("tenantctl_backup_drill_duration_seconds") not in series

    def test_nothing_before_the_first_figures(self, m: metrics.Metrics) -> None:
        assert backup_series(m) == {}
        assert b"# TYPE tenantctl_backup_" not in m.exposition()

    def test_series_do_not_grow_with_subscriptions(self, m: metrics.Metrics) -> None:
        """100 servers x 3 regions: series from servers and regions only, whatever the
        subscriptions counted in them."""
        servers = [f"web-{i}" for i in range(100)]
        regions = ["eu-west", "us-east", "ap-southeast"]
        pairs = {(s, r): 1.7e9 for s in servers for r in regions}
        m.set_backup(figures(last_success=pairs, last_duration=pairs, stale=dict.fromkeys(regions, 10_000),
                             failed=dict.fromkeys(servers, 100), added_bytes=dict.fromkeys(servers, 1.0),
                             repo_ok=dict.fromkeys(regions, True), repo_checked=dict.fromkeys(regions, 1.7e9)))
        assert len(backup_series(m)) == 2 * 300 + 2 * 100 + 3 * 3 + 3


class TestWorkqueueHook:
    def test_satisfies_the_queue_protocol(self, m: metrics.Metrics) -> None:
        hook: queue.QueueMetrics = m.queue_hook()
        assert hook is m.workqueue
        fake = clock.FakeClock()
        q = queue.WorkQueue[str](clock=fake, metrics=hook)
        q.add("a")
        q.add("a")
        q.add("b")
        assert value(m, "tenantctl_workqueue_depth") == 2
        fake.advance(2)
        q.get(0)
        q.add_rate_limited("a")
        assert value(m, "tenantctl_workqueue_adds_total") == 2
        assert value(m, "tenantctl_workqueue_retries_total") == 1
        assert value(m, "tenantctl_workqueue_depth") == 1
        assert value(m, "tenantctl_workqueue_queue_duration_seconds_sum") == 2
        assert value(m, "tenantctl_workqueue_queue_duration_seconds_bucket", le="1.0") == 0


class TestSubscriptionSummary:
    def test_counts(self, m: metrics.Metrics) -> None:
        m.set_subscription_summary(
            [
                item(sync="synced", concerns={"web": "provisioned", "tls": "failed"}),
                item(sync="unsynced", conflicts=("hosting.php.version",)),
                item(
                    sync="unsynced",
                    state="suspended",
                    reason="nonpayment",
                    conflicts=("hosting.php.version", "ip.type"),
                ),
            ]
        )
        assert value(m, "tenantctl_subscriptions", sync="unsynced") == 2
        assert value(m, "tenantctl_subscriptions", sync="locked") == 0  # documented values always present
        assert value(m, "tenantctl_subscriptions_by_state", state="active", reason="") == 2
        assert value(m, "tenantctl_subscriptions_by_state", state="suspended", reason="nonpayment") == 1
        assert value(m, "tenantctl_subscriptions_by_state", state="suspended", reason="expired") == 0
        assert value(m, "tenantctl_conflicts", property="hosting.php.version") == 2
        assert value(m, "tenantctl_conflicts", property="ip.type") == 1
        assert value(m, "tenantctl_concern_status", concern="tls", status="failed") == 1
        assert value(m, "tenantctl_concern_status", concern="db", status="provisioned") == 0

    def test_recomputed_from_scratch(self, m: metrics.Metrics) -> None:
        m.set_subscription_summary([item(sync="unsynced", conflicts=("hosting.hardQuota",))] * 3)
        m.set_subscription_summary([item(sync="synced")])
        assert value(m, "tenantctl_subscriptions", sync="unsynced") == 0
        assert value(m, "tenantctl_subscriptions", sync="synced") == 1
        assert value(m, "tenantctl_conflicts", property="hosting.hardQuota") is None  # removed

    def test_no_per_subscription_labels(self, m: metrics.Metrics) -> None:
        populated(m, 10_000)
        text = m.exposition().decode()
        assert "s1234.example" not in text
        assert text.count("\ntenantctl_conflicts{") == 2  # one series per property

    def test_missing_fields_do_not_crash(self, m: metrics.Metrics) -> None:
        m.set_subscription_summary([{"name": "x.example"}])
        assert value(m, "tenantctl_subscriptions", sync="unknown") == 1


class TestServe:
    def test_serves_the_private_registry_and_shuts_down(self, m: metrics.Metrics) -> None:
        m.observe_reconcile("success", 0.1)
        server = m.serve("127.0.0.1:0")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
                body = resp.read()
        finally:
            server.shutdown()
        assert b'tenantctl_reconcile_total{result="success"} 1.0' in body
        again = m.serve(f"127.0.0.1:{server.port}")  # the port is free again (restart)
        again.shutdown()

    @pytest.mark.parametrize(
        ("addr", "expected"),
        [
            pytest.param("127.0.0.1:9100", ("127.0.0.1", 9100), id="ipv4"),
            pytest.param("[::1]:9100", ("::1", 9100), id="ipv6"),
            pytest.param(":9100", ("0.0.0.0", 9100), id="all-interfaces"),
            pytest.param("localhost:0", ("localhost", 0), id="ephemeral"),
        ],
    )
    def test_parse_addr(self, addr: str, expected: tuple[str, int]) -> None:
        assert metrics.parse_addr(addr) == expected

    @pytest.mark.parametrize("addr", ["9100", "host:", "host:http"])
    def test_bad_addr(self, addr: str) -> None:
        with pytest.raises(ValueError, match="HOST:PORT"):
            metrics.parse_addr(addr)


def test_overuse_is_counted_by_resource_and_level() -> None:
    """RES-2: the overuse policy shows in metrics, not only in status."""
    m = metrics.Metrics(version="test")
    m.set_subscription_summary([
        {"sync": "synced", "state": "suspended", "stateReason": "overuse", "conflicts": [], "concerns": {},
         "overuse": {"over": ["databaseQuotaMB"], "notify": []}},
        {"sync": "synced", "state": "active", "stateReason": None, "conflicts": [], "concerns": {},
         "overuse": {"over": [], "notify": ["diskMB"]}},
    ])
    text = m.exposition().decode()
    assert 'tenantctl_overuse{level="over",resource="databaseQuotaMB"} 1.0' in text
    assert 'tenantctl_overuse{level="notify",resource="diskMB"} 1.0' in text


def _bench_exposition() -> Any:
    path = Path(__file__).resolve().parent.parent / "bench" / "exposition.py"
    spec = importlib.util.spec_from_file_location("bench_exposition", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_cardinality_budget_holds_at_10000_subscriptions_over_20_servers() -> None:
    """Issue 12 item 6 (README "Metrics"): 2 series per subscription with a certificate
    (+1 while its renewal fails), at most 60 per server, 400 others; nothing else grows
    with the number of subscriptions (bench/exposition.py fills every family)."""
    bench = _bench_exposition()
    big = bench.series(bench.populate(metrics.Metrics(version="t"), 10_000, 20).exposition())
    small = bench.series(bench.populate(metrics.Metrics(version="t"), 100, 20).exposition())
    assert big <= bench.budget(10_000, 20), big
    failing = len(range(0, 10_000, 500)) - len(range(0, 100, 500))
    assert big - small == 2 * (10_000 - 100) + failing
    fewer_servers = bench.series(bench.populate(metrics.Metrics(version="t"), 100, 2).exposition())
    assert 0 < (small - fewer_servers) / 18 <= bench.PER_SERVER
