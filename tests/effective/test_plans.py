"""Plans, add-ons and subscriptions (domain.md section 2) and the PHP-2 hierarchy."""

from __future__ import annotations

import dataclasses

import pytest

from controller.errors import InputError
from effective.builder import SUB, SUB2, World, conflict, run


def _issues(world: World) -> list[str]:
    with pytest.raises(InputError) as exc:
        world.load()
    return [str(i) for i in exc.value.issues]


# --- PLAN-1: a subscription is its domain -------------------------------------------


def test_PLAN_1_subscription_is_named_after_its_domain_in_ascii(world: World) -> None:
    world.sub("bücher.example.org")
    out = world.compute()
    assert list(out) == ["xn--bcher-kva.example.org"]
    assert out["xn--bcher-kva.example.org"].item["name"] == "xn--bcher-kva.example.org"


def test_PLAN_1_a_site_cannot_take_another_subscriptions_domain(world: World) -> None:
    world.sub(SUB)
    world.sub(SUB2, sites=[{"name": SUB, "type": "alias"}])
    assert any("PLAN-1" in i for i in _issues(world))


def test_PLAN_1_sites_are_named_under_the_subscription_domain(world: World) -> None:
    world.sub(sites=[{"name": "blog"}, {"name": "mermoz.example.net", "type": "alias"}])
    sites = world.item()["effective"]["sites"]
    assert [s["name"] for s in sites] == [f"blog.{SUB}", "mermoz.example.net"]


# --- PLAN-2: one plan, add-ons at most once, custom subscriptions -----------------


def test_PLAN_2_custom_subscription_has_no_plan_and_default_values(world: World) -> None:
    world.sub(plan=None)
    item = world.item()
    assert item["plan"] is None
    assert item["sync"] == "custom"
    assert item["effective"]["resources"]["diskMB"] == "unlimited"


def test_PLAN_2_addon_listed_twice_is_rejected(world: World) -> None:
    world.addons["extra"] = {"resources": {"databases": 1}}
    world.sub(addons=["extra", "extra"])
    assert any("listed twice (PLAN-2)" in i for i in _issues(world))


def test_PLAN_2_addons_need_a_plan(world: World) -> None:
    world.addons["extra"] = {"resources": {"databases": 1}}
    world.sub(plan=None, addons=["extra"])
    assert any("add-ons need a plan" in i for i in _issues(world))


# --- PLAN-3: resources add, unlimited wins, permissions OR, default keeps -------


@pytest.mark.parametrize(
    ("plan_value", "addon_values", "expected"),
    [
        pytest.param(1000, [500], 1500, id="PLAN-3-numbers-add"),
        pytest.param(1000, [500, 250], 1750, id="PLAN-3-several-addons-add"),
        pytest.param(1000, ["unlimited"], "unlimited", id="PLAN-3-addon-unlimited-wins"),
        pytest.param("unlimited", [500], "unlimited", id="PLAN-3-plan-unlimited-wins"),
        pytest.param(1000, ["default"], 1000, id="PLAN-3-addon-default-keeps-plan"),
        pytest.param(1000, [None], 1000, id="PLAN-3-addon-absent-keeps-plan"),
        pytest.param(0, [0], 0, id="PLAN-3-zero-plus-zero"),
    ],
)
def test_PLAN_3_resources(world: World, plan_value: object, addon_values: list[object], expected: object) -> None:
    world.plans["basic"]["resources"]["diskMB"] = plan_value
    names = []
    for i, v in enumerate(addon_values):
        name = f"addon{i}"
        world.addons[name] = {"resources": {} if v is None else {"diskMB": v}}
        names.append(name)
    world.sub(addons=names)
    assert world.item()["effective"]["resources"]["diskMB"] == expected


def test_PLAN_3_performance_limits_add_too(world: World) -> None:
    world.plans["basic"]["performance"] = {"maxConnections": 100, "bandwidthKBps": 1000}
    world.addons["boost"] = {"performance": {"maxConnections": 50, "bandwidthKBps": "unlimited"}}
    world.sub(addons=["boost"])
    assert world.item()["effective"]["performance"] == {"maxConnections": 150, "bandwidthKBps": "unlimited"}


