"""Copies of the state store: taken online, kept for 14 days, put back whole.

Belongs here: naming and pruning the copies in ``<state>/backups/``
(``state-<UTC timestamp>.db``, mode 0600), the nightly copy the controller loop asks
for (``nightly``), checking that a file is a store this code can read (``inspect``)
and replacing the live store with one (``restore``). The copy itself is
``Store.backup_to`` (SQLite's online backup API).

A restore needs the store to itself: it holds the state directory's opening lock (no
store opens meanwhile) and ``<db>.lock`` exclusively (``StoreInUse`` if a controller,
``apply`` or the operator has it open), keeps the replaced file (and its ``-wal``) as
``state.db.before-restore-<timestamp>``, and moves the copy in with one rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from controller.state import errors, integrity, locks, migrations, store

KEEP = 14
"""How many copies ``prune`` (and so the nightly backup) keeps."""

PREFIX = "state-"
SUFFIX = ".db"


def stamp(now: datetime) -> str:
    """``20261130T104656Z``: sorts as time does."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def default_name(now: datetime) -> str:
    return f"{PREFIX}{stamp(now)}{SUFFIX}"


def copies(directory: Path) -> list[Path]:
    """The backups in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX))


def prune(directory: Path, keep: int = KEEP) -> list[Path]:
    """Remove all but the ``keep`` most recent copies; return the removed ones."""
    old = copies(directory)[:-keep] if keep > 0 else copies(directory)
    for path in old:
        path.unlink(missing_ok=True)
    return old


def take(st: store.Store, directory: Path, now: datetime, *, keep: int = KEEP) -> Path:
    """A new copy in ``directory`` named after ``now``; older copies beyond ``keep`` go."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = st.backup_to(directory / default_name(now))
    prune(directory, keep)
    return path


def nightly(st: store.Store, directory: Path, now: datetime, *, keep: int = KEEP) -> Path | None:
    """The controller's daily copy: taken unless one of ``now``'s UTC day exists.

    Returns the new copy's path, or None when today's copy was already there (cheap:
    one directory listing), so the loop may call it on every timer tick.
    """
    today = f"{PREFIX}{now.astimezone(UTC):%Y%m%d}T"
    if any(p.name.startswith(today) for p in copies(directory)):
        return None
    return take(st, directory, now, keep=keep)


@dataclasses.dataclass(frozen=True)
class Contents:
    """What a store file holds, as ``restore`` reports it."""

    path: Path
    version: int
    subscriptions: int
    deleted: int
    events: int
    runs: int

    def describe(self) -> str:
        return (
            f"{self.subscriptions} subscriptions ({self.deleted} deleted), {self.events} events, "
            f"{self.runs} runs (schema version {self.version})"
        )


def inspect(path: Path) -> Contents:
    """Check that ``path`` is a whole tenantctl store this code can read; count its rows.

    Opens a private copy, so neither ``path`` nor its directory is touched. Raises
    ``NotAStore``, ``CorruptStore`` or ``SchemaTooNew`` (all ``StateError``), or
    ``FileNotFoundError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if integrity.inspect_file(path, check_size=True) is None:
        raise errors.CorruptStore(f"{path}: empty (0 bytes), not a backup of a state store")
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"  # a backup nobody writes
    conn = sqlite3.connect(uri, uri=True)
    try:
        integrity.check_identity(conn, path)
        version = migrations.check_version(conn, str(path))
        problem = integrity.quick_check(conn)
        if problem is not None:
            raise errors.CorruptStore(f"{path}: corrupt ({problem}); not usable as a state store")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 or not tables >= integrity.V1_TABLES:
            raise errors.NotAStore(f"{path}: an empty SQLite file, not a backup of a state store")
        live, deleted, events = conn.execute(
            "SELECT (SELECT count(*) FROM subscriptions WHERE deleted_at IS NULL), "
            "(SELECT count(*) FROM subscriptions WHERE deleted_at IS NOT NULL), (SELECT count(*) FROM events)"
        ).fetchone()
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except sqlite3.DatabaseError as exc:
        if integrity.is_damage(exc):
            raise integrity.corrupt(path, exc) from exc
        raise
    finally:
        conn.close()
    return Contents(path, version, live, deleted, events, runs)


@dataclasses.dataclass(frozen=True)
class Restored:
    """The outcome of ``restore``."""

    source: Contents
    kept: Path | None
    """Where the replaced store went (None if there was none)."""


def restore(source: Path, db: Path, now: datetime) -> Restored:
    """Replace the store at ``db`` by the copy ``source``.

    Refuses (``StoreInUse``) while a read-write store has ``db`` open in any process;
    readers that have the old file open keep reading it until they close. The copy must
    pass ``inspect``; an older schema is migrated by the next read-write open.
    """
    contents = inspect(source)
    db.parent.mkdir(parents=True, exist_ok=True)
    with locks.opening(db.parent), locks.exclusive_holder(db):
        tmp = db.with_name(f".{db.name}.restore-{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o600)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        kept: Path | None = None
        if db.exists():
            _checkpoint(db)
            kept = db.with_name(f"{db.name}.before-restore-{stamp(now)}")
            os.replace(db, kept)
            for side in (integrity.wal_path(db), integrity.shm_path(db)):
                if side.exists():
                    os.replace(side, kept.with_name(kept.name + side.name[len(db.name):]))
        os.replace(tmp, db)
    return Restored(contents, kept)


def _checkpoint(db: Path) -> None:
    """Fold a left-over ``-wal`` into the file being replaced, if it is sound enough."""
    if not integrity.wal_path(db).exists():
        return
    with contextlib.suppress(sqlite3.Error, OSError):
        conn = sqlite3.connect(db, timeout=0)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
