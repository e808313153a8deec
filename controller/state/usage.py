"""Usage figures (schema v6; OPS-4, RES-2): traffic per subscription and day, the daily
maxima of disk and database sizes, and where reading each subscription's logs stopped.

The latest sizes and the current month's traffic are v1's ``usage`` rows
(``Store.put_usage``: ``diskMB``, ``databaseMB``, ``trafficMB``), the one place RES-2's
overuse decision reads; ``record`` writes them together with the history, in one
transaction with the log cursors, so a log line is counted exactly once: a collection
whose cursor was overtaken by another collector's (``cursor`` changed meanwhile) is
dropped whole (``Stale``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.state import codec
from controller.state import store as state_store

Store = state_store.Store
MB = 1024 * 1024
#: the periods figures are summed over: a UTC day, an ISO week (from Monday), a month
PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Figures:
    """What one collection found for one subscription on one server."""

    subscription: str
    #: ``YYYY-MM-DD`` -> (requests, bytes) read in this collection
    days: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: the new log cursor (JSON-ready), and the one the collection started from
    cursor: Mapping[str, Any] | None = None
    previous: Mapping[str, Any] | None = None
    #: web space size in bytes, when measured
    disk: int | None = None


@dataclass(frozen=True)
class Row:
    """One subscription's figures for one day (``usage_traffic`` and ``usage_daily``)."""

    subscription: str
    day: dt.date
    requests: int = 0
    bytes: int = 0
    disk_mb: float | None = None
    database_mb: float | None = None


class Stale(Exception):
    """Another collection moved the cursor since this one read it."""


def utc_day(at: dt.datetime) -> dt.date:
    """The UTC day of a moment: the day a figure is recorded under (the usage agent
    counts log lines by their UTC day too)."""
    return at.astimezone(dt.UTC).date()


def period_start(day: dt.date, period: str) -> dt.date:
    """The first day of the period holding ``day`` (see ``PERIODS``): every sum over a
    period starts there (the report's rows, the month's ``trafficMB`` of RES-2)."""
    if period == "day":
        return day
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"not a period: {period!r}")


def cursors(store: Store, server: str) -> dict[str, dict[str, Any]]:
    """Every subscription's log cursor on ``server``."""
    rows = store._fetchall("SELECT subscription, cursor FROM usage_cursors WHERE server = ?", (server,))
    return {sub: codec.loads(text) for sub, text in rows}


def elsewhere(store: Store, server: str) -> dict[str, str]:
    """Subscription -> the newest log time counted on servers other than ``server``."""
    out: dict[str, str] = {}
    for sub, text in store._fetchall("SELECT subscription, cursor FROM usage_cursors WHERE server <> ?", (server,)):
        last = str(codec.loads(text).get("last", ""))
        if last > out.get(sub, ""):
            out[sub] = last
    return out


def disk_measured(store: Store, server: str) -> dt.datetime | None:
    row = store._fetchone("SELECT disk_at FROM usage_servers WHERE server = ?", (server,))
    return codec.text_to_dt(row[0]) if row else None


def record(store: Store, server: str, at: dt.datetime, figures: Iterable[Figures], *, disk: bool) -> list[str]:
    """Add one server's collection (see the module docstring); returns the subscriptions
    whose part was dropped because their cursor moved meanwhile."""
    when, day = codec.dt_to_text(at), utc_day(at).isoformat()
    stale: list[str] = []
    with store.transaction():
        for f in figures:
            try:
                with store.transaction():  # a savepoint per subscription
                    _record_one(store, server, when, day, f)
            except Stale:
                stale.append(f.subscription)
        if disk:
            store._execute("INSERT INTO usage_servers (server, disk_at) VALUES (?, ?) "
                           "ON CONFLICT (server) DO UPDATE SET disk_at = excluded.disk_at", (server, when))
    return stale


