"""Maintenance windows (OPS-2): parsing with errors that say what was expected, and the
arithmetic of when a window is open and when the next one opens, in the region's time
zone across daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.maintenance import Window


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(("window", "monthly", "says"), [
    pytest.param("MONDAY 22:00-23:00", None, "expected 'DAY HH:MM-HH:MM'", id="day-spelled-out"),
    pytest.param("mon 22:00-23:00", None, "expected 'DAY HH:MM-HH:MM'", id="lower-case"),
    pytest.param("MON 23:00-22:00", None, "must end after it starts", id="ends-before-start"),
    pytest.param("MON 22:00-22:00", None, "must end after it starts", id="empty"),
    pytest.param("MON 22:00-24:30", None, "not a time of day", id="hour-24"),
    pytest.param("MON 22:00-23:00", "fifth", "monthly: expected one of", id="fifth"),
])
def test_a_bad_window_says_what_was_expected(window: str, monthly: str | None, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Window.parse(window, monthly)


PARIS = "Europe/Paris"


@pytest.mark.parametrize(("now", "open_", "next_start"), [
    # Monday 30 Nov 2026, Paris is UTC+1: the window is 21:00-22:00 UTC
    pytest.param("2026-11-30T20:59:59", False, "2026-11-30T21:00:00", id="a-second-before"),
    pytest.param("2026-11-30T21:00:00", True, "2026-11-30T21:00:00", id="at-the-start"),
    pytest.param("2026-11-30T21:59:59", True, "2026-11-30T21:00:00", id="a-second-before-the-end"),
    pytest.param("2026-11-30T22:00:00", False, "2026-12-07T21:00:00", id="at-the-end"),
    # summer time (UTC+2): 20:00-21:00 UTC
    pytest.param("2026-06-01T20:30:00", True, "2026-06-01T20:00:00", id="summer-time"),
    # the Monday after the spring change (29 Mar 2027): 20:00 UTC
    pytest.param("2027-03-27T12:00:00", False, "2027-03-29T20:00:00", id="across-the-spring-change"),
])
def test_a_weekly_window_in_the_regions_time(now: str, open_: bool, next_start: str) -> None:
    w = Window.parse("MON 22:00-23:00")
    assert w.open_at(PARIS, utc(now)) is open_
    assert w.next_start(PARIS, utc(now)) == utc(next_start)


@pytest.mark.parametrize(("monthly", "now", "next_start"), [
    pytest.param("first", "2026-11-30T22:30:00", "2026-12-07T21:00:00", id="first-monday-of-december"),
    pytest.param("last", "2026-11-30T22:30:00", "2026-12-28T21:00:00", id="last-monday-of-december"),
    pytest.param("last", "2026-11-30T21:30:00", "2026-11-30T21:00:00", id="last-monday-of-november-open"),
    pytest.param("second", "2026-12-15T00:00:00", "2027-01-11T21:00:00", id="second-monday-next-year"),
])
def test_a_monthly_window(monthly: str, now: str, next_start: str) -> None:
    w = Window.parse("MON 22:00-23:00", monthly)
    assert w.next_start(PARIS, utc(now)) == utc(next_start)


@given(now=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2030, 12, 31),
                        timezones=st.just(dt.UTC)),
       day=st.sampled_from(["MON", "WED", "SUN"]), monthly=st.sampled_from([None, "first", "last"]),
       tz=st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Singapore", "UTC"]))
def test_the_next_start_is_the_earliest_window_not_yet_over(now: dt.datetime, day: str, monthly: str | None,
                                                             tz: str) -> None:
    w = Window.parse(f"{day} 01:30-02:45", monthly)
    start = w.next_start(tz, now)
    local = start.astimezone(ZoneInfo(tz))
    assert local.strftime("%a").upper() == day
    assert w.open_at(tz, now) == (start <= now)
    # nothing opens between now and that start: a minute before it, the window is closed
    if start > now:
        assert not w.open_at(tz, max(now, start - dt.timedelta(minutes=1)))