@pytest.mark.parametrize(
    ("plan_perm", "addon_perm", "expected"),
    [
        pytest.param(False, True, True, id="PLAN-3-permission-addon-grants"),
        pytest.param(True, None, True, id="PLAN-3-permission-addon-absent-keeps"),
        pytest.param(True, "default", True, id="PLAN-3-permission-addon-default-keeps"),
        pytest.param(False, None, False, id="PLAN-3-permission-neither"),
    ],
)
def test_PLAN_3_permissions_or(world: World, plan_perm: bool, addon_perm: object, expected: bool) -> None:
    world.plans["basic"]["permissions"] = {"manageSSH": plan_perm}
    world.addons["ssh"] = {"permissions": {} if addon_perm is None else {"manageSSH": addon_perm}}
    world.sub(addons=["ssh"])
    assert world.item()["effective"]["permissions"]["manageSSH"] is expected


def test_PLAN_3_addon_cannot_switch_a_permission_off(world: World) -> None:
    world.plans["basic"]["permissions"] = {"manageSSH": True}
    world.addons["bad"] = {"permissions": {"manageSSH": False}}
    world.sub(addons=["bad"])
    assert any("PLAN-3" in i for i in _issues(world))


def test_PLAN_3_addon_default_keeps_plan_php_version_and_handler(world: World) -> None:
    world.plans["basic"]["hosting"]["php"].update(version="8.3", handler="cgi")
    world.addons["boost"] = {"hosting": {"php": {"version": "default", "handler": "default",
                                                 "settings": {"memory_limit": "512M"}}}}
    world.sub(addons=["boost"])
    php = world.item()["effective"]["hosting"]["php"]
    assert (php["version"], php["handler"], php["settings"]["memory_limit"]) == ("8.3", "cgi", "512M")


def test_PLAN_3_addon_set_value_replaces_a_non_numeric_setting(world: World) -> None:
    world.addons["php83"] = {"hosting": {"php": {"version": "8.3"}}}
    world.sub(addons=["php83"])
    assert world.item()["effective"]["hosting"]["php"]["version"] == "8.3"


# --- PHP-2: server < plan < add-ons (list order) < customisations < customer < site -


def _php_world(world: World) -> World:
    world.servers["eu-west-1"]["phpDefaults"] = {
        "memory_limit": "64M", "max_execution_time": 10, "max_input_time": 5, "post_max_size": "8M",
        "upload_max_filesize": "2M", "max_input_vars": 1000,
    }
    world.plans["basic"]["hosting"]["php"]["settings"] = {
        "memory_limit": "128M", "max_execution_time": 20, "max_input_time": 20, "post_max_size": "16M",
        "upload_max_filesize": "16M",
    }
    world.plans["basic"]["permissions"] = {"manageHosting": True, "managePHPPerformance": True}
    world.addons["a1"] = {"hosting": {"php": {"settings": {"memory_limit": "256M", "max_execution_time": 30,
                                                           "max_input_time": 30, "post_max_size": "32M"}}}}
    world.addons["a2"] = {"hosting": {"php": {"settings": {"memory_limit": "512M", "max_execution_time": 40,
                                                           "max_input_time": 40}}}}
    world.sub(
        addons=["a1", "a2"],
        customizations={"hosting": {"php": {"settings": {"memory_limit": "768M", "max_execution_time": 50}}}},
        customerSettings={"php": {"memory_limit": "1G"}},
        sites=[{"name": "blog", "php": {"settings": {"memory_limit": "2G"}}}, {"name": "shop"}],
    )
    return world


