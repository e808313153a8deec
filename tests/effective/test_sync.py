"""Synchronisation states SYNC-1, SYNC-2, SYNC-3 and SYNC-5 (domain.md section 3).

SYNC-4 (permission groups) is in ``test_permissions.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.effective.history import LOCK
from effective.builder import SUB, SUB2, World, conflict, run, server_spec

# --- SYNC-1: synced ----------------------------------------------------------------


def test_SYNC_1_synced_is_the_default(world: World) -> None:
    world.sub()
    item = world.item()
    assert item["sync"] == "synced"
    assert item["conflicts"] == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("resources", "diskMB"), 77, id="SYNC-1-resources"),
        pytest.param(("permissions", "manageSSH"), True, id="SYNC-1-permissions"),
        pytest.param(("hosting", "ssl"), True, id="SYNC-1-hosting"),
        pytest.param(("hosting", "php", "version"), "8.3", id="SYNC-1-php-version"),
        pytest.param(("logs", "retainMonths"), 12, id="SYNC-1-logs"),
        pytest.param(("backup", "keepDaily"), 30, id="SYNC-1-backup"),
    ],
)
def test_SYNC_1_plan_edit_is_recomputed(world: World, path: tuple[str, ...], value: Any) -> None:
    world.sub()
    _, hist = run(world)
    node = world.plans["basic"]
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value
    out, _ = run(world, hist)
    got: Any = out[SUB].item["effective"]
    for p in path:
        got = got[p]
    assert got == value
    assert out[SUB].item["sync"] == "synced"


def test_SYNC_1_addon_edit_is_recomputed(world: World) -> None:
    world.addons["extra"] = {"resources": {"databases": 2}}
    world.sub(addons=["extra"])
    _, hist = run(world)
    world.addons["extra"]["resources"]["databases"] = 5
    assert world.item(history=hist)["effective"]["resources"]["databases"] == 6


# --- SYNC-2: locked ----------------------------------------------------------------


def _locked(world: World) -> World:
    world.sub(customizations={"resources": {"databases": 10}, "permissions": {"manageSSH": True}})
    return world


def test_SYNC_2_customisation_locks_and_records_the_plan_spec(world: World) -> None:
    out = _locked(world).compute()
    item = out[SUB].item
    assert item["sync"] == "locked"
    assert item["effective"]["resources"]["databases"] == 10
    assert item["effective"]["permissions"]["manageSSH"] is True
    lock = out[SUB].changes.sticky_set[LOCK]
    assert lock["resources"]["databases"] == 1  # the plan-derived spec, before customisation
    assert lock["resources"]["diskMB"] == 1000


def test_SYNC_2_locked_ignores_plan_edits(world: World) -> None:
    _, hist = run(_locked(world))
    assert LOCK in hist.sticky[SUB]
    world.plans["basic"]["resources"].update(diskMB=1, databases=50)
    world.plans["basic"]["hosting"]["php"]["settings"]["memory_limit"] = "1G"
    out, hist = run(world, hist)
    item = out[SUB].item
    assert item["sync"] == "locked"
    assert item["effective"]["resources"]["diskMB"] == 1000
    assert item["effective"]["resources"]["databases"] == 10
    assert item["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "128M"
    assert not out[SUB].changes  # nothing new to record


def test_SYNC_2_locked_ignores_addon_edits(world: World) -> None:
    world.addons["extra"] = {"resources": {"mailboxes": 5}}
    _locked(world).subs[SUB]["addons"] = ["extra"]
    _, hist = run(world)
    world.addons["extra"]["resources"]["mailboxes"] = 500
    assert world.item(history=hist)["effective"]["resources"]["mailboxes"] == 10


def test_SYNC_2_changing_the_customisation_keeps_the_lock_base(world: World) -> None:
    _, hist = run(_locked(world))
    world.plans["basic"]["resources"]["diskMB"] = 1
    world.subs[SUB]["customizations"] = {"resources": {"databases": 20}}
    item = world.item(history=hist)
    assert item["sync"] == "locked"
    assert item["effective"]["resources"]["databases"] == 20
    assert item["effective"]["resources"]["diskMB"] == 1000
    assert item["effective"]["permissions"]["manageSSH"] is False


def test_SYNC_2_unlock_drops_the_customisation_and_syncs(world: World) -> None:
    _, hist = run(_locked(world))
    world.plans["basic"]["resources"]["diskMB"] = 1
    del world.subs[SUB]["customizations"]
    out, hist = run(world, hist)
    item = out[SUB].item
    assert item["sync"] == "synced"
    assert LOCK in out[SUB].changes.sticky_drop
    assert "manageSSH" in out[SUB].changes.sticky_drop  # the customisation granted it (SYNC-4)
    assert item["effective"]["resources"]["diskMB"] == 1
    assert item["effective"]["resources"]["databases"] == 1
    assert item["effective"]["permissions"]["manageSSH"] is False
    assert LOCK not in hist.sticky[SUB]
    assert not world.compute(hist)[SUB].changes


def test_SYNC_2_empty_customisation_does_not_lock(world: World) -> None:
    world.sub(customizations={"resources": {}})
    out = world.compute()
    assert out[SUB].item["sync"] == "synced"
    assert LOCK not in out[SUB].changes.sticky_set


def test_SYNC_2_customisation_cannot_grant_php_groups_without_manage_hosting(world: World) -> None:
    world.sub(customizations={"permissions": {"managePHPCommon": True}})
    assert world.item()["effective"]["permissions"]["managePHPCommon"] is False


# --- SYNC-3: unsynced, with a conflict report ------------------------------------


def _server(world: World, **over: Any) -> dict[str, Any]:
    spec = world.servers["eu-west-1"]
    spec.update(over)
    return spec


@pytest.mark.parametrize(
    ("setup", "prop", "plan_value", "available"),
    [
        pytest.param(lambda w: w.plans["basic"]["hosting"]["php"].update(version="7.4"),
                     "hosting.php.version", "7.4", "8.3", id="SYNC-3-PHP-4-php-version-missing"),
        pytest.param(lambda w: w.plans["basic"]["hosting"]["php"].update(handler="module"),
                     "hosting.php.handler", "module", "fpm", id="SYNC-3-PHP-4-php-handler-missing"),
        pytest.param(lambda w: (w.plans["basic"]["hosting"].update(hardQuota=True),
                                w.servers["eu-west-1"]["offers"].update(hardQuota=False)),
                     "hosting.hardQuota", True, False, id="SYNC-3-RES-3-hard-quota-unsupported"),
        pytest.param(lambda w: (w.subs[SUB].update(ipType="dedicated"),
                                w.servers["eu-west-1"].update(ips=[{"address": "127.0.10.1"}])),
                     "ip.type", "dedicated", "shared", id="SYNC-3-no-dedicated-ip"),
        pytest.param(lambda w: w.servers["eu-west-1"]["capacity"].update(sites=0),
                     "server", "a server in eu-west with free capacity", None, id="SYNC-3-server-full"),
        pytest.param(lambda w: (w.subs[SUB].update(databases=[{"name": "app", "engine": "postgresql"}]),
                                w.servers["eu-west-1"].update(roles=["web", "db-mariadb"])),
                     "databases.app.engine", "postgresql", None, id="SYNC-3-db-engine-missing-in-region"),
    ],
)
def test_SYNC_3_conflicts(world: World, setup: Any, prop: str, plan_value: Any, available: Any) -> None:
    world.sub()
    setup(world)
    item = world.item()
    assert item["sync"] == "unsynced"
    assert conflict(item, prop) == {"property": prop, "planValue": plan_value, "availableValue": available}


def test_SYNC_3_runs_with_available_values(world: World) -> None:
    world.plans["basic"]["hosting"]["php"].update(version="7.4", handler="module")
    world.plans["basic"]["hosting"]["hardQuota"] = True
    _server(world, offers={"php": {"versions": ["8.1", "8.3"], "handlers": ["cgi", "module"]}, "hardQuota": False})
    world.servers["eu-west-1"]["offers"]["php"]["handlers"] = ["cgi"]
    world.sub()
    eff = world.item()["effective"]
    assert eff["hosting"]["php"]["version"] == "8.3"  # the newest the server has
    assert eff["hosting"]["php"]["handler"] == "cgi"
    assert eff["hosting"]["hardQuota"] is False


def test_SYNC_3_dedicated_ip_already_held_by_another_customer(world: World) -> None:
    world.sub(SUB, ipType="dedicated")
    out, hist = run(world)
    assert out[SUB].item["ip"] == "127.0.10.2"
    world.sub(SUB2, customer="latecoere", ipType="dedicated")  # sorts first, but SUB holds the IP
    out = world.compute(hist)
    assert out[SUB].item["ip"] == "127.0.10.2"
    assert conflict(out[SUB].item, "ip.type") is None
    assert out[SUB2].item["sync"] == "unsynced"
    assert conflict(out[SUB2].item, "ip.type") == {"property": "ip.type", "planValue": "dedicated",
                                                  "availableValue": "shared"}
    assert out[SUB2].item["ip"] == "127.0.10.1"


def test_SYNC_3_dedicated_ip_is_shared_by_one_customers_subscriptions(world: World) -> None:
    world.sub(SUB, ipType="dedicated")
    world.sub(SUB2, ipType="dedicated")
    out = world.compute()
    assert out[SUB].item["ip"] == out[SUB2].item["ip"] == "127.0.10.2"
    assert out[SUB2].item["conflicts"] == []


def test_SYNC_3_server_full_second_subscription(world: World) -> None:
    world.servers["eu-west-1"]["capacity"]["sites"] = 1
    world.sub(SUB)
    out, hist = run(world)
    world.sub(SUB2)  # sorts first, but SUB is already placed
    out = world.compute(hist)
    assert out[SUB].item["server"] == "eu-west-1"
    assert out[SUB2].item["server"] is None
    assert out[SUB2].item["sync"] == "unsynced"
    assert conflict(out[SUB2].item, "server") is not None
    placed = next(c for c in out[SUB2].item["conditions"] if c["type"] == "Placed")
    assert placed["status"] == "False"


def test_SYNC_3_no_server_in_region(world: World) -> None:
    world.regions["us-east"] = {"timezone": "America/New_York"}
    world.sub(region="us-east")
    item = world.item()
    assert item["server"] is None and item["ip"] is None
    assert conflict(item, "server") is not None


def test_SYNC_3_locked_with_a_conflict_is_unsynced(world: World) -> None:
    world.plans["basic"]["hosting"]["php"]["version"] = "7.4"
    _locked(world)
    assert world.item()["sync"] == "unsynced"


def test_SYNC_3_custom_subscription_keeps_custom_but_reports(world: World) -> None:
    world.sub(plan=None, customizations={"hosting": {"php": {"version": "7.4"}}})
    item = world.item()
    assert item["sync"] == "custom"
    assert conflict(item, "hosting.php.version") is not None


@pytest.mark.parametrize(
    ("break_", "fix"),
    [
        pytest.param(lambda w: w.plans["basic"]["hosting"]["php"].update(version="8.4"),
                     lambda w: w.servers["eu-west-1"]["offers"]["php"]["versions"].append("8.4"),
                     id="SYNC-3-fixed-by-php-version-offer"),
        pytest.param(lambda w: w.plans["basic"]["hosting"]["php"].update(handler="module"),
                     lambda w: w.servers["eu-west-1"]["offers"]["php"]["handlers"].append("module"),
                     id="SYNC-3-fixed-by-handler-offer"),
        pytest.param(lambda w: (w.plans["basic"]["hosting"].update(hardQuota=True),
                                w.servers["eu-west-1"]["offers"].update(hardQuota=False)),
                     lambda w: w.servers["eu-west-1"]["offers"].update(hardQuota=True),
                     id="SYNC-3-fixed-by-quota-support"),
        pytest.param(lambda w: w.plans["basic"]["hosting"]["php"].update(version="8.4"),
                     lambda w: w.plans["basic"]["hosting"]["php"].update(version="8.3"),
                     id="SYNC-3-fixed-by-adapting-the-plan"),
        pytest.param(lambda w: w.subs[SUB].update(databases=[{"name": "app", "engine": "postgresql"}]) or
                     w.servers["eu-west-1"].update(roles=["web", "db-mariadb"]),
                     lambda w: w.servers.__setitem__("eu-west-2", server_spec(11, roles=["db-postgresql"])),
                     id="SYNC-3-fixed-by-a-db-server-in-region"),
    ],
)
def test_SYNC_3_fixing_the_system_clears_the_conflict(world: World, break_: Any, fix: Any) -> None:
    world.sub()
    break_(world)
    out, hist = run(world)
    assert out[SUB].item["sync"] == "unsynced"
    fix(world)
    item = world.item(history=hist)
    assert item["sync"] == "synced"
    assert item["conflicts"] == []


def test_SYNC_3_fixed_database_gets_the_new_server(world: World) -> None:
    world.sub(databases=[{"name": "app", "engine": "postgresql"}])
    world.servers["eu-west-1"]["roles"] = ["web", "db-mariadb"]
    _, hist = run(world)
    world.servers["eu-west-2"] = server_spec(11, roles=["db-postgresql"])
    item = world.item(history=hist)
    assert item["effective"]["databases"] == [{"name": "app", "engine": "postgresql", "server": "eu-west-2"}]


def test_SYNC_3_placed_subscription_keeps_its_server(world: World) -> None:
    world.plans["basic"]["hosting"]["php"]["version"] = "8.4"
    world.sub()
    out, hist = run(world)
    assert out[SUB].item["server"] == "eu-west-1"
    world.servers["eu-west-2"] = server_spec(9, offers={"php": {"versions": ["8.4"], "handlers": ["fpm"]},
                                                        "hardQuota": True})
    world.servers["eu-west-1"]["capacity"]["sites"] = 1  # and the old one is now full
    item = world.item(history=hist)
    assert item["server"] == "eu-west-1"  # no implicit move
    assert item["sync"] == "unsynced"
    # without history, the better server is chosen
    assert world.item()["server"] == "eu-west-2"


def test_SYNC_3_placed_subscription_keeps_its_ip(world: World) -> None:
    world.servers["eu-west-1"]["ips"].append({"address": "127.0.10.3", "type": "shared"})
    world.sub()
    out, hist = run(world)
    assert out[SUB].item["ip"] == "127.0.10.1"
    world.servers["eu-west-1"]["ips"] = [{"address": "127.0.10.3"}, {"address": "127.0.10.1"}]
    assert world.item(history=hist)["ip"] == "127.0.10.1"


def test_SYNC_3_spec_server_of_a_placed_subscription_is_a_pending_move(world: World) -> None:
    """Issue 13: a changed spec.server does not re-place it empty: `tenantctl move` does."""
    world.sub()
    _, hist = run(world)
    world.servers["eu-west-2"] = server_spec(11)
    world.subs[SUB]["server"] = "eu-west-2"
    item = world.item(history=hist)
    assert (item["server"], item["ip"]) == ("eu-west-1", "127.0.10.1")
    assert [c["property"] for c in item["conflicts"]] == ["server"]
    assert f"tenantctl move {SUB} --to eu-west-2" in item["conflicts"][0]["planValue"]


def test_SYNC_3_recorded_server_removed_is_a_conflict(world: World) -> None:
    world.servers["eu-west-2"] = server_spec(11)
    world.sub(server="eu-west-2")
    _, hist = run(world)
    del world.subs[SUB]["server"]
    del world.servers["eu-west-2"]
    item = world.item(history=hist)
    assert item["server"] is None
    assert conflict(item, "server") == {"property": "server", "planValue": "eu-west-2", "availableValue": None}


# --- SYNC-5: fan-out ----------------------------------------------------------------


def test_SYNC_5_one_computation_covers_every_subscription(world: World) -> None:
    names = [f"site{i}.example.org" for i in range(20)]
    for n in names:
        world.sub(n)
    _, hist = run(world)
    world.plans["basic"]["resources"]["mailboxes"] = 99
    out = world.compute(hist)
    assert sorted(out) == sorted(names)
    assert {s.item["effective"]["resources"]["mailboxes"] for s in out.values()} == {99}


def test_SYNC_5_addon_change_fans_out_to_its_subscribers_only(world: World) -> None:
    world.addons["extra"] = {"resources": {"mailboxes": 1}}
    world.sub(SUB, addons=["extra"])
    world.sub(SUB2)
    _, hist = run(world)
    world.addons["extra"]["resources"]["mailboxes"] = 10
    out = world.compute(hist)
    assert out[SUB].item["effective"]["resources"]["mailboxes"] == 15
    assert out[SUB2].item["effective"]["resources"]["mailboxes"] == 5


def test_SYNC_3_explicit_ip_places_on_the_server_that_has_it(world: World) -> None:
    # regression: spec.ip without spec.server could land on another server than the address's
    world.servers["eu-west-2"] = server_spec(11)
    world.sub(ip="127.0.11.1")
    item = world.item()
    assert (item["server"], item["ip"], item["conflicts"]) == ("eu-west-2", "127.0.11.1", [])


def test_SYNC_3_explicit_dedicated_ip_of_another_customer_is_a_conflict(world: World) -> None:
    # regression: an explicit dedicated address was handed out even while another customer held it
    world.sub(SUB2, customer="latecoere", ipType="dedicated")
    _, hist = run(world)
    world.sub(SUB, ipType="dedicated", ip="127.0.10.2")
    out = world.compute(hist)
    assert out[SUB2].item["ip"] == "127.0.10.2"
    assert out[SUB].item["ip"] != "127.0.10.2"
    assert out[SUB].item["sync"] == "unsynced"
    assert conflict(out[SUB].item, "ip") == {"property": "ip", "planValue": "127.0.10.2",
                                            "availableValue": out[SUB].item["ip"]}
