"""Maintenance windows (OPS-2): when a region's disruptive changes may run.

``Region.spec.maintenance: {window: "MON 22:00-23:00", monthly: first}``: a window on
one weekday between two times of the region's time zone (start before end, the same
day), every week, or once a month on the ``first`` .. ``fourth`` or ``last`` such
weekday of the month. What belongs here: the value (parsed and checked once, so a typo
is a load error naming the field) and its arithmetic: whether a moment is inside a
window, and when the next one opens. What a disruptive change is, and waiting for the
window, belong to the engine.

Times are wall-clock times of the region's zone: a window at 22:00 Paris time opens at
21:00 UTC in winter and 20:00 UTC in summer. A start that falls in a daylight-saving
gap is taken as zoneinfo resolves it (``fold=0``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
Monthly = Literal["first", "second", "third", "fourth", "last"]
_NTH = {"first": 0, "second": 1, "third": 2, "fourth": 3}
_WINDOW = re.compile(r"^(?P<day>[A-Z]{3}) (?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)$")
#: how far ahead ``next_start`` looks (a monthly window is at most ~5 weeks away)
_HORIZON_DAYS = 400


def _time(text: str) -> dt.time:
    hours, minutes = (int(p) for p in text.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day (00:00 to 23:59)")
    return dt.time(hours, minutes)


@dataclass(frozen=True)
class Window:
    weekday: int  # 0 = Monday
    start: dt.time
    end: dt.time
    monthly: Monthly | None = None

    @classmethod
    def parse(cls, window: str, monthly: str | None = None) -> Window:
        """``"MON 22:00-23:00"`` (and ``monthly``); ``ValueError`` saying what was expected."""
        m = _WINDOW.match(window)
        if m is None or m["day"] not in DAYS:
            raise ValueError(f"expected 'DAY HH:MM-HH:MM' with DAY one of {', '.join(DAYS)} "
                             f"(e.g. 'MON 22:00-23:00'), got {window!r}")
        start, end = _time(m["start"]), _time(m["end"])
        if end <= start:
            raise ValueError(f"the window must end after it starts on the same day, got {window!r}")
        if monthly is not None and monthly not in (*_NTH, "last"):
            raise ValueError(f"monthly: expected one of first, second, third, fourth, last, got {monthly!r}")
        return cls(DAYS.index(m["day"]), start, end, monthly)  # type: ignore[arg-type]

    def describe(self) -> str:
        when = f"{DAYS[self.weekday]} {self.start:%H:%M}-{self.end:%H:%M}"
        return f"{when}, {self.monthly} of the month" if self.monthly else f"{when}, every week"

    def _on(self, day: dt.date) -> bool:
        if day.weekday() != self.weekday:
            return False
        if self.monthly is None:
            return True
        if self.monthly == "last":
            return (day + dt.timedelta(days=7)).month != day.month
        return (day.day - 1) // 7 == _NTH[self.monthly]

    def occurrences(self, tz: str, after: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """``(start, end)`` in UTC of each window that ends after ``after``, in order."""
        zone = ZoneInfo(tz)
        day = after.astimezone(zone).date() - dt.timedelta(days=1)
        for _ in range(_HORIZON_DAYS):
            if self._on(day):
                start = dt.datetime.combine(day, self.start, zone).astimezone(dt.UTC)
                end = dt.datetime.combine(day, self.end, zone).astimezone(dt.UTC)
                if end > after:
                    yield start, end
            day += dt.timedelta(days=1)

    def open_at(self, tz: str, now: dt.datetime) -> bool:
        start, _ = next(self.occurrences(tz, now))
        return start <= now

    def next_start(self, tz: str, now: dt.datetime) -> dt.datetime:
        """When the window that is open now, or the next one, opened / opens (UTC)."""
        start, _ = next(self.occurrences(tz, now))
        return start