def _record_one(store: Store, server: str, when: str, day: str, f: Figures) -> None:
    if f.cursor is not None:
        row = store._fetchone("SELECT cursor FROM usage_cursors WHERE subscription = ? AND server = ?",
                              (f.subscription, server))
        now = codec.loads(row[0]) if row else None
        if now != (dict(f.previous) if f.previous is not None else None):
            raise Stale(f.subscription)
        store._execute("INSERT INTO usage_cursors (subscription, server, cursor, read_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (subscription, server) DO UPDATE SET cursor = excluded.cursor, "
                       "read_at = excluded.read_at", (f.subscription, server, codec.dumps(dict(f.cursor)), when))
    store._executemany(
        "INSERT INTO usage_traffic (subscription, day, requests, bytes) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (subscription, day) DO UPDATE SET requests = requests + excluded.requests, "
        "bytes = bytes + excluded.bytes",
        [(f.subscription, d, int(r), int(b)) for d, (r, b) in sorted(f.days.items()) if r or b])
    if f.disk is not None and f.disk >= 0:
        mb = round(f.disk / MB, 3)
        store.put_usage(f.subscription, {"diskMB": mb})
        daily_max(store, f.subscription, day, "diskMB", mb)


def daily_max(store: Store, subscription: str, day: str, metric: str, value: float) -> None:
    store._execute("INSERT INTO usage_daily (subscription, day, metric, value) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (subscription, day, metric) DO UPDATE SET value = max(value, excluded.value)",
                   (subscription, day, metric, float(value)))


def refresh(store: Store, at: dt.datetime) -> dict[str, float]:
    """After a collection: every subscription's ``trafficMB`` (this UTC month so far, for
    RES-2's ``trafficMBPerMonth``) and today's maximum of its measured ``databaseMB``
    (measured by the db driver, in the ``usage`` table). Returns the traffic figures.

    ``trafficMB`` is rounded up to whole MiB: against a limit in whole MB ``used > limit``
    decides the same, and the figure (an input of the planner's fingerprint of the
    subscription) changes once per MiB of traffic, not on every request."""
    today = utc_day(at)
    month = period_start(today, "month").isoformat()
    with store.transaction():
        traffic = {sub: float(math.ceil(int(b) / MB)) for sub, b in store._fetchall(
            "SELECT subscription, sum(bytes) FROM usage_traffic WHERE day >= ? GROUP BY subscription", (month,))}
        known = {name for (name,) in store._fetchall("SELECT DISTINCT subscription FROM usage_cursors")}
        stored = {name: float(v) for name, v in store._fetchall(
            "SELECT name, value FROM usage WHERE metric = 'trafficMB'")}
        for sub in sorted(known | set(traffic)):
            if stored.get(sub) != traffic.get(sub, 0.0):  # a quiet cluster writes nothing
                store.put_usage(sub, {"trafficMB": traffic.get(sub, 0.0)})
        for sub, value in store._fetchall("SELECT name, value FROM usage WHERE metric = 'databaseMB'"):
            daily_max(store, sub, today.isoformat(), "databaseMB", float(value))
    return traffic


def rows(store: Store, since: dt.date | None = None, subscriptions: Iterable[str] | None = None) -> list[Row]:
    """Daily rows (traffic and size maxima merged), by subscription then day."""
    start = since.isoformat() if since is not None else ""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for sub, day, req, byt in store._fetchall(
            "SELECT subscription, day, requests, bytes FROM usage_traffic WHERE day >= ?", (start,)):
        merged.setdefault((sub, day), {}).update(requests=int(req), bytes=int(byt))
    for sub, day, metric, value in store._fetchall(
            "SELECT subscription, day, metric, value FROM usage_daily WHERE day >= ?", (start,)):
        key = {"diskMB": "disk_mb", "databaseMB": "database_mb"}.get(metric)
        if key is not None:
            merged.setdefault((sub, day), {})[key] = float(value)
    only = set(subscriptions) if subscriptions is not None else None
    return [Row(sub, dt.date.fromisoformat(day), **vals) for (sub, day), vals in sorted(merged.items())
            if only is None or sub in only]


def latest(store: Store) -> dict[str, dict[str, tuple[float, dt.datetime]]]:
    """The ``usage`` table: subscription -> metric -> (value, measured at)."""
    out: dict[str, dict[str, tuple[float, dt.datetime]]] = {}
    for name, metric, value, at in store._fetchall("SELECT name, metric, value, measured_at FROM usage"):
        out.setdefault(name, {})[metric] = (float(value), codec.text_to_dt(at))
    return out
