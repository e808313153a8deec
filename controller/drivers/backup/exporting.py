"""A customer's export of one database (BKP-7): a plain SQL dump made now on the server
that hosts it, streamed over SSH into a private file on the controller.

It counts only when the dump tool exited 0 and its output ends with the tool's
completion marker; otherwise the file is removed and the error says why. MariaDB 10.11
dumps start with a ``/*M!999999\\- enable the sandbox mode */`` line that older clients
refuse (field notes): it is dropped, so the dump loads anywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

from controller import errors
from controller.drivers import transport

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MARKERS = {"mariadb": b"-- Dump completed", "postgresql": b"-- PostgreSQL database dump complete"}
SANDBOX = b"/*M!999999\\- enable the sandbox mode */"


def argv(engine: str, database: str) -> list[str]:
    if not _NAME.match(database):
        raise errors.PermanentError(f"not a database name: {database!r}")
    if engine == "mariadb":
        return ["mariadb-dump", "--single-transaction", "--routines", "--events", "--triggers", "--hex-blob",
                "--default-character-set=utf8mb4", "--", database]
    if engine == "postgresql":
        return ["runuser", "-u", "postgres", "--", "pg_dump", "--no-owner", "--no-privileges", "--format=plain",
                "--dbname", database]
    raise errors.PermanentError(f"unknown database engine {engine!r}")


def export(remote: transport.Transport, engine: str, database: str, dest: Path) -> Path:
    rc = remote.fetch(argv(engine, database), dest)
    if rc != 0:
        raise errors.DriverError(f"{remote.label}: dump of {database} ({engine}) failed with exit status {rc}")
    with dest.open("rb") as fh:
        first = fh.readline()
        fh.seek(max(0, dest.stat().st_size - 4096))
        tail = fh.read()
    if MARKERS[engine] not in tail:
        dest.unlink(missing_ok=True)
        raise errors.DriverError(f"{remote.label}: dump of {database} is incomplete (no completion marker)")
    if first.startswith(SANDBOX):
        data = dest.read_bytes()
        dest.write_bytes(data[len(first):])
    return dest
