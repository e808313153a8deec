"""Demo platforms' resets (schema v9; PLAT-3).

A row per demo that was ever reset: the last reset (when it started, how long it took,
whether it succeeded and why not, the reference subscription and the snapshot ids it
restored, who ran it) and when the last successful one started. ``run`` decides from
it whether a demo is due (``controller.reconcile.demo``); ``status`` shows it. The event
log keeps every reset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from controller.state import codec
from controller.state import store as state_store

Store = state_store.Store


@dataclass(frozen=True)
class Reset:
    subscription: str
    at: dt.datetime
    seconds: float
    ok: bool
    source: str
    snapshots: tuple[str, ...]
    error: str | None
    actor: str
    last_ok_at: dt.datetime | None = None


_COLUMNS = "subscription, at, seconds, ok, source, snapshots, error, actor, last_ok_at"


def _reset(row: tuple[object, ...]) -> Reset:
    sub, at, seconds, ok, source, snaps, error, actor, last_ok = row
    return Reset(str(sub), codec.text_to_dt(str(at)), float(seconds), bool(ok), str(source),  # type: ignore[arg-type]
                 tuple(s for s in str(snaps).split(",") if s), None if error is None else str(error), str(actor),
                 codec.text_to_dt(str(last_ok)) if last_ok else None)


def all_resets(store: Store | None) -> dict[str, Reset]:
    """The last reset of every demo, by subscription."""
    if store is None:
        return {}
    return {r.subscription: r for r in map(_reset, store._fetchall(
        f"SELECT {_COLUMNS} FROM demo_resets ORDER BY subscription"))}


def get(store: Store, subscription: str) -> Reset | None:
    row = store._fetchone(f"SELECT {_COLUMNS} FROM demo_resets WHERE subscription = ?", (subscription,))
    return _reset(row) if row else None


def record(store: Store, subscription: str, at: dt.datetime, *, seconds: float, error: str | None, source: str,
           snapshots: Sequence[str], actor: str) -> Reset:
    """Record a reset that started at ``at`` (``error`` None: it succeeded)."""
    old = get(store, subscription)
    last_ok = at if error is None else (old.last_ok_at if old else None)
    with store.transaction():
        store._execute(
            f"INSERT OR REPLACE INTO demo_resets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (subscription, codec.dt_to_text(at), round(seconds, 3), 1 if error is None else 0, source,
             ",".join(snapshots), error, actor, codec.dt_to_text(last_ok) if last_ok else None))
    found = get(store, subscription)
    assert found is not None
    return found


def forget(store: Store, subscriptions: Sequence[str]) -> None:
    """Drop the rows of subscriptions that are no demos any more."""
    with store.transaction():
        for s in subscriptions:
            store._execute("DELETE FROM demo_resets WHERE subscription = ?", (s,))
