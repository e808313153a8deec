"""Lifecycle (domain.md section 5) and overuse (RES-2) as decided by ``effective``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controller.effective import History
from controller.errors import InputError
from effective.builder import NOW, SUB, SUB2, TODAY, World, condition, run

DAY = dt.timedelta(days=1)


def _state(item: dict[str, Any]) -> tuple[str, str | None]:
    return item["state"], item["stateReason"]


# --- LIFE-1: states and reasons -----------------------------------------------------


@pytest.mark.parametrize(
    ("sub", "customer", "usage", "expected"),
    [
        pytest.param({}, "active", {}, ("active", None), id="LIFE-1-active"),
        pytest.param({"state": "suspended"}, "active", {}, ("suspended", "manual"), id="LIFE-1-manual"),
        pytest.param({"state": "suspended", "stateReason": "manual"}, "active", {}, ("suspended", "manual"),
                     id="LIFE-1-manual-explicit"),
        pytest.param({"state": "suspended", "stateReason": "nonpayment"}, "active", {},
                     ("suspended", "nonpayment"), id="LIFE-1-nonpayment"),
        pytest.param({"state": "suspended", "stateReason": "overuse"}, "active", {}, ("suspended", "overuse"),
                     id="LIFE-1-overuse-by-operator"),
        pytest.param({}, "suspended", {}, ("suspended", "customer"), id="LIFE-1-customer"),
        pytest.param({"expires": str(TODAY - DAY)}, "active", {}, ("suspended", "expired"), id="LIFE-1-expired"),
        pytest.param({}, "active", {"diskMB": 5000}, ("suspended", "overuse"), id="LIFE-1-overuse"),
        pytest.param({"state": "suspended", "stateReason": "nonpayment", "expires": str(TODAY - DAY)}, "suspended",
                     {"diskMB": 5000}, ("suspended", "nonpayment"), id="LIFE-1-operator-reason-first"),
        pytest.param({"expires": str(TODAY - DAY)}, "suspended", {}, ("suspended", "customer"),
                     id="LIFE-1-customer-before-expiry"),
        pytest.param({"expires": str(TODAY - DAY)}, "active", {"diskMB": 5000}, ("suspended", "expired"),
                     id="LIFE-1-expiry-before-overuse"),
    ],
)
def test_LIFE_1_state_and_reason(
    world: World, sub: dict[str, Any], customer: str, usage: dict[str, float], expected: tuple[str, str | None]
) -> None:
    world.plans["basic"]["overuse"] = {"policy": "notAllowed", "suspend": True}
    world.customers["mermoz"]["state"] = customer
    world.sub(**sub)
    item = world.item(history=History(usage={SUB: usage}))
    assert _state(item) == expected
    assert item["stateReason"] in (None, "manual", "expired", "overuse", "customer", "nonpayment")


def test_LIFE_1_deleted_subscription_is_no_longer_computed(world: World) -> None:
    world.sub(SUB)
    world.sub(SUB2)
    _, hist = run(world)
    del world.subs[SUB]
    assert list(world.compute(hist)) == [SUB2]


def test_LIFE_1_state_reason_needs_suspended(world: World) -> None:
    world.sub(stateReason="manual")
    with pytest.raises(InputError):
        world.load()


# --- LIFE-2: suspended keeps data ---------------------------------------------------


def test_LIFE_2_suspension_keeps_data_and_placement(world: World) -> None:
    world.sub(databases=[{"name": "app", "engine": "mariadb"}], sites=[{"name": "blog"}])
    active, hist = run(world)
    world.subs[SUB]["state"] = "suspended"
    suspended = world.compute(hist)[SUB].item
    assert _state(suspended) == ("suspended", "manual")
    before = active[SUB].item
    for key in ("effective", "server", "ip", "conflicts", "sync"):
        assert suspended[key] == before[key], key


# --- LIFE-3: expiry -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires", "expected"),
    [
        pytest.param(TODAY - 30 * DAY, ("suspended", "expired"), id="LIFE-3-past-date"),
        pytest.param(TODAY, ("suspended", "expired"), id="LIFE-3-on-the-expiry-date"),
        pytest.param(TODAY + DAY, ("active", None), id="LIFE-3-day-before"),
        pytest.param(None, ("active", None), id="LIFE-3-no-expiry"),
    ],
)
def test_LIFE_3_explicit_expiry(world: World, expires: dt.date | None, expected: tuple[str, str | None]) -> None:
    world.sub(**({"expires": expires.isoformat()} if expires else {}))
    item = world.item()
    assert _state(item) == expected
    assert item["expires"] == (expires.isoformat() if expires else None)


def test_LIFE_3_never_renews_itself(world: World) -> None:
    world.sub(expires=str(TODAY))
    _, hist = run(world)
    for days in (1, 30, 400):
        assert _state(world.item(history=hist, now=NOW + days * DAY)) == ("suspended", "expired")


def test_LIFE_3_activating_without_new_expiry_stays_suspended(world: World) -> None:
    world.sub(expires=str(TODAY - DAY), state="suspended", stateReason="manual")
    _, hist = run(world)
    world.subs[SUB]["state"] = "active"
    del world.subs[SUB]["stateReason"]
    assert _state(world.item(history=hist)) == ("suspended", "expired")


def test_LIFE_3_new_expiry_date_renews(world: World) -> None:
    world.sub(expires=str(TODAY - DAY))
    _, hist = run(world)
    world.subs[SUB]["expires"] = str(TODAY + 365 * DAY)
    item = world.item(history=hist)
    assert _state(item) == ("active", None)
    assert item["expires"] == str(TODAY + 365 * DAY)


@pytest.mark.parametrize(
    ("created", "validity", "expected"),
    [
        pytest.param(TODAY - 30 * DAY, 30, ("suspended", "expired"), id="LIFE-3-validityDays-reached-today"),
        pytest.param(TODAY - 30 * DAY, 31, ("active", None), id="LIFE-3-validityDays-tomorrow"),
        pytest.param(TODAY - 400 * DAY, 365, ("suspended", "expired"), id="LIFE-3-validityDays-past"),
        pytest.param(None, 30, ("active", None), id="LIFE-3-validityDays-not-created-yet"),
        pytest.param(TODAY - 400 * DAY, "unlimited", ("active", None), id="LIFE-3-validityDays-unlimited"),
    ],
)
def test_LIFE_3_validity_days_from_creation(
    world: World, created: dt.date | None, validity: Any, expected: tuple[str, str | None]
) -> None:
    world.plans["basic"]["resources"]["validityDays"] = validity
    world.sub()
    hist = History(created={SUB: created} if created else {})
    item = world.item(history=hist)
    assert _state(item) == expected
    if created and isinstance(validity, int):
        assert item["expires"] == (created + validity * DAY).isoformat()


def test_LIFE_3_explicit_expiry_wins_over_validity(world: World) -> None:
    world.plans["basic"]["resources"]["validityDays"] = 10
    world.sub(expires=str(TODAY + DAY))
    item = world.item(history=History(created={SUB: TODAY - 100 * DAY}))
    assert _state(item) == ("active", None)


def test_LIFE_3_addon_extends_validity(world: World) -> None:
    world.plans["basic"]["resources"]["validityDays"] = 30
    world.addons["year"] = {"resources": {"validityDays": 335}}
    world.sub(addons=["year"])
    item = world.item(history=History(created={SUB: TODAY - 100 * DAY}))
    assert _state(item) == ("active", None)
    assert item["expires"] == str(TODAY - 100 * DAY + 365 * DAY)


@pytest.mark.parametrize(
    ("timezone", "now", "expected"),
    [
        # 2026-06-15 05:00 UTC: already the 15th in Paris, still the 14th in Los Angeles
        pytest.param("UTC", dt.datetime(2026, 6, 15, 5, tzinfo=dt.UTC), "suspended", id="LIFE-3-tz-utc"),
        pytest.param("Europe/Paris", dt.datetime(2026, 6, 15, 5, tzinfo=dt.UTC), "suspended",
                     id="LIFE-3-tz-paris"),
        pytest.param("America/Los_Angeles", dt.datetime(2026, 6, 15, 5, tzinfo=dt.UTC), "active",
                     id="LIFE-3-tz-los-angeles-still-the-day-before"),
        # 2026-06-14 22:30 UTC: already the 15th in Paris (00:30), not in UTC
        pytest.param("Europe/Paris", dt.datetime(2026, 6, 14, 22, 30, tzinfo=dt.UTC), "suspended",
                     id="LIFE-3-tz-paris-after-midnight"),
        pytest.param("UTC", dt.datetime(2026, 6, 14, 22, 30, tzinfo=dt.UTC), "active",
                     id="LIFE-3-tz-utc-before-midnight"),
        pytest.param("Pacific/Kiritimati", dt.datetime(2026, 6, 14, 10, 30, tzinfo=dt.UTC), "suspended",
                     id="LIFE-3-tz-utc+14"),
    ],
)
def test_LIFE_3_region_time_zone_decides_the_date(
    world: World, timezone: str, now: dt.datetime, expected: str
) -> None:
    world.regions["eu-west"]["timezone"] = timezone
    world.sub(expires="2026-06-15")
    assert world.item(now=now)["state"] == expected


def test_LIFE_3_two_regions_two_dates(world: World) -> None:
    world.regions["us-west"] = {"timezone": "America/Los_Angeles"}
    world.servers["us-west-1"] = {**world.servers["eu-west-1"], "region": "us-west", "address": "127.0.20.1",
                                  "ips": [{"address": "127.0.20.1"}]}
    world.regions["eu-west"]["timezone"] = "Europe/Paris"
    world.sub(SUB, expires="2026-06-15")
    world.sub(SUB2, expires="2026-06-15", region="us-west")
    out = world.compute(now=dt.datetime(2026, 6, 15, 5, tzinfo=dt.UTC))
    assert (out[SUB].item["state"], out[SUB2].item["state"]) == ("suspended", "active")


# --- LIFE-4: the customer cascade ---------------------------------------------------


def test_LIFE_4_suspending_a_customer_suspends_all_its_subscriptions(world: World) -> None:
    world.sub(SUB)
    world.sub("second.example.org")
    world.sub(SUB2, customer="latecoere")
    _, hist = run(world)
    world.customers["mermoz"]["state"] = "suspended"
    out, hist = run(world, hist)
    states = {n: _state(s.item) for n, s in out.items()}
    assert states == {
        SUB: ("suspended", "customer"),
        "second.example.org": ("suspended", "customer"),
        SUB2: ("active", None),
    }
    world.customers["mermoz"]["state"] = "active"  # activating re-activates them
    assert {_state(s.item) for s in world.compute(hist).values()} == {("active", None)}


def test_LIFE_4_activating_the_customer_keeps_a_manual_suspension(world: World) -> None:
    world.customers["mermoz"]["state"] = "suspended"
    world.sub(SUB, state="suspended")
    world.sub(SUB2)
    _, hist = run(world)
    world.customers["mermoz"]["state"] = "active"
    out = world.compute(hist)
    assert _state(out[SUB].item) == ("suspended", "manual")
    assert _state(out[SUB2].item) == ("active", None)


def test_LIFE_4_deleting_a_customer_requires_deleting_its_subscriptions(world: World) -> None:
    world.sub(SUB)
    world.sub(SUB2, customer="latecoere")
    del world.customers["mermoz"]
    with pytest.raises(InputError) as exc:
        world.load()
    assert any("unknown customer 'mermoz'" in str(i) for i in exc.value.issues)
    del world.subs[SUB]
    assert list(world.compute()) == [SUB2]


# --- LIFE-5: billing events (non-payment) -------------------------------------------


def test_LIFE_5_unpaid_then_paid(world: World) -> None:
    world.sub(state="suspended", stateReason="nonpayment")
    out, hist = run(world)
    assert _state(out[SUB].item) == ("suspended", "nonpayment")
    world.subs[SUB] = {k: v for k, v in world.subs[SUB].items() if k not in ("state", "stateReason")}
    assert _state(world.item(history=hist)) == ("active", None)


# --- RES-2: overuse -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overuse", "usage", "state", "cond"),
    [
        pytest.param({"policy": "notAllowed", "suspend": True}, {"diskMB": 1001},
                     ("suspended", "overuse"), ("True", "LimitExceeded"), id="RES-2-notAllowed-suspend-disk"),
        pytest.param({"policy": "notAllowed", "suspend": True}, {"trafficMB": 10001},
                     ("suspended", "overuse"), ("True", "LimitExceeded"), id="RES-2-notAllowed-suspend-traffic"),
        pytest.param({"policy": "notAllowed", "suspend": False}, {"diskMB": 5000},
                     ("active", None), ("True", "LimitExceeded"), id="RES-2-notAllowed-no-suspend-notifies"),
        pytest.param({"policy": "notAllowed"}, {"diskMB": 5000},
                     ("active", None), ("True", "LimitExceeded"), id="RES-2-suspend-defaults-to-false"),
        pytest.param({"policy": "allowed", "suspend": True}, {"diskMB": 5000},
                     ("active", None), ("True", "LimitExceeded"), id="RES-2-allowed-keeps-running"),
        pytest.param({"policy": "notAllowed", "suspend": True}, {"diskMB": 1000},
                     ("active", None), ("False", "NotifyLevelReached"), id="RES-2-at-the-limit-is-not-over"),
        pytest.param({"policy": "notAllowed", "suspend": True, "notifyAtPercent": 90}, {"diskMB": 900},
                     ("active", None), ("False", "NotifyLevelReached"), id="RES-2-notify-level-reached"),
        pytest.param({"policy": "notAllowed", "suspend": True, "notifyAtPercent": 90}, {"diskMB": 899},
                     ("active", None), None, id="RES-2-below-notify-level"),
        pytest.param({"policy": "notAllowed", "suspend": True, "notifyAtPercent": 50}, {"trafficMB": 5000},
                     ("active", None), ("False", "NotifyLevelReached"), id="RES-2-notify-level-chosen"),
        pytest.param({"policy": "notAllowed", "suspend": True}, {}, ("active", None), None, id="RES-2-no-usage"),
        pytest.param({"policy": "notAllowed", "suspend": True}, {"mailboxSizeMB": 10**9},
                     ("active", None), None, id="RES-2-mailbox-size-is-not-overuse"),
    ],
)
def test_RES_2_overuse(
    world: World, overuse: dict[str, Any], usage: dict[str, float], state: tuple[str, str | None],
    cond: tuple[str, str] | None,
) -> None:
    world.plans["basic"]["overuse"] = overuse
    world.sub()
    item = world.item(history=History(usage={SUB: usage}))
    assert _state(item) == state
    got = condition(item, "Overuse")
    assert (None if got is None else (got["status"], got["reason"])) == cond


def test_RES_2_database_size_over_its_quota(world: World) -> None:
    world.plans["basic"]["resources"]["databaseQuotaMB"] = 100
    world.plans["basic"]["overuse"] = {"policy": "notAllowed", "suspend": True}
    world.sub()
    item = world.item(history=History(usage={SUB: {"databaseMB": 150.5}}))
    assert _state(item) == ("suspended", "overuse")
    assert item["overuse"] == {"over": ["databaseQuotaMB"], "notify": []}
    calm = world.item(history=History(usage={SUB: {"databaseMB": 95}}))
    assert _state(calm) == ("active", None) and calm["overuse"] == {"over": [], "notify": ["databaseQuotaMB"]}


def test_RES_2_unlimited_is_never_over(world: World) -> None:
    world.plans["basic"]["resources"]["diskMB"] = "unlimited"
    world.plans["basic"]["overuse"] = {"policy": "notAllowed", "suspend": True}
    world.sub()
    item = world.item(history=History(usage={SUB: {"diskMB": 10**12}}))
    assert _state(item) == ("active", None)
    assert condition(item, "Overuse") is None


def test_RES_2_addon_space_lifts_the_overuse(world: World) -> None:
    world.plans["basic"]["overuse"] = {"policy": "notAllowed", "suspend": True}
    world.addons["disk"] = {"resources": {"diskMB": 1000}}
    world.sub()
    hist = History(usage={SUB: {"diskMB": 1500}})
    assert _state(world.item(history=hist)) == ("suspended", "overuse")
    world.subs[SUB]["addons"] = ["disk"]
    assert _state(world.item(history=hist)) == ("active", None)


def test_RES_2_condition_names_the_resources(world: World) -> None:
    world.sub()
    item = world.item(history=History(usage={SUB: {"diskMB": 2000, "trafficMB": 20000}}))
    got = condition(item, "Overuse")
    assert got is not None
    assert "diskMB" in got["message"] and "trafficMBPerMonth" in got["message"]


@pytest.mark.parametrize(
    ("created", "validity"),
    [
        pytest.param(TODAY - 30 * DAY, 10**9, id="LIFE-3-validityDays-past-timedelta-range"),
        pytest.param(dt.date(9999, 1, 1), 10**6, id="LIFE-3-validityDays-past-year-9999"),
    ],
)
def test_LIFE_3_validity_beyond_the_calendar_never_expires(world: World, created: dt.date, validity: int) -> None:
    # regression: date + timedelta raised OverflowError for large validityDays
    world.plans["basic"]["resources"]["validityDays"] = validity
    world.sub()
    item = world.item(history=History(created={SUB: created}))
    assert (_state(item), item["expires"]) == (("active", None), None)
