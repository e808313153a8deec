"""The backup ledger (schema v4): what tenantctl knows of its restic snapshots.

The repositories are the truth about what exists; the ledger is what tenantctl recorded
when it made, copied, rotated, checked and drilled them, so that ``backup list``,
``status``, conditions and metrics read one place without asking every region. After a
copy or a rotation the rows of that (region, source server) are made to match the
repository's own listing (``sync_region``), so a snapshot removed on the server does not
linger here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.state import codec
from controller.state import store as state_store

Store = state_store.Store


@dataclass(frozen=True)
class Snapshot:
    region: str
    id: str
    subscription: str
    server: str
    kind: str
    name: str
    taken_at: datetime
    bytes: int = 0
    #: for a copy: the id of the snapshot in the source server's own region
    original: str | None = None
    #: what the backup recorded (tables/digest), kept on the original's row
    sums: dict[str, Any] | None = None
    verified: bool = False
    final: bool = False

    @property
    def source_id(self) -> str:
        """The id of the snapshot this one is (itself, or the one it was copied from)."""
        return self.original or self.id


@dataclass(frozen=True)
class Attempt:
    subscription: str
    server: str
    attempted_at: datetime
    succeeded_at: datetime | None
    error: str | None
    drilled_at: datetime | None
    drill_error: str | None
    #: the regions that should hold its backups (own region first), as of the attempt
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    server: str
    region: str
    attempted_at: datetime
    succeeded_at: datetime | None
    seconds: float
    added: int
    error: str | None


@dataclass(frozen=True)
class Check:
    scope: str
    at: datetime
    ok: bool
    seconds: float
    detail: str | None


_SNAP = "region, id, subscription, server, kind, name, taken_at, bytes, original, sums, verified, final"


def _snap(row: tuple[Any, ...]) -> Snapshot:
    return Snapshot(region=row[0], id=row[1], subscription=row[2], server=row[3], kind=row[4], name=row[5],
                    taken_at=codec.text_to_dt(row[6]), bytes=int(row[7]), original=row[8],
                    sums=codec.loads(row[9]) if row[9] else None, verified=bool(row[10]), final=bool(row[11]))


def add_snapshots(store: Store, snaps: Iterable[Snapshot]) -> None:
    """Record snapshots (a row already there keeps its verification and sums)."""
    store._executemany(
        f"INSERT INTO backup_snapshots ({_SNAP}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (region, id) DO NOTHING",
        [(s.region, s.id, s.subscription, s.server, s.kind, s.name, codec.dt_to_text(s.taken_at), s.bytes,
          s.original, codec.dumps(s.sums) if s.sums is not None else None, int(s.verified), int(s.final))
         for s in snaps])


def snapshots(store: Store, subscription: str | None = None) -> list[Snapshot]:
    """Snapshots, newest first (one subscription's, or all)."""
    if subscription is None:
        rows = store._fetchall(f"SELECT {_SNAP} FROM backup_snapshots ORDER BY taken_at DESC, region, id")
    else:
        rows = store._fetchall(f"SELECT {_SNAP} FROM backup_snapshots WHERE subscription = ? "
                               "ORDER BY taken_at DESC, region, id", (subscription,))
    return [_snap(r) for r in rows]


def sync_region(store: Store, region: str, server: str, present: Iterable[str],
                subscriptions: Iterable[str] | None = None) -> int:
    """Drop the rows of (``region``, source ``server``) whose snapshot the repository no
    longer lists (rotated or purged on the server); returns how many. ``subscriptions``:
    the listing covered only these (the rows of others are left alone)."""
    keep = set(present)
    only = set(subscriptions) if subscriptions is not None else None
    with store.transaction():
        rows = store._fetchall("SELECT id, subscription FROM backup_snapshots WHERE region = ? AND server = ?",
                               (region, server))
        gone = [(region, i) for (i, sub) in rows if i not in keep and (only is None or sub in only)]
        store._executemany("DELETE FROM backup_snapshots WHERE region = ? AND id = ?", gone)
    return len(gone)


def set_verified(store: Store, source_ids: Iterable[str]) -> None:
    """Mark snapshots (originals and their copies) as restored and compared by a drill."""
    ids = list(source_ids)
    store._executemany("UPDATE backup_snapshots SET verified = 1 WHERE id = ? OR original = ?", [(i, i) for i in ids])


def record_attempt(store: Store, subscription: str, server: str, at: datetime, error: str | None,
                   regions: Iterable[str] = ()) -> None:
    """The outcome of one subscription's backup (``error`` None: it succeeded)."""
    now = codec.dt_to_text(at)
    store._execute(
        "INSERT INTO backup_subscriptions (subscription, server, attempted_at, succeeded_at, error, regions) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (subscription) DO UPDATE SET server = excluded.server, "
        "attempted_at = excluded.attempted_at, error = excluded.error, regions = excluded.regions, "
        "succeeded_at = COALESCE(excluded.succeeded_at, backup_subscriptions.succeeded_at)",
        (subscription, server, now, now if error is None else None, error, codec.dumps(list(regions))))


def record_drill(store: Store, subscription: str, at: datetime, error: str | None) -> None:
    store._execute("UPDATE backup_subscriptions SET drilled_at = ?, drill_error = ? WHERE subscription = ?",
                   (codec.dt_to_text(at), error, subscription))


def attempts(store: Store) -> dict[str, Attempt]:
    rows = store._fetchall("SELECT subscription, server, attempted_at, succeeded_at, error, drilled_at, drill_error, "
                           "regions FROM backup_subscriptions ORDER BY subscription")
    return {r[0]: Attempt(r[0], r[1], codec.text_to_dt(r[2]), codec.opt_text_to_dt(r[3]), r[4],
                          codec.opt_text_to_dt(r[5]), r[6], tuple(codec.loads(r[7]))) for r in rows}


def record_target(store: Store, server: str, region: str, at: datetime, *, seconds: float, added: int,
                  error: str | None) -> None:
    """The outcome of a source server's run (its own region) or copy (another region)."""
    now = codec.dt_to_text(at)
    store._execute(
        "INSERT INTO backup_targets (server, region, attempted_at, succeeded_at, seconds, added, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (server, region) DO UPDATE SET "
        "attempted_at = excluded.attempted_at, error = excluded.error, "
        "succeeded_at = COALESCE(excluded.succeeded_at, backup_targets.succeeded_at), "
        "seconds = CASE WHEN excluded.error IS NULL THEN excluded.seconds ELSE backup_targets.seconds END, "
        "added = CASE WHEN excluded.error IS NULL THEN excluded.added ELSE backup_targets.added END",
        (server, region, now, now if error is None else None, seconds, added, error))


def targets(store: Store) -> list[Target]:
    rows = store._fetchall("SELECT server, region, attempted_at, succeeded_at, seconds, added, error "
                           "FROM backup_targets ORDER BY server, region")
    return [Target(r[0], r[1], codec.text_to_dt(r[2]), codec.opt_text_to_dt(r[3]), float(r[4]), int(r[5]), r[6])
            for r in rows]


def record_check(store: Store, scope: str, at: datetime, *, ok: bool, seconds: float, detail: str | None) -> None:
    """``scope``: ``region:<name>`` (a repository check) or ``drill`` (the latest drill run)."""
    store._execute(
        "INSERT INTO backup_checks (scope, at, ok, seconds, detail) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (scope) DO UPDATE SET at = excluded.at, ok = excluded.ok, seconds = excluded.seconds, "
        "detail = excluded.detail",
        (scope, codec.dt_to_text(at), int(ok), seconds, detail))


def checks(store: Store) -> dict[str, Check]:
    rows = store._fetchall("SELECT scope, at, ok, seconds, detail FROM backup_checks ORDER BY scope")
    return {r[0]: Check(r[0], codec.text_to_dt(r[1]), bool(r[2]), float(r[3]), r[4]) for r in rows}


def pitr_items(store: Store) -> list[dict[str, Any]]:
    """The recorded subscriptions whose plan has ``backup.pitr``, as ``{name, state,
    effective: {backup: {pitr}, databases}}`` (what ``drivers.backup.pitr.servers`` reads):
    one query, the rest of each status document left in SQLite."""
    rows = store._fetchall(
        "SELECT name, json_extract(doc, '$.state'), json_extract(doc, '$.effective.databases') FROM status "
        "WHERE json_extract(doc, '$.effective.backup.pitr') = 1 ORDER BY name")
    return [{"name": n, "state": st, "effective": {"backup": {"pitr": True}, "databases": codec.loads(dbs or "[]")}}
            for n, st, dbs in rows]
