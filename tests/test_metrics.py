"""controller.metrics: names, summary gauges, the queue hook, exposition and serving.

``promtool check metrics`` must pass on the exposition. promtool comes from the Debian
package ``prometheus``; the test fails (it does not skip) when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from typing import Any

import prometheus_client
import pytest

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
