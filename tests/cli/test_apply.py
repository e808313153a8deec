"""End-to-end: validate/plan/apply/status/effective/sync through the real CLI.

Drivers are not provisioned yet for any concern, so apply reports them so: these tests
are about the core (decisions, state store, idempotence), not about servers.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from .conftest import NOW, Cli

CONTRACT_KEYS = {"name", "customer", "plan", "addons", "region", "server", "ip", "state", "stateReason", "sync",
                 "conflicts", "conditions", "effective"}
EFFECTIVE_GROUPS = {"resources", "permissions", "hosting", "dns", "performance", "logs", "backup"}


def events(cli: Cli) -> list[tuple[str, str]]:
    with sqlite3.connect(cli.state / "state.db") as db:
        return list(db.execute("SELECT action, subject FROM events ORDER BY id"))


def test_apply_then_status_has_the_contract_fields(cli: Cli) -> None:
    cli.apply()
    status = cli.status()
    assert len(status) == 14
    for item in status.values():
        assert set(item) >= CONTRACT_KEYS, item["name"]
        assert set(item["effective"]) >= EFFECTIVE_GROUPS
        assert set(item["concerns"]) == {"web", "php", "db", "dns", "tls", "backup"}
        # no driver exists yet: status says so, it does not pretend
        assert set(item["concerns"].values()) == {"not provisioned"}
        assert item["dnsServers"] == []


def test_plan_detailed_exitcode_before_and_after_apply(cli: Cli) -> None:
    assert cli("plan", "-f", str(cli.desired), "--detailed-exitcode", check=2).rc == 2
    cli.apply()
    cli("plan", "-f", str(cli.desired), "--detailed-exitcode", check=0)
    (cli.desired / "broken.yaml").write_text("apiVersion: tenantctl.io/v1\nkind: Nope\n")
    res = cli("plan", "-f", str(cli.desired), "--detailed-exitcode", check=1)
    assert "broken.yaml:2: kind" in res.err


def test_second_apply_is_a_noop(cli: Cli) -> None:
    cli.apply()
    before_events = events(cli)
    before_status = cli("status", "-o", "json").out
    plan = cli.plan()
    assert all(item["actions"] == [] for item in plan.values())
    cli.apply()
    assert events(cli) == before_events
    assert cli("status", "-o", "json").out == before_status


def test_creates_are_recorded_once_with_their_placement(cli: Cli) -> None:
    cli.apply()
    cli.apply()
    creates = [s for a, s in events(cli) if a == "create"]
    assert len(creates) == len(set(creates)) == 14
    places = [s for a, s in events(cli) if a == "place"]
    assert sorted(places) == sorted(creates)


def test_SYNC_1_plan_edit_reaches_synced_not_locked(cli: Cli) -> None:
    cli.apply()
    cli.edit("plans.yaml", "settings: {memory_limit: 256M, max_execution_time: 60",
             "settings: {memory_limit: 384M, max_execution_time: 60")
    plan = cli.plan()
    assert "update:php" in plan["hangar.example.com"]["actions"]
    assert plan["locked.example.org"]["actions"] == []
    cli.apply()
    status = cli.status()
    assert status["hangar.example.com"]["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "384M"
    assert status["locked.example.org"]["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "256M"
    assert status["locked.example.org"]["sync"] == "locked"


def test_SYNC_2_unlock_resyncs_with_the_plan(cli: Cli) -> None:
    cli.apply()
    cli.edit("plans.yaml", "settings: {memory_limit: 256M, max_execution_time: 60",
             "settings: {memory_limit: 384M, max_execution_time: 60")
    cli.apply()
    cli.edit("subscriptions.yaml", "  customizations:\n    resources: {databases: 10, diskMB: 20480}\n", "")
    cli.apply()
    locked = cli.status()["locked.example.org"]
    assert locked["sync"] == "synced"
    assert locked["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "384M"
    assert locked["effective"]["resources"]["databases"] == 5


def test_PLAN_7_transfer_makes_custom_and_sync_reattaches(cli: Cli) -> None:
    cli.apply()
    cli.edit("subscriptions.yaml", "metadata: {name: hangar.example.com}\nspec:\n  customer: saint-ex",
             "metadata: {name: hangar.example.com}\nspec:\n  customer: aeropostale")
    cli.apply()
    hangar = cli.status()["hangar.example.com"]
    assert hangar["sync"] == "custom" and hangar["customer"] == "aeropostale"
    assert ("transfer", "hangar.example.com") in events(cli)
    before = hangar["effective"]
    cli.edit("plans.yaml", "settings: {memory_limit: 256M, max_execution_time: 60",
             "settings: {memory_limit: 384M, max_execution_time: 60")
    cli.apply()
    assert cli.status()["hangar.example.com"]["effective"] == before  # detached from its plan
    cli("sync", "hangar.example.com")
    cli.apply()
    hangar = cli.status()["hangar.example.com"]
    assert hangar["sync"] == "synced"
    assert hangar["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "384M"


def test_LIFE_6_deletion_is_retained_60_days(cli: Cli) -> None:
    cli.apply()
    text = (cli.desired / "subscriptions.yaml").read_text()
    start = text.index("# Suspended by the operator for non-payment")
    end = text.index("---", start) + 4
    (cli.desired / "subscriptions.yaml").write_text(text[:start] + text[end:])
    plan = cli("plan", "-f", str(cli.desired), "-o", "json").json()
    assert plan["deletions"] == ["paused.example.org"]
    cli.apply()
    gone = cli.status()["paused.example.org"]
    assert gone["state"] == "deleted"
    now = dt.datetime.fromisoformat(NOW)
    assert dt.datetime.fromisoformat(gone["purgeAfter"]) == now + dt.timedelta(days=60)
    assert ("delete", "paused.example.org") in events(cli)
    cli("plan", "-f", str(cli.desired), "--detailed-exitcode", check=0)


def test_invalid_input_applies_nothing(cli: Cli) -> None:
    cli.edit("subscriptions.yaml", "addons: [php-boost]", "addons: [php-boost, php-boost]")
    res = cli.apply(check=2)
    assert "subscriptions.yaml:" in res.err and "listed twice (PLAN-2)" in res.err
    assert not (cli.state / "state.db").exists()


def test_effective_reads_the_store_and_knows_unknown_names(cli: Cli) -> None:
    cli("effective", "hangar.example.com", check=2)
    cli.apply()
    eff = cli("effective", "hangar.example.com").json()
    assert eff["name"] == "hangar.example.com" and set(eff) >= EFFECTIVE_GROUPS
    assert cli("effective", "münchen-flug.de").json()["name"] == "xn--mnchen-flug-thb.de"
    cli("effective", "nope.example.org", check=2)
    from_files = cli("effective", "hangar.example.com", "-f", str(cli.desired)).json()
    assert from_files["effective"] == eff["effective"]


def test_LIFE_6_final_copies_are_purged_after_the_retention(cli: Cli) -> None:
    cli.apply()
    text = (cli.desired / "subscriptions.yaml").read_text()
    start = text.index("# Suspended by the operator for non-payment")
    end = text.index("---", start) + 4
    (cli.desired / "subscriptions.yaml").write_text(text[:start] + text[end:])
    cli.apply()
    kept = cli.state / "retained" / "paused.example.org"
    kept.mkdir(parents=True)
    (kept / "final-web.tar.gz").write_bytes(b"final copy")
    other = cli.state / "retained" / "hangar.example.com"
    other.mkdir(parents=True)
    cli.env["TENANTCTL_NOW"] = (dt.datetime.fromisoformat(NOW) + dt.timedelta(days=59)).isoformat()
    cli.apply(check=None)
    assert kept.exists(), "purged before the retention period was over"
    cli.env["TENANTCTL_NOW"] = (dt.datetime.fromisoformat(NOW) + dt.timedelta(days=61)).isoformat()
    cli.apply(check=None)
    assert not kept.exists() and other.exists()
    assert ("purge", "paused.example.org") in events(cli)
    assert cli.status()["paused.example.org"]["purgeAfter"] is None


def test_urls_lists_every_site_on_its_ip(cli: Cli) -> None:
    cli.apply()
    lines = cli("urls").out.splitlines()
    assert "http://blog.mermoz.example.org/  curl --resolve blog.mermoz.example.org:80:127.0.10.1 " \
           "http://blog.mermoz.example.org/" in lines
    assert not any("post.example.net" in line for line in lines)  # mail-only: no web site (HOST-1)
