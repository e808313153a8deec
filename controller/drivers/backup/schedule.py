"""When backups are due (BKP-6 schedules), level-triggered. Pure.

A subscription is due when its schedule (cron, in its region's time zone) fired since
its latest attempt: ``prev_fire(now) > last attempt``. A controller or server that was
down over several nights finds one fire time newer than the last attempt and runs the
backup once, not once per missed night. A subscription never attempted is due at once;
one whose latest attempt failed (its server or database was down) is due again
``RETRY`` after that attempt, until it succeeds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from croniter import croniter

from controller.drivers.backup import units
from controller.state import backups as ledger

RETRY = dt.timedelta(minutes=30)


def prev_fire(schedule: str, tz: str, now: dt.datetime) -> dt.datetime:
    """The latest time at or before ``now`` the schedule fired (UTC)."""
    local = now.astimezone(ZoneInfo(tz))
    it = croniter(schedule, local + dt.timedelta(seconds=1))
    fired: dt.datetime = it.get_prev(dt.datetime)
    return fired.astimezone(dt.UTC)


def due(wanted: Mapping[str, units.Wanted], attempts: Mapping[str, ledger.Attempt], timezones: Mapping[str, str],
        now: dt.datetime) -> list[str]:
    """The subscriptions whose backup is due now, sorted."""
    out = []
    for sub, w in sorted(wanted.items()):
        a = attempts.get(sub)
        if a is None or a.attempted_at < prev_fire(w.schedule, timezones.get(w.region, "UTC"), now) \
                or (a.error is not None and now - a.attempted_at >= RETRY):
            out.append(sub)
    return out
