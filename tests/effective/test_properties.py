"""Property-based tests of the merge laws (PLAN-3, SYNC-2) and of compute's purity
and totality (SYNC-3: conflicts, never a crash)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.effective import History
from controller.model.values import limit_le
from effective import strategies as gen
from effective.builder import NOW, SUB, SUB2, World, run

#: ``TENANTCTL_EXAMPLES=500`` for a longer hunt; 40 keeps the suite fast.
PROPS = settings(max_examples=int(os.environ.get("TENANTCTL_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

SYNC_STATES = {"synced", "locked", "unsynced", "custom"}
REASONS = {None, "manual", "expired", "overuse", "customer", "nonpayment"}


def _world(plan: dict[str, Any], addon_plans: dict[str, dict[str, Any]] | None = None, **sub: Any) -> World:
    w = World()
    w.plans = {"basic": plan}
    w.addons = dict(addon_plans or {})
    w.sub(**sub)
    return w


def _dump(out: dict[str, Any]) -> str:
    return json.dumps([s.item for s in out.values()], sort_keys=True)


@PROPS
@given(plan=gen.bodies(), addon=gen.bodies(addon=True))
def test_PLAN_3_adding_an_addon_never_lowers_a_resource_or_removes_a_permission(
    plan: dict[str, Any], addon: dict[str, Any]
) -> None:
    w = _world(plan, {"extra": addon})
    before = w.item()["effective"]
    w.subs[SUB]["addons"] = ["extra"]
    after = w.item()["effective"]
    for group in ("resources", "performance"):
        for k, v in before[group].items():
            assert limit_le(v, after[group][k]), (group, k, v, after[group][k])
    for k, v in before["permissions"].items():
        assert after["permissions"][k] or not v, k


@PROPS
@given(plan=gen.bodies(), addons=st.lists(gen.bodies(addon=True), min_size=2, max_size=3), data=st.data())
def test_PLAN_3_addon_order_does_not_change_resources(
    plan: dict[str, Any], addons: list[dict[str, Any]], data: st.DataObject
) -> None:
    names = [f"a{i}" for i in range(len(addons))]
    w = _world(plan, dict(zip(names, addons, strict=True)), addons=names)
    first = w.item()["effective"]
    order = data.draw(st.sampled_from(list(itertools.permutations(names))))
    w.subs[SUB]["addons"] = list(order)
    other = w.item()["effective"]
    for group in ("resources", "performance", "permissions"):
        assert first[group] == other[group], group


@PROPS
@given(plan=gen.bodies(), edit=gen.bodies(), custom=gen.bodies().filter(bool),
       addon=gen.bodies(addon=True), settings_=gen.customer_settings)
def test_SYNC_2_locked_effective_spec_is_unchanged_by_any_plan_edit(
    plan: dict[str, Any], edit: dict[str, Any], custom: dict[str, Any], addon: dict[str, Any],
    settings_: dict[str, Any],
) -> None:
    w = _world(plan, {"extra": addon}, addons=["extra"], customizations=custom, customerSettings=settings_)
    out, hist = run(w)
    assert out[SUB].item["sync"] in ("locked", "unsynced")
    w.plans["basic"] = edit
    again = w.compute(hist)[SUB].item
    assert again["effective"] == out[SUB].item["effective"]
    assert again["sync"] == out[SUB].item["sync"]
    assert again["conflicts"] == out[SUB].item["conflicts"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, History]:
    """Generated plans, add-ons and servers, two subscriptions, and some history."""
    w = World()
    w.plans = {"p1": draw(gen.bodies(limit=gen.huge_limits)), "p2": draw(gen.bodies())}
    w.addons = {"a1": draw(gen.bodies(addon=True, limit=gen.huge_limits)), "a2": draw(gen.bodies(addon=True))}
    w.servers = {f"eu-west-{i}": draw(gen.servers(10 + i)) for i in range(draw(st.integers(1, 3)))}
    w.regions["eu-east"] = {"timezone": draw(st.sampled_from(["UTC", "Pacific/Kiritimati", "America/Adak"]))}
    for name in (SUB, SUB2):
        spec: dict[str, Any] = {
            "plan": draw(st.sampled_from(["p1", "p2", None])),
            "customer": draw(st.sampled_from(["mermoz", "latecoere"])),
            "region": draw(st.sampled_from(["eu-west", "eu-east"])),
            "ipType": draw(st.sampled_from(["shared", "dedicated"])),
            "databases": draw(st.lists(st.sampled_from([{"name": "app", "engine": "mariadb"},
                                                        {"name": "wiki", "engine": "postgresql"}]),
                                       unique_by=lambda d: d["name"], max_size=2)),
            "customerSettings": draw(gen.customer_settings),
        }
        if spec["plan"] is not None:
            spec["addons"] = draw(st.lists(st.sampled_from(["a1", "a2"]), unique=True, max_size=2))
        if draw(st.booleans()):
            spec["customizations"] = draw(gen.bodies())
        if draw(st.booleans()):
            spec["expires"] = draw(st.dates(dt.date(2020, 1, 1), dt.date(2030, 1, 1))).isoformat()
        w.sub(name, **spec)
    hist = History(
        created={n: draw(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))) for n in (SUB, SUB2)},
        customers={SUB: draw(st.sampled_from(["mermoz", "latecoere"]))},
        usage={n: {"diskMB": draw(st.floats(0, 1e13)), "trafficMB": draw(st.floats(0, 1e13))} for n in (SUB, SUB2)},
    )
    return w, hist


@PROPS
@given(case=worlds())
def test_SYNC_3_compute_never_raises_and_reports_conflicts(case: tuple[World, History]) -> None:
    w, hist = case
    out, hist2 = run(w, hist)
    for sub in out.values():
        item = sub.item
        assert item["sync"] in SYNC_STATES
        assert item["state"] in ("active", "suspended")
        assert item["stateReason"] in REASONS
        assert (item["stateReason"] is None) == (item["state"] == "active")
        for c in item["conflicts"]:
            assert set(c) == {"property", "planValue", "availableValue"}
        if item["conflicts"] and item["sync"] != "custom":
            assert item["sync"] == "unsynced"
        if item["server"] is None:
            assert any(c["property"] == "server" for c in item["conflicts"])
        json.dumps(item, allow_nan=False)
    w.compute(hist2)  # and the next pass, with what this one recorded


@PROPS
@given(case=worlds())
def test_SYNC_1_recomputing_the_same_inputs_is_byte_identical(case: tuple[World, History]) -> None:
    w, hist = case
    ds = w.load()
    from controller import effective

    first = _dump(effective.compute(ds, NOW, hist))
    assert _dump(effective.compute(ds, NOW, hist)) == first
    assert _dump(effective.compute(w.load(), NOW, hist)) == first


@PROPS
@given(case=worlds())
def test_SYNC_5_recomputing_one_subscription_matches_the_full_pass(case: tuple[World, History]) -> None:
    from controller import effective

    w, hist = case
    _, hist = run(w, hist)  # placements recorded, as after an apply
    ds = w.load()
    full = effective.compute(ds, NOW, hist)
    for name in (SUB, SUB2):
        part = effective.compute(ds, NOW, hist, names=[name])
        assert list(part) == [name]
        assert json.dumps(part[name].item, sort_keys=True) == json.dumps(full[name].item, sort_keys=True)
