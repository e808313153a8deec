"""Emergency maintenance windows (OPS-2; schema v8): announced at least 24 hours ahead.

A region's regular window (``Region.spec.maintenance``) is in its document; an
emergency one is an operator's decision at a given time, so it is recorded here with
who announced it, when, and why. Inside it the region's disruptive changes run as in
the regular window (``effective.maintenance``). The notice rule is checked here, the
one place that records: a window starting less than ``NOTICE`` after its announcement,
ending before it starts or lasting more than ``LONGEST`` is refused, nothing recorded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from controller import errors
from controller.state import codec
from controller.state import store as state_store

Store = state_store.Store

#: OPS-2: emergency maintenance needs 24 hours' notice
NOTICE = dt.timedelta(hours=24)
#: an emergency window longer than this is a typo (a regular window is under an hour)
LONGEST = dt.timedelta(hours=12)


class BadNotice(errors.PermanentError):
    """The window asked for breaks the notice rule (nothing recorded)."""


@dataclass(frozen=True)
class Notice:
    region: str
    start: dt.datetime
    end: dt.datetime
    announced_at: dt.datetime
    actor: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"region": self.region, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "announcedAt": self.announced_at.isoformat(), "actor": self.actor, "reason": self.reason}


def announce(store: Store, region: str, start: dt.datetime, end: dt.datetime, *, now: dt.datetime, actor: str,
             reason: str) -> Notice:
    """Record an emergency window of ``region`` from ``start`` to ``end`` (UTC-aware)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise BadNotice("give the window's times with a zone (e.g. 2026-12-03T01:00:00Z)")
    if start - now < NOTICE:
        raise BadNotice(f"an emergency window needs 24 h notice (OPS-2): {start.isoformat()} is "
                        f"{(start - now).total_seconds() / 3600:.1f} h from now; earliest "
                        f"{(now + NOTICE).isoformat(timespec='minutes')}")
    if end <= start:
        raise BadNotice("the window must end after it starts")
    if end - start > LONGEST:
        raise BadNotice(f"an emergency window lasts at most {LONGEST.total_seconds() / 3600:.0f} h")
    if not reason.strip():
        raise BadNotice("say why (--reason): customers are told")
    notice = Notice(region, start.astimezone(dt.UTC), end.astimezone(dt.UTC), now, actor, reason.strip())
    with store.transaction():
        store._execute(
            "INSERT INTO maintenance_notices (region, start_at, end_at, announced_at, actor, reason) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (region, start_at) DO UPDATE SET end_at = excluded.end_at, "
            "announced_at = excluded.announced_at, actor = excluded.actor, reason = excluded.reason",
            (region, codec.dt_to_text(notice.start), codec.dt_to_text(notice.end), codec.dt_to_text(now), actor,
             notice.reason))
    return notice


def cancel(store: Store, region: str, start: dt.datetime) -> bool:
    with store.transaction():
        cur = store._execute("DELETE FROM maintenance_notices WHERE region = ? AND start_at = ?",
                             (region, codec.dt_to_text(start.astimezone(dt.UTC))))
    return cur.rowcount > 0


def every(store: Store | None) -> list[Notice]:
    """Every recorded emergency window, soonest first."""
    if store is None:
        return []
    rows = store._fetchall("SELECT region, start_at, end_at, announced_at, actor, reason FROM maintenance_notices "
                           "ORDER BY start_at, region")
    return [Notice(r, codec.text_to_dt(s), codec.text_to_dt(e), codec.text_to_dt(a), who, why)
            for r, s, e, a, who, why in rows]


def pending(store: Store | None, now: dt.datetime) -> list[Notice]:
    """Emergency windows not over at ``now``, soonest first."""
    return [n for n in every(store) if n.end > now]


def windows(store: Store | None) -> dict[str, tuple[tuple[dt.datetime, dt.datetime], ...]]:
    """Region -> its emergency windows as ``(start, end)`` (past ones are never open again)."""
    out: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for n in every(store):
        out.setdefault(n.region, []).append((n.start, n.end))
    return {r: tuple(ws) for r, ws in out.items()}
