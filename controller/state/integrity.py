"""Is this file a tenantctl state store, whole, and how may a reader open it?

Checks made before SQLite touches a file, so that a truncated, foreign or damaged file
gives one line naming the file and what to do (``errors.NotAStore`` /
``errors.CorruptStore``, both ``controller.errors.StateError``) rather than a traceback
deep in a query, and so that a read-only open never makes SQLite create ``-wal`` or
``-shm`` files next to it:

* ``inspect_file`` reads the 100-byte SQLite header: magic, page size, the journal mode
  the file was left in (WAL or rollback) and, when no ``-wal`` holds newer pages, the
  size the header announces against the file's real size (a truncated copy is caught
  here).
* ``check_identity`` recognises our files by ``PRAGMA application_id`` (set by the
  second migration) or, for files from before it, by the tables of the first schema.
* ``corrupt`` turns SQLite's ``DatabaseError`` ("file is not a database", "database
  disk image is malformed") into ``CorruptStore``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

from controller.state import errors

APPLICATION_ID = int.from_bytes(b"tnct", "big")
"""``PRAGMA application_id`` of a tenantctl state store (0x746e6374)."""

V1_TABLES = frozenset(
    {"subscriptions", "sticky", "transfers", "fingerprints", "conditions", "backoff", "status", "usage", "events"}
)
"""The tables of schema version 1, which had no application id."""

MAGIC = b"SQLite format 3\x00"

Signature = tuple[int, int, int, bool]
"""What changes when another process writes the file: inode, size, mtime, ``-wal`` exists."""


def advice(path: Path) -> str:
    """What to do about a damaged store: the same words everywhere."""
    return f"restore a backup with `tenantctl state restore FILE` (nightly copies in {path.parent / 'backups'})"


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def shm_path(db: Path) -> Path:
    return db.with_name(db.name + "-shm")


@dataclasses.dataclass(frozen=True)
class Header:
    """What the first 100 bytes of an SQLite file say."""

    page_size: int
    pages: int | None
    """Pages the header announces, when that field is valid (else None)."""
    wal: bool
    """The file was left in WAL mode (a reader would open, or create, ``-wal``/``-shm``)."""


def inspect_file(path: Path, *, check_size: bool) -> Header | None:
    """The header of ``path``; None for an empty (0-byte) file.

    ``check_size``: compare the announced size with the real one (only meaningful when
    no ``-wal`` file holds pages not yet copied back). Raises ``NotAStore`` or
    ``CorruptStore``; ``FileNotFoundError`` if missing.
    """
    with path.open("rb") as f:
        head = f.read(100)
        size = os.fstat(f.fileno()).st_size
    if not head:
        return None
    if not head.startswith(MAGIC[: len(head)]):
        raise errors.NotAStore(
            f"{path}: not a tenantctl state store (not an SQLite database: {size} bytes of something else); "
            f"point TENANTCTL_STATE_DIR at tenantctl's state directory, or {advice(path)}"
        )
    if len(head) < 100:
        raise errors.CorruptStore(f"{path}: truncated state store ({size} bytes, not even a header); {advice(path)}")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise errors.CorruptStore(f"{path}: corrupt state store (page size {page_size} in its header); {advice(path)}")
    valid = head[92:96] == head[24:28]  # "version-valid-for" matches the change counter
    pages = int.from_bytes(head[28:32], "big") if valid else None
    if check_size and (size % page_size or (pages and size < pages * page_size)):
        expected = f"{pages * page_size}" if pages else f"a multiple of {page_size}"
        raise errors.CorruptStore(f"{path}: truncated state store ({size} bytes, expected {expected}); {advice(path)}")
    return Header(page_size=page_size, pages=pages, wal=head[18] == 2 or head[19] == 2)


def check_identity(conn: sqlite3.Connection, path: Path) -> None:
    """Raise ``NotAStore`` unless the open database is a tenantctl store (or new and empty)."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id == APPLICATION_ID:
        return
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
    }
    if app_id == 0 and ((version == 0 and not tables) or (version >= 1 and tables >= V1_TABLES)):
        return
    if app_id != 0:
        what = f"application_id {app_id:#x}"
    else:
        shown = sorted(tables)
        what = "tables " + ", ".join(shown[:4]) + (", ..." if len(shown) > 4 else "") if shown else "no tables"
    raise errors.NotAStore(
        f"{path}: not a tenantctl state store (an SQLite database of another application: {what}); "
        f"point TENANTCTL_STATE_DIR at tenantctl's state directory or move this file away"
    )


def corrupt(path: Path, exc: sqlite3.DatabaseError) -> errors.CorruptStore:
    """The one-line error for SQLite's own diagnosis of a damaged file."""
    return errors.CorruptStore(f"{path}: corrupt state store ({exc}); {advice(path)}")


def is_damage(exc: BaseException) -> bool:
    """SQLite's errors that mean the file is damaged (not a lock, a constraint or our SQL)."""
    return type(exc) is sqlite3.DatabaseError


def signature(path: Path) -> Signature:
    """Changes whenever another process writes ``path`` (or starts to, creating ``-wal``)."""
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns, wal_path(path).exists()


def quick_check(conn: sqlite3.Connection) -> str | None:
    """SQLite's ``quick_check``: None when the file is sound, else its first complaint."""
    rows = conn.execute("PRAGMA quick_check").fetchall()
    first = str(rows[0][0]) if rows else "no answer"
    return None if first == "ok" else first
