"""The bundled example (``examples/``, what ``make run`` applies) validates and shows
every state the product knows, through the real CLI's ``plan -o json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .cli_run import EXAMPLES, Result, run_cli

Sub = dict[str, Any]

EXAMPLE_SUFFIXES = (".example.org", ".example.com", ".example.net", ".test")
DEDICATED = {"127.0.10.2", "127.0.11.2"}


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sub]:
    r = run_cli(["plan", "-f", "examples/", "-o", "json"], tmp_path_factory.mktemp("state"))
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {"subscriptions"}
    return {s["name"]: s for s in doc["subscriptions"]}


def conflicts(s: Sub) -> dict[str, tuple[Any, Any]]:
    return {c["property"]: (c["planValue"], c["availableValue"]) for c in s["conflicts"]}


def test_files_are_split_by_kind() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert names == ["addons.yaml", "customers.yaml", "plans.yaml", "regions-servers.yaml", "subscriptions.yaml"]


def test_examples_validate(tmp_path: Path) -> None:
    r: Result = run_cli(["validate", "-f", "examples/"], tmp_path)
    assert r.code == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.strip() == (
        "valid: 3 Region, 5 Server, 5 ServicePlan, 3 AddOnPlan, 5 Customer, 14 Subscription"
    )


def test_fourteen_placed_subscriptions_with_contract_fields(plan: dict[str, Sub]) -> None:
    assert len(plan) == 14
    for s in plan.values():
        assert {"name", "customer", "plan", "addons", "region", "server", "ip", "state", "stateReason", "sync",
                "conflicts", "conditions", "effective"} <= set(s)
        assert set(s["effective"]) >= {"resources", "permissions", "hosting", "dns", "performance", "logs", "backup"}
        assert s["server"] is not None and s["ip"] is not None, s["name"]
        region_prefix = {"eu-west": "eu-west-", "us-east": "us-east-", "ap-southeast": "ap-southeast-"}[s["region"]]
        assert s["server"].startswith(region_prefix)


def test_every_sync_state_is_shown(plan: dict[str, Sub]) -> None:
    by_sync = {name: s["sync"] for name, s in plan.items()}
    assert set(by_sync.values()) == {"synced", "locked", "unsynced", "custom"}
    assert by_sync["mermoz.example.org"] == "synced"
    assert by_sync["locked.example.org"] == "locked"
    assert by_sync["legacy.example.net"] == "unsynced"
    assert by_sync["lab.bleriot.test"] == "custom"
    assert plan["lab.bleriot.test"]["plan"] is None


def test_locked_keeps_its_customisation(plan: dict[str, Sub]) -> None:  # SYNC-2
    res = plan["locked.example.org"]["effective"]["resources"]
    assert res["databases"] == 10 and res["diskMB"] == 20480
    assert res["mailboxes"] == 50  # the rest still comes from the business plan


def test_legacy_plan_runs_with_available_values(plan: dict[str, Sub]) -> None:  # SYNC-3, PHP-4, RES-3
    s = plan["legacy.example.net"]
    assert conflicts(s) == {"hosting.php.version": ("7.4", "8.2"), "hosting.hardQuota": (True, False)}
    assert s["effective"]["hosting"]["php"]["version"] == "8.2"
    assert s["effective"]["hosting"]["hardQuota"] is False


def test_only_the_legacy_plan_and_php_84_on_bookworm_have_conflicts(plan: dict[str, Sub]) -> None:
    # zephyr: the modern plan (PHP 8.4) in a region of bookworm servers (PHP 8.2), issue 13
    assert [n for n, s in plan.items() if s["conflicts"]] == ["legacy.example.net", "zephyr.example.org"]


@pytest.mark.parametrize(
    ("name", "state", "reason"),
    [
        pytest.param("expired.example.com", "suspended", "expired", id="expired-LIFE-3"),
        pytest.param("latecoere.example.org", "suspended", "customer", id="customer-suspended-LIFE-4"),
        pytest.param("paused.example.org", "suspended", "nonpayment", id="manual-nonpayment"),
        pytest.param("mermoz.example.org", "active", None, id="active"),
        pytest.param("hangar.example.com", "active", None, id="expires-in-future"),
    ],
)
def test_lifecycle_states(plan: dict[str, Sub], name: str, state: str, reason: str | None) -> None:
    assert (plan[name]["state"], plan[name]["stateReason"]) == (state, reason)


def test_idn_domain_is_shown_as_punycode(plan: dict[str, Sub]) -> None:
    assert "xn--mnchen-flug-thb.de" in plan
    assert not [n for n in plan if not n.isascii()]


def test_domains_are_example_domains(plan: dict[str, Sub]) -> None:
    for name, s in plan.items():
        names = [name] + [site["name"] for site in s["effective"]["sites"]]
        for n in names:
            assert n.endswith(EXAMPLE_SUFFIXES) or n.startswith("xn--"), n


def test_dedicated_ip_serves_one_subscription(plan: dict[str, Sub]) -> None:
    s = plan["hangar.example.com"]
    assert s["ip"] in DEDICATED
    assert [n for n, t in plan.items() if t["ip"] == s["ip"]] == ["hangar.example.com"]
    assert not [n for n, t in plan.items() if n != "hangar.example.com" and t["ip"] in DEDICATED]


def test_mail_only_subscription(plan: dict[str, Sub]) -> None:  # HOST-1
    eff = plan["post.example.net"]["effective"]
    assert eff["hosting"]["enabled"] is False
    assert eff["mail"]["enabled"] is True
    others = [n for n, s in plan.items() if s["effective"]["hosting"]["enabled"] is False]
    assert others == ["post.example.net"]


def test_databases_of_both_engines_have_a_server(plan: dict[str, Sub]) -> None:
    dbs = [(n, d) for n, s in plan.items() for d in s["effective"]["databases"]]
    assert {d["engine"] for _, d in dbs} == {"mariadb", "postgresql"}
    assert all(d["server"] is not None for _, d in dbs)
    # eu-west-2 has no PostgreSQL role: the database goes to a server of the region that has it.
    hangar = {d["name"]: d["server"] for d in plan["hangar.example.com"]["effective"]["databases"]}
    assert hangar["hangar_stats"] == "eu-west-1"


def test_sites_subdomain_with_own_php_and_alias(plan: dict[str, Sub]) -> None:  # PHP-2
    s = plan["mermoz.example.org"]
    sites = {site["name"]: site for site in s["effective"]["sites"]}
    assert set(sites) == {"blog.mermoz.example.org", "mermoz.example.net"}
    assert sites["blog.mermoz.example.org"]["type"] == "subdomain"
    assert sites["mermoz.example.net"]["type"] == "alias"
    blog = sites["blog.mermoz.example.org"]["php"]["settings"]
    assert blog["memory_limit"] == "64M" and blog["max_execution_time"] == "15"
    main = s["effective"]["hosting"]["php"]["settings"]
    assert main["memory_limit"] == "512M"  # the php-boost add-on over the business plan (PLAN-3)
    assert sites["mermoz.example.net"]["php"]["settings"]["memory_limit"] == "512M"


def test_customer_settings_under_granted_permission(plan: dict[str, Sub]) -> None:  # SYNC-4
    s = plan["saint-ex.example.net"]
    eff = s["effective"]
    assert eff["permissions"]["manageDNS"] and eff["permissions"]["managePHPPerformance"]
    assert eff["hosting"]["php"]["settings"]["memory_limit"] == "256M"
    assert eff["dns"]["mode"] == "secondary" and eff["dns"]["primaries"] == ["192.0.2.53"]
    assert eff["hosting"]["httpsOnly"] is True  # TLS-2 from the pro plan
    # display_errors is a PHP common setting; managePHPCommon is not granted: ignored.
    assert "display_errors" not in eff["hosting"]["php"]["settings"]
    ignored = [c for c in s["conditions"] if c["type"] == "CustomerSettingsApplied"]
    assert ignored and ignored[0]["status"] == "False" and "php:display_errors" in ignored[0]["message"]


def test_https_option_sells_ssl_on_top_of_starter(plan: dict[str, Sub]) -> None:  # TLS-1
    assert plan["shop.example.com"]["addons"] == ["https-option"]
    assert plan["shop.example.com"]["effective"]["hosting"]["ssl"] is True
    assert plan["xn--mnchen-flug-thb.de"]["plan"] == "starter"
    assert plan["xn--mnchen-flug-thb.de"]["effective"]["hosting"]["ssl"] is False


def test_every_region_is_used(plan: dict[str, Sub]) -> None:
    assert {s["region"] for s in plan.values()} == {"eu-west", "us-east", "ap-southeast"}
    assert {s["server"] for s in plan.values()} <= {"eu-west-1", "eu-west-2", "us-east-1", "ap-southeast-2"}
