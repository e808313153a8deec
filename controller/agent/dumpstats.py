"""What a backup recorded, recomputable from a restored copy: per-table row counts and
digests of a SQL dump stream, and manifests of a directory tree.

* ``DumpStats`` reads a dump as it streams (chunks of any size): MariaDB
  ``--skip-extended-insert`` dumps (one ``INSERT INTO `t` VALUES (...);`` line per row)
  and PostgreSQL plain dumps (``COPY schema.t (...) FROM stdin;`` blocks, one line per
  row). A table's digest is the sum of its row lines' SHA-256 modulo 2**256: the same
  rows in any order give the same digest, a changed, missing or duplicated row another.
  Tables without rows count from their ``CREATE TABLE``. ``complete`` says whether the
  dump's completion marker closed the stream (a dump that died half-way has none;
  PostgreSQL 15.14+ dumps end with ``\\unrestrict KEY`` after it).
* ``manifest`` / ``settled`` / ``aggregate``: SHA-256 and size of every regular file
  under a directory (symlinks and special files are not content), the files that changed
  while a backup read them, and one digest over ``relpath NUL sha256`` lines (sorted).

Standard library only (runs on servers from the agent's zipapp).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from controller.agent import backupjobs

#: the last comment of a dump that ran to its end
MARKERS = (b"-- Dump completed", b"-- PostgreSQL database dump complete")
#: what may follow the marker: comments, and pg_dump's (15.14+) end of restricted mode
_TRAILER = (b"--", b"\\unrestrict ")
_MOD = 1 << 256
_MARIADB_CREATE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
_MARIADB_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` VALUES ")
_PG_CREATE = re.compile(rb"^CREATE (?:UNLOGGED )?TABLE ([^ (]+) \(")
_PG_COPY = re.compile(rb"^COPY ([^ (]+) (?:\(.*\) )?FROM stdin;$")


class DumpStats:
    """Feed a dump's bytes (``feed``), then read ``tables`` / ``complete`` / ``size``."""

    def __init__(self) -> None:
        self.size = 0
        self._rows: dict[str, int] = {}
        self._sums: dict[str, int] = {}
        self._rest = b""
        self._copy: str | None = None  # PostgreSQL: the table whose COPY block is open
        self._done = False  # a completion marker, followed by trailer lines only

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            self._line(line)

    def _table(self, name: bytes) -> str:
        key = name.decode(errors="replace")
        self._rows.setdefault(key, 0)
        self._sums.setdefault(key, 0)
        return key

    def _row(self, table: str, line: bytes) -> None:
        self._rows[table] += 1
        self._sums[table] = (self._sums[table] + int.from_bytes(hashlib.sha256(line).digest(), "big")) % _MOD

    def _line(self, line: bytes) -> None:
        if self._copy is not None:  # row data, whatever it says
            self._done = False
            if line == b"\\.":
                self._copy = None
            else:
                self._row(self._copy, line)
            return
        if line.startswith(MARKERS):
            self._done = True
        elif line.strip() and not line.startswith(_TRAILER):
            self._done = False
        if line.startswith(b"INSERT INTO `"):
            m = _MARIADB_INSERT.match(line)
            if m:
                self._row(self._table(m.group(1)), line)
        elif line.startswith(b"COPY "):
            m = _PG_COPY.match(line)
            if m:
                self._copy = self._table(m.group(1))
        elif line.startswith(b"CREATE "):
            m = _MARIADB_CREATE.match(line) or _PG_CREATE.match(line)
            if m:
                self._table(m.group(1))

    @property
    def complete(self) -> bool:
        """The stream ended with a completion marker, then only comments, blank lines
        and pg_dump's ``\\unrestrict KEY`` (a final unterminated line counts)."""
        if self._rest.startswith(MARKERS):
            return True
        return self._done and (not self._rest.strip() or self._rest.startswith(_TRAILER))

    @property
    def tables(self) -> dict[str, backupjobs.TableSum]:
        return {t: backupjobs.TableSum(self._rows[t], f"{self._sums[t]:064x}") for t in sorted(self._rows)}


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int
    mtime_ns: int


def _excluded(path: str, exclude: list[str]) -> bool:
    return any(path == e or path.startswith(e.rstrip("/") + "/") for e in exclude)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def manifest(root: str, exclude: list[str] | None = None, skip: list[str] | None = None) -> dict[str, Entry]:
    """``{relpath: Entry}`` of every regular file under ``root`` (not following
    symlinks), leaving out absolute paths under ``exclude`` and relative paths in
    ``skip``; files that vanish while it reads are left out."""
    out: dict[str, Entry] = {}
    ex = [os.path.normpath(e) for e in exclude or []]
    left_out = set(skip or [])
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _excluded(os.path.join(top, d), ex))
        for name in sorted(names):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            if rel in left_out or _excluded(path, ex):
                continue
            try:
                st = os.lstat(path)
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                out[rel] = Entry(_sha256(path), st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                continue
    return out


def settled(root: str, entries: dict[str, Entry]) -> tuple[dict[str, Entry], list[str]]:
    """``entries`` without the files whose size or mtime changed since (or that are
    gone): what a backup that ran in between certainly holds; and the changed paths."""
    kept: dict[str, Entry] = {}
    changed: list[str] = []
    for rel, e in entries.items():
        try:
            st = os.lstat(os.path.join(root, rel))
        except FileNotFoundError:
            changed.append(rel)
            continue
        if (st.st_size, st.st_mtime_ns) == (e.size, e.mtime_ns):
            kept[rel] = e
        else:
            changed.append(rel)
    return kept, sorted(changed)


def aggregate(entries: dict[str, Entry]) -> str:
    """One digest of a manifest: SHA-256 over its sorted ``relpath NUL sha256`` lines."""
    h = hashlib.sha256()
    for rel in sorted(entries):
        h.update(f"{rel}\0{entries[rel].sha256}\n".encode(errors="surrogateescape"))
    return h.hexdigest()