def test_PHP_2_each_level_wins_over_the_ones_below(world: World) -> None:
    item = _php_world(world).item()
    settings = item["effective"]["hosting"]["php"]["settings"]
    assert settings == {
        "max_input_vars": "1000",  # server phpDefaults only
        "upload_max_filesize": "16M",  # plan over server
        "post_max_size": "32M",  # add-on a1 over plan
        "max_input_time": "40",  # add-on a2 over a1 (list order)
        "max_execution_time": "50",  # customisation over add-ons
        "memory_limit": "1G",  # customer setting (granted) over customisation
    }
    blog, shop = item["effective"]["sites"]
    assert blog["php"]["settings"]["memory_limit"] == "2G"  # site over everything
    assert blog["php"]["settings"]["max_input_vars"] == "1000"
    assert shop["php"]["settings"] == settings


def test_PHP_2_addon_order_decides_php_settings(world: World) -> None:
    world = _php_world(world)
    world.subs[SUB]["addons"] = ["a2", "a1"]
    settings = world.item()["effective"]["hosting"]["php"]["settings"]
    assert settings["max_input_time"] == "30"
    assert settings["post_max_size"] == "32M"


def test_PHP_2_customer_setting_without_permission_is_ignored(world: World) -> None:
    world = _php_world(world)
    world.plans["basic"]["permissions"] = {}
    settings = world.item()["effective"]["hosting"]["php"]["settings"]
    assert settings["memory_limit"] == "768M"


def test_PHP_2_values_are_normalised(world: World) -> None:
    world.plans["basic"]["hosting"]["php"]["settings"] = {"display_errors": False, "memory_limit": "128m"}
    world.sub()
    settings = world.item()["effective"]["hosting"]["php"]["settings"]
    assert settings == {"display_errors": "off", "memory_limit": "128M"}


# --- PLAN-4: a plan in use cannot be deleted ---------------------------------------


def test_PLAN_4_removing_a_plan_in_use_is_rejected(world: World) -> None:
    world.sub()
    del world.plans["basic"]
    assert any("unknown plan 'basic' (no ServicePlan document of that name)" in i for i in _issues(world))


def test_PLAN_4_removing_an_addon_in_use_is_rejected(world: World) -> None:
    world.addons["extra"] = {}
    world.sub(addons=["extra"])
    del world.addons["extra"]
    assert any("unknown add-on 'extra' (no AddOnPlan document of that name)" in i for i in _issues(world))


def test_PLAN_4_an_unused_plan_can_go(world: World) -> None:
    world.plans["other"] = {}
    world.sub()
    del world.plans["other"]
    assert SUB in world.compute()


# --- PLAN-5: plans describe potential services ------------------------------------


def test_PLAN_5_a_plan_the_infrastructure_cannot_provide_loads(world: World) -> None:
    world.plans["future"] = {"hosting": {"php": {"version": "9.9", "handler": "module"}, "hardQuota": True}}
    world.servers["eu-west-1"]["offers"]["hardQuota"] = False
    assert world.compute() == {}  # no error, no subscription: nothing checked


def test_PLAN_5_checking_happens_per_subscription(world: World) -> None:
    world.plans["future"] = {"hosting": {"php": {"version": "9.9"}}}
    world.sub(SUB, plan="future")
    world.sub(SUB2)
    out = world.compute()
    assert out[SUB].item["sync"] == "unsynced"
    assert out[SUB2].item["sync"] == "synced"


# --- PLAN-6: a plan change applies to every synced subscription --------------------


def test_PLAN_6_plan_edit_reaches_every_synced_subscription(world: World) -> None:
    world.plans["other"] = {"resources": {"diskMB": 7}}
    world.sub(SUB)
    world.sub(SUB2)
    world.sub("third.example.org", plan="other")
    world.sub("locked.example.org", customizations={"resources": {"mailboxes": 9}})
    _, hist = run(world)
    world.plans["basic"]["resources"]["diskMB"] = 4242
    out, _ = run(world, hist)
    disk = {n: s.item["effective"]["resources"]["diskMB"] for n, s in out.items()}
    assert disk == {SUB: 4242, SUB2: 4242, "third.example.org": 7, "locked.example.org": 1000}


