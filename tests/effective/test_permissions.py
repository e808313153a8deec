"""SYNC-4: a permission that lets the customer manage a setting excludes that setting
from synchronisation. One case per permission -> group pair of domain.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.effective import History
from controller.errors import InputError
from effective.builder import SUB, World, condition, run


@dataclass(frozen=True)
class Pair:
    permission: str
    #: a path in the effective spec that belongs to the group (``php:<directive>`` for PHP)
    path: str
    #: the plan's value at grant time, a later plan edit, and the customer's own value
    plan_value: Any
    plan_edit: Any
    customer_value: Any
    #: customerSettings setting ``path`` to ``customer_value``
    settings: dict[str, Any] = field(default_factory=dict)
    #: extra permissions the pair needs (PHP groups need manageHosting)
    also: tuple[str, ...] = ()


PAIRS = [
    Pair("manageDNS", "dns.mode", "primary", "secondary", "secondary",
         {"dns": {"mode": "secondary", "primaries": ["192.0.2.53"]}}),
    Pair("manageDNS", "dns.primaries", [], ["198.51.100.1"], ["192.0.2.53"],
         {"dns": {"mode": "secondary", "primaries": ["192.0.2.53"]}}),
    Pair("manageHosting", "hosting.ssl", False, True, True, {"hosting": {"ssl": True}}),
    Pair("manageHosting", "hosting.httpsOnly", False, True, True, {"hosting": {"httpsOnly": True}}),
    Pair("manageHosting", "hosting.errorDocuments", True, False, False, {"hosting": {"errorDocuments": False}}),
    Pair("manageHosting", "hosting.php.version", "8.2", "8.3", "8.3", {"hosting": {"php": {"version": "8.3"}}}),
    Pair("manageHosting", "hosting.php.handler", "fpm", "cgi", "cgi", {"hosting": {"php": {"handler": "cgi"}}}),
    Pair("managePHPCommon", "php:display_errors", "off", "on", "stderr", {"php": {"display_errors": "stderr"}},
         ("manageHosting",)),
    Pair("managePHPPerformance", "php:memory_limit", "128M", "64M", "256M", {"php": {"memory_limit": "256M"}},
         ("manageHosting",)),
    Pair("manageSSH", "hosting.ssh", False, True, True, {"hosting": {"ssh": True}}),
    Pair("manageWebStats", "hosting.webStats", False, True, True, {"hosting": {"webStats": True}}),
    Pair("manageLogRotation", "logs.rotate", "daily", "monthly", "weekly", {"logs": {"rotate": "weekly"}}),
    Pair("manageLogRotation", "logs.retainMonths", 3, 1, 12, {"logs": {"retainMonths": 12}}),
    Pair("manageLogRotation", "logs.compress", True, False, False, {"logs": {"compress": False}}),
    Pair("manageMailingLists", "mail.mailingLists", False, True, True, {"mail": {"mailingLists": True}}),
    Pair("managePerformance", "performance.maxConnections", 100, 10, 200,
         {"performance": {"maxConnections": 200}}),
    Pair("managePerformance", "performance.bandwidthKBps", 1000, 10, "unlimited",
         {"performance": {"bandwidthKBps": "unlimited"}}),
    Pair("manageHardQuota", "hosting.hardQuota", False, True, True, {"hosting": {"hardQuota": True}}),
]


def _id(p: Pair) -> str:
    return f"SYNC-4-{p.permission}-{p.path}"


def _set(plan: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith("php:"):
        plan.setdefault("hosting", {}).setdefault("php", {}).setdefault("settings", {})[path[4:]] = value
        return
    *parents, leaf = path.split(".")
    node = plan
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _get(item: dict[str, Any], path: str) -> Any:
    eff = item["effective"]
    if path.startswith("php:"):
        return eff["hosting"]["php"]["settings"].get(path[4:])
    node = eff
    for p in path.split("."):
        node = node[p]
    return node


def _world(pair: Pair, granted: bool, customer: bool) -> World:
    w = World()
    plan = w.plans["basic"]
    _set(plan, pair.path, pair.plan_value)
    if pair.path.startswith("performance."):
        plan["performance"] = {"maxConnections": 100, "bandwidthKBps": 1000}
    plan["permissions"] = {p: granted for p in (pair.permission, *pair.also)}
    w.sub(customerSettings=pair.settings if customer else {})
    return w


@pytest.mark.parametrize("pair", [pytest.param(p, id=_id(p)) for p in PAIRS])
def test_SYNC_4_customer_value_applies_and_survives_plan_edits(pair: Pair) -> None:
    w = _world(pair, granted=True, customer=True)
    out, hist = run(w)
    assert _get(out[SUB].item, pair.path) == pair.customer_value
    assert pair.permission in out[SUB].changes.sticky_set  # recorded on grant
    assert condition(out[SUB].item, "CustomerSettingsApplied") is None
    _set(w.plans["basic"], pair.path, pair.plan_edit)
    out, hist = run(w, hist)
    assert _get(out[SUB].item, pair.path) == pair.customer_value
    assert pair.permission not in out[SUB].changes.sticky_set  # already recorded


@pytest.mark.parametrize("pair", [pytest.param(p, id=_id(p)) for p in PAIRS])
def test_SYNC_4_value_at_grant_time_is_kept_when_the_customer_set_nothing(pair: Pair) -> None:
    w = _world(pair, granted=True, customer=False)
    out, hist = run(w)
    recorded = out[SUB].changes.sticky_set[pair.permission]
    assert recorded[pair.path] == pair.plan_value
    assert hist.sticky[SUB][pair.permission] == recorded
    _set(w.plans["basic"], pair.path, pair.plan_edit)
    assert _get(w.item(history=hist), pair.path) == pair.plan_value
    # the first computation, without the sticky record, would have followed the plan
    assert _get(w.item(), pair.path) == pair.plan_edit


@pytest.mark.parametrize("pair", [pytest.param(p, id=_id(p)) for p in PAIRS])
def test_SYNC_4_setting_without_permission_is_ignored_with_a_condition(pair: Pair) -> None:
    w = _world(pair, granted=False, customer=True)
    out = w.compute()
    item = out[SUB].item
    assert _get(item, pair.path) == pair.plan_value
    cond = condition(item, "CustomerSettingsApplied")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "PermissionMissing")
    assert pair.path in cond["message"]
    assert pair.permission not in out[SUB].changes.sticky_set
    _set(w.plans["basic"], pair.path, pair.plan_edit)  # and the setting stays synced
    assert _get(w.item(), pair.path) == pair.plan_edit


@pytest.mark.parametrize("pair", [pytest.param(p, id=_id(p)) for p in PAIRS])
def test_SYNC_4_revoking_drops_the_sticky_record(pair: Pair) -> None:
    w = _world(pair, granted=True, customer=True)
    _, hist = run(w)
    _set(w.plans["basic"], pair.path, pair.plan_edit)
    w.plans["basic"]["permissions"][pair.permission] = False
    out, hist = run(w, hist)
    assert pair.permission in out[SUB].changes.sticky_drop
    assert pair.permission not in hist.sticky[SUB]
    assert _get(out[SUB].item, pair.path) == pair.plan_edit  # synced again
    assert condition(out[SUB].item, "CustomerSettingsApplied") is not None
    # granting again records the plan's value of that time
    w.plans["basic"]["permissions"][pair.permission] = True
    out, _ = run(w, hist)
    assert out[SUB].changes.sticky_set[pair.permission][pair.path] == pair.plan_edit


def test_SYNC_4_permission_granted_by_an_addon(world: World) -> None:
    world.addons["ssh"] = {"permissions": {"manageSSH": True}}
    world.sub(customerSettings={"hosting": {"ssh": True}})
    assert world.item()["effective"]["hosting"]["ssh"] is False
    world.subs[SUB]["addons"] = ["ssh"]
    assert world.item()["effective"]["hosting"]["ssh"] is True


def test_SYNC_4_php_group_permission_covers_its_group_only(world: World) -> None:
    world.plans["basic"]["permissions"] = {"manageHosting": True, "managePHPPerformance": True}
    world.plans["basic"]["hosting"]["php"]["settings"] = {"memory_limit": "128M", "display_errors": "off"}
    world.sub(customerSettings={"php": {"memory_limit": "256M", "display_errors": "on"}})
    out, hist = run(world)
    settings = out[SUB].item["effective"]["hosting"]["php"]["settings"]
    assert settings == {"memory_limit": "256M", "display_errors": "off"}
    cond = condition(out[SUB].item, "CustomerSettingsApplied")
    assert cond is not None and "php:display_errors" in cond["message"]
    world.plans["basic"]["hosting"]["php"]["settings"] = {"memory_limit": "64M", "display_errors": "stderr",
                                                          "max_execution_time": 99}
    settings = world.item(history=hist)["effective"]["hosting"]["php"]["settings"]
    # performance directives are the customer's (a new one from the plan is not synced either)
    assert settings == {"memory_limit": "256M", "display_errors": "stderr"}


@pytest.mark.parametrize("perm", [
    pytest.param("managePHPCommon", id="SYNC-4-managePHPCommon-needs-manageHosting-in-plan"),
    pytest.param("managePHPPerformance", id="SYNC-4-managePHPPerformance-needs-manageHosting-in-plan"),
])
def test_SYNC_4_php_permission_without_manage_hosting_is_rejected_in_a_plan(world: World, perm: str) -> None:
    world.plans["basic"]["permissions"] = {perm: True}
    world.sub()
    with pytest.raises(InputError) as exc:
        world.load()
    assert any("SYNC-4" in str(i) for i in exc.value.issues)


@pytest.mark.parametrize("perm,directive,value", [
    pytest.param("managePHPCommon", "display_errors", "on", id="SYNC-4-managePHPCommon-via-addon-not-granted"),
    pytest.param("managePHPPerformance", "memory_limit", "1G",
                 id="SYNC-4-managePHPPerformance-via-addon-not-granted"),
])
def test_SYNC_4_php_permission_from_an_addon_without_manage_hosting(
    world: World, perm: str, directive: str, value: str
) -> None:
    world.addons["php"] = {"permissions": {perm: True}}
    world.sub(addons=["php"], customerSettings={"php": {directive: value}})
    out = world.compute()
    item = out[SUB].item
    assert item["effective"]["permissions"][perm] is False
    assert item["effective"]["hosting"]["php"]["settings"].get(directive) != value
    assert perm not in out[SUB].changes.sticky_set
    assert condition(item, "CustomerSettingsApplied") is not None
    # with manageHosting from the plan, the add-on's grant counts
    world.plans["basic"]["permissions"] = {"manageHosting": True}
    assert world.item()["effective"]["hosting"]["php"]["settings"][directive] == value


def test_SYNC_4_customer_settings_do_not_mark_unsynced_or_locked(world: World) -> None:
    world.plans["basic"]["permissions"] = {"manageSSH": True}
    world.sub(customerSettings={"hosting": {"ssh": True}})
    assert world.item()["sync"] == "synced"


def test_SYNC_4_customer_php_version_the_server_lacks_is_a_conflict(world: World) -> None:
    world.plans["basic"]["permissions"] = {"manageHosting": True}
    world.sub(customerSettings={"hosting": {"php": {"version": "7.4"}}})
    item = world.item(history=History())
    assert item["sync"] == "unsynced"
    assert item["conflicts"] == [{"property": "hosting.php.version", "planValue": "7.4", "availableValue": "8.3"}]
