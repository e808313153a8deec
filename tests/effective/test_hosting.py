"""HOST-1 mail-only subscriptions, as computed end to end."""

from __future__ import annotations

from effective.builder import SUB, World, server_spec


def _mail_world(world: World) -> World:
    world.servers = {"mx-1": server_spec(10, roles=["dns", "backup"], offers={})}
    world.plans["mail"] = {"hosting": {"enabled": False, "php": {"version": "5.6", "handler": "module"}}}
    return world


def test_HOST_1_mail_only_places_without_a_web_role(world: World) -> None:
    _mail_world(world).sub(plan="mail")
    item = world.item()
    assert (item["server"], item["sync"], item["conflicts"]) == ("mx-1", "synced", [])
    assert item["effective"]["hosting"]["enabled"] is False
    assert item["effective"]["mail"]["enabled"] is True


def test_HOST_1_web_plan_cannot_use_a_mail_server(world: World) -> None:
    _mail_world(world).sub(plan="basic")
    item = world.item()
    assert item["server"] is None
    assert item["sync"] == "unsynced"


def test_HOST_1_addon_enabling_hosting_needs_a_web_server(world: World) -> None:
    _mail_world(world).addons["web"] = {"hosting": {"enabled": True}}
    world.sub(plan="mail", addons=["web"])
    item = world.item()
    assert item["effective"]["hosting"]["enabled"] is True
    assert item["server"] is None


def test_HOST_1_mail_only_custom_subscription(world: World) -> None:
    _mail_world(world).sub(plan=None, customizations={"hosting": {"enabled": False}})
    assert world.item()["server"] == "mx-1"
    assert world.item(SUB)["sync"] == "custom"
