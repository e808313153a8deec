"""Sandboxes (issue 13 item 4): test copies (PLAT-2) take their source's plan and
settings at half its resources, demos (PLAT-3) keep their own plan; both are marked and
have no backups. The documents' new fields are checked with a field path."""

from __future__ import annotations

from typing import Any

import pytest

from controller.effective import sandbox
from controller.errors import InputError
from effective.builder import SUB, SUB2, World

COPY = "mermoz.example.org.test"
DEMO = "demo.example.org"


def _issues(world: World) -> list[str]:
    with pytest.raises(InputError) as exc:
        world.load()
    return [str(i) for i in exc.value.issues]


@pytest.fixture
def rich(world: World) -> World:
    world.plans["gold"] = {
        "resources": {"diskMB": 2001, "trafficMBPerMonth": "unlimited", "databases": 3, "databaseQuotaMB": 500,
                      "mailboxes": 7},
        "performance": {"maxConnections": 40, "bandwidthKBps": 1000},
        "hosting": {"php": {"version": "8.3", "handler": "fpm", "settings": {"memory_limit": "256M"}}},
        "backup": {"keepDaily": 20},
    }
    world.addons["boost"] = {"resources": {"databases": 1}}
    world.sub(SUB, plan="gold", addons=["boost"], databases=[{"name": "app", "engine": "mariadb"}])
    return world


def test_a_test_copy_takes_its_sources_plan_at_half_its_resources(rich: World) -> None:
    rich.sub(COPY, plan="basic", copyOf=SUB, databases=[{"name": "app", "engine": "mariadb"}])
    out = rich.compute()
    src, cp = out[SUB].item, out[COPY].item
    assert (cp["plan"], cp["addons"]) == ("gold", ["boost"])
    r, s = cp["effective"]["resources"], src["effective"]["resources"]
    assert (s["diskMB"], r["diskMB"]) == (2001, 1000)
    assert (r["trafficMBPerMonth"], r["databaseQuotaMB"]) == ("unlimited", 250)
    assert (r["databases"], r["mailboxes"]) == (s["databases"], s["mailboxes"]) == (4, 7)  # counts kept
    assert cp["effective"]["performance"] == {"maxConnections": 20, "bandwidthKBps": 500}
    assert cp["effective"]["hosting"]["php"]["version"] == "8.3"
    assert cp["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "128M"
    assert src["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "256M"
    assert cp["effective"]["sandbox"] == {"kind": "copy", "source": SUB}
    assert cp["effective"]["backup"]["content"] == "none" and cp["effective"]["permissions"]["backups"] is False
    assert "sandbox" not in src["effective"] and src["effective"]["backup"]["content"] == "settingsAndData"


def test_a_demo_keeps_its_own_plan_without_backups(rich: World) -> None:
    rich.sub(DEMO, demo={"resetFrom": SUB})
    item = rich.item(DEMO)
    assert item["plan"] == "basic" and item["effective"]["resources"]["diskMB"] == 1000
    assert item["effective"]["sandbox"] == {"kind": "demo", "source": SUB, "schedule": "44 * * * *"}
    assert item["effective"]["backup"]["content"] == "none"


@pytest.mark.parametrize(("value", "want"), [
    pytest.param(1000, 500, id="even"), pytest.param(7, 3, id="odd-down"), pytest.param(1, 1, id="at-least-1"),
    pytest.param(0, 0, id="zero"), pytest.param("unlimited", "unlimited", id="unlimited"),
    pytest.param(True, True, id="bool-untouched")])
def test_half_of_a_limit(value: Any, want: Any) -> None:
    assert sandbox.half(value) == want


@pytest.mark.parametrize(("value", "want"), [
    pytest.param("256M", "128M", id="mega"), pytest.param("1G", "512M", id="odd-giga"),
    pytest.param("3M", "1536K", id="odd-mega"), pytest.param("-1", "-1", id="unlimited"),
    pytest.param("1024", "512", id="bytes"), pytest.param("lots", "lots", id="not-a-size")])
def test_half_of_a_php_size(value: str, want: str) -> None:
    assert sandbox.half_size(value) == want


@pytest.mark.parametrize(("spec", "path", "expected"), [
    pytest.param({"demo": {"resetFrom": "not a domain"}}, "spec.demo.resetFrom",
                 "expected a subscription (its domain) or snapshot:<id>", id="bad-reference"),
    pytest.param({"demo": {"resetFrom": "snapshot:xyz"}}, "spec.demo.resetFrom",
                 "expected snapshot:<id>", id="bad-snapshot-id"),
    pytest.param({"demo": {"resetFrom": SUB, "schedule": "at 44"}}, "spec.demo.schedule",
                 "expected a cron expression", id="bad-schedule"),
    pytest.param({"demo": {"schedule": "44 * * * *"}}, "spec.demo.resetFrom", "", id="reference-missing"),
    pytest.param({"copyOf": "not_a_domain"}, "spec.copyOf", "expected a domain name", id="bad-copy-source"),
    pytest.param({"copyOf": SUB, "demo": {"resetFrom": SUB}}, "spec", "demo and copyOf exclude each other",
                 id="both"),
])
def test_sandbox_fields_are_checked_with_their_path(world: World, spec: dict[str, Any], path: str,
                                                    expected: str) -> None:
    world.sub(SUB)
    world.sub(SUB2, **spec)
    issues = [i for i in _issues(world) if SUB2 in i or path in i]
    assert any(path in i and expected in i for i in issues), issues


def test_a_pinned_snapshot_and_a_schedule_are_valid(world: World) -> None:
    world.sub(DEMO, demo={"resetFrom": "snapshot:0123abcd", "schedule": "*/30 * * * *"})
    spec = world.load().subscriptions[DEMO]
    assert spec.demo is not None and (spec.demo.resetFrom, spec.demo.schedule) == ("snapshot:0123abcd", "*/30 * * * *")


@pytest.mark.parametrize(("spec", "message"), [
    pytest.param({"copyOf": "nosuch.example.org"}, "spec.copyOf: no subscription 'nosuch.example.org'",
                 id="unknown-copy-source"),
    pytest.param({"copyOf": COPY}, "a test copy of itself", id="copy-of-itself"),
    pytest.param({"copyOf": "first.example.org.test"}, "is a test copy itself", id="copy-of-a-copy"),
    pytest.param({"demo": {"resetFrom": "nosuch.example.org"}}, "spec.demo.resetFrom: no subscription",
                 id="unknown-reference"),
])
def test_a_sandbox_of_an_unknown_source_says_so(rich: World, spec: dict[str, Any], message: str) -> None:
    rich.sub("first.example.org.test", copyOf=SUB)
    rich.sub(COPY, **spec)
    cond = next(c for c in rich.item(COPY)["conditions"] if c["type"] == "Sandbox")
    assert cond["status"] == "False" and cond["reason"] == "UnknownSource" and message in cond["message"]


def test_a_demo_pinned_to_a_snapshot_and_a_known_copy_have_no_sandbox_condition(rich: World) -> None:
    rich.sub(DEMO, demo={"resetFrom": "snapshot:0123abcd"})
    rich.sub(COPY, copyOf=SUB)
    out = rich.compute()
    assert not [c for n in (DEMO, COPY) for c in out[n].item["conditions"] if c["type"] == "Sandbox"]
