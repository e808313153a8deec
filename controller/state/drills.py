"""Disaster-recovery drills (DR-1, schema v7; ``notes`` v8): each subscription's latest
drill on a spare server of another region, recorded by ``drivers.backup.drdrill`` and
read by ``status``, ``backup list``, the nightly sample and the metrics. ``error`` is
why a drill failed (None when it passed); ``notes`` are remarks that are no failure (a
substituted PHP version), kept apart so that a passed drill never carries an error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.state import codec
from controller.state import store as state_store

Store = state_store.Store


@dataclass(frozen=True)
class Drill:
    subscription: str
    started_at: datetime
    ok: bool
    error: str | None
    #: seconds from the start of the restore to the spare's HTTP answer with the right content
    rto_seconds: float | None
    #: seconds between the restored point (snapshot time or newest archived log) and ``started_at``
    rpo_seconds: float | None
    #: the region whose repository was read
    source_region: str
    spare: str
    spare_region: str
    #: the restored point in time (the oldest snapshot used)
    restored_at: datetime | None = None
    #: what ``rpo_seconds`` measured: ``snapshot`` or ``archive`` (newest archived log, PITR plans)
    rpo_basis: str = "snapshot"
    #: remarks that are no failure (e.g. the probe ran on another PHP version), or None
    notes: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``drDrill`` object of ``status -o json`` and ``backup list -o json``."""
        return {"at": _iso(self.started_at), "ok": self.ok, "error": self.error,
                "rtoSeconds": None if self.rto_seconds is None else round(self.rto_seconds, 2),
                "rpoSeconds": None if self.rpo_seconds is None else round(self.rpo_seconds, 1),
                "sourceRegion": self.source_region, "spare": self.spare, "spareRegion": self.spare_region,
                "restoredPoint": _iso(self.restored_at) if self.restored_at else None, "rpoBasis": self.rpo_basis,
                "notes": self.notes}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


_COLS = ("subscription, started_at, ok, error, rto_seconds, rpo_seconds, source_region, spare, spare_region, "
         "restored_at, rpo_basis, notes")


def record(store: Store, d: Drill) -> None:
    """Replace ``d.subscription``'s latest drill."""
    store._execute(
        f"INSERT INTO dr_drills ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subscription) DO UPDATE "
        "SET started_at = excluded.started_at, ok = excluded.ok, error = excluded.error, "
        "rto_seconds = excluded.rto_seconds, rpo_seconds = excluded.rpo_seconds, "
        "source_region = excluded.source_region, spare = excluded.spare, spare_region = excluded.spare_region, "
        "restored_at = excluded.restored_at, rpo_basis = excluded.rpo_basis, notes = excluded.notes",
        (d.subscription, codec.dt_to_text(d.started_at), int(d.ok), d.error, d.rto_seconds, d.rpo_seconds,
         d.source_region, d.spare, d.spare_region, codec.opt_dt_to_text(d.restored_at), d.rpo_basis, d.notes))


def latest(store: Store) -> dict[str, Drill]:
    """Every subscription's latest drill, by subscription."""
    rows = store._fetchall(f"SELECT {_COLS} FROM dr_drills ORDER BY subscription")
    return {r[0]: Drill(r[0], codec.text_to_dt(r[1]), bool(r[2]), r[3], r[4], r[5], r[6], r[7], r[8],
                        codec.opt_text_to_dt(r[9]), r[10], r[11]) for r in rows}


def forget(store: Store, subscription: str) -> None:
    """A deleted subscription is drilled no more."""
    store._execute("DELETE FROM dr_drills WHERE subscription = ?", (subscription,))