# --- PLAN-7: transfer to another customer -------------------------------------------


def test_PLAN_7_transfer_detaches_and_freezes_last_effective(world: World) -> None:
    world.sub()
    out, hist = run(world)
    before = out[SUB].item["effective"]
    world.subs[SUB]["customer"] = "latecoere"
    world.plans["basic"]["resources"]["diskMB"] = 5  # same pass as the transfer
    out = world.compute(hist)
    item = out[SUB].item
    assert item["sync"] == "custom"
    assert item["customer"] == "latecoere"
    assert item["effective"]["resources"] == before["resources"]
    assert out[SUB].changes.transfer is not None
    assert out[SUB].changes.transfer["resources"]["diskMB"] == 1000


def test_PLAN_7_transfer_without_last_effective_freezes_current_values(world: World) -> None:
    world.sub(customer="latecoere")
    from controller.effective import History

    hist = History(customers={SUB: "mermoz"})
    out = world.compute(hist)
    assert out[SUB].item["sync"] == "custom"
    assert out[SUB].changes.transfer is not None
    assert out[SUB].changes.transfer["resources"]["diskMB"] == 1000


def test_PLAN_7_later_plan_edits_do_not_change_a_transferred_subscription(world: World) -> None:
    world.addons["extra"] = {"resources": {"databases": 3}}
    world.sub(addons=["extra"])
    _, hist = run(world)
    world.subs[SUB]["customer"] = "latecoere"
    out, hist = run(world, hist)
    frozen = out[SUB].item["effective"]
    world.plans["basic"]["resources"].update(diskMB=1, databases=0)
    world.plans["basic"]["hosting"]["php"]["settings"] = {"memory_limit": "1G"}
    world.addons["extra"]["resources"]["databases"] = 30
    out, hist = run(world, hist)
    assert out[SUB].item["sync"] == "custom"
    assert out[SUB].item["effective"] == frozen
    assert out[SUB].changes.transfer is None  # recorded once
    assert frozen["resources"]["databases"] == 4


def test_PLAN_7_same_customer_is_no_transfer(world: World) -> None:
    world.sub()
    _, hist = run(world)
    out = world.compute(hist)
    assert out[SUB].item["sync"] == "synced"
    assert out[SUB].changes.transfer is None


def test_PLAN_7_transferred_subscription_keeps_its_conflict_free_values(world: World) -> None:
    world.plans["basic"]["hosting"]["php"]["version"] = "9.9"
    world.sub()
    _, hist = run(world)
    world.subs[SUB]["customer"] = "latecoere"
    item = world.item(history=hist)
    assert item["sync"] == "custom"
    assert conflict(item, "hosting.php.version") is None


def test_PLAN_7_custom_subscription_transferred_without_record_keeps_its_values(world: World) -> None:
    # regression: compute asserted a plan while freezing a custom subscription's values
    from controller.effective import History

    world.sub(plan=None, customer="latecoere", customizations={"resources": {"diskMB": 50}})
    out = world.compute(History(customers={SUB: "mermoz"}))
    assert out[SUB].item["sync"] == "custom"
    assert out[SUB].item["effective"]["resources"]["diskMB"] == 50
    assert out[SUB].changes.transfer is not None


def test_PLAN_7_locked_subscription_transferred_without_record_keeps_the_locked_spec(world: World) -> None:
    # regression: the frozen values were the edited plan's, not the locked spec's
    world.sub(customizations={"resources": {"databases": 10}})
    _, hist = run(world)
    hist = dataclasses.replace(hist, last_effective={})  # e.g. a store from before last_effective was kept
    world.plans["basic"]["resources"]["diskMB"] = 5
    world.subs[SUB]["customer"] = "latecoere"
    out = world.compute(hist)
    eff = out[SUB].item["effective"]
    assert (eff["resources"]["diskMB"], eff["resources"]["databases"]) == (1000, 10)
    assert out[SUB].changes.transfer is not None
    assert out[SUB].changes.transfer["resources"]["diskMB"] == 1000
