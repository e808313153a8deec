"""Final dumps (LIFE-6) and dumps before dropping a database removed from a spec.

Run from the controller host over TCP with the server's admin login: ``mariadb-dump
--single-transaction --routines --events`` (password in a 0600 ``--defaults-file``) or
``pg_dump`` (password in ``PGPASSWORD``); never on a command line. The output is
compressed (zstd when installed, else gzip) into ``<state>/retained/<sub>/<UTC ts>-<db>
.sql.zst|.gz`` through a temporary name; it counts only when the dump exited 0, ended
with the tool's completion marker and the file is non-empty.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, cast

from controller import errors
from controller.drivers.db import credentials

RETAINED = "retained"
#: The last line each tool writes when a dump completed.
MARKERS = {"mariadb": b"-- Dump completed", "postgresql": b"-- PostgreSQL database dump complete"}
CHUNK = 1 << 20


def retained_dir(state_dir: Path, sub: str) -> Path:
    d = credentials.sub_dir(state_dir, sub).parent.parent / RETAINED / sub  # sub_dir validates the name
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    d.parent.chmod(0o700)
    d.chmod(0o700)
    return d


def _command(engine: str, host: str, port: int, user: str, password: str, database: str,
             tmp: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if engine == "mariadb":
        tool = shutil.which("mariadb-dump") or shutil.which("mysqldump")
        if tool is None:
            raise errors.PermanentError("mariadb-dump is not installed on the controller host (mariadb-client)")
        defaults = tmp / "client.cnf"
        fd = os.open(defaults, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f'[client]\nuser="{user}"\npassword="{password}"\n'
                    f"host={host}\nport={port}\nprotocol=tcp\n")
        return [tool, f"--defaults-file={defaults}", "--single-transaction", "--routines", "--events",
                "--triggers", "--hex-blob", "--default-character-set=utf8mb4", "--", database], env
    tool = shutil.which("pg_dump")
    if tool is None:
        raise errors.PermanentError("pg_dump is not installed on the controller host (postgresql-client)")
    env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = "10"
    return [tool, "--host", host, "--port", str(port), "--username", user, "--no-password",
            "--no-owner", "--no-privileges", "--format=plain", "--dbname", database], env


def _sink(path: Path) -> tuple[IO[bytes], subprocess.Popen[bytes] | None]:
    zstd = shutil.which("zstd")
    if zstd:
        proc = subprocess.Popen([zstd, "-q", "-3", "-f", "-o", str(path)], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        return proc.stdin, proc
    return cast(IO[bytes], gzip.open(path, "wb", compresslevel=6)), None


def dump(state_dir: Path, sub: str, db: str, *, engine: str, host: str, port: int, user: str, password: str,
         database: str, now: dt.datetime | None = None) -> Path:
    """Dump ``database`` and return the retained file; raise ``DriverError`` (and keep
    nothing) unless the dump is complete."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    ext = ".sql.zst" if shutil.which("zstd") else ".sql.gz"
    final = retained_dir(state_dir, sub) / f"{stamp}-{db}{ext}"
    partial = final.with_name(final.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="tenantctl-dump-") as tmpdir:
        argv, env = _command(engine, host, port, user, password, database, Path(tmpdir))
        tail = b""
        size = 0
        out, compressor = _sink(partial)
        try:
            with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
                assert proc.stdout is not None and proc.stderr is not None
                for chunk in iter(lambda: proc.stdout.read(CHUNK), b""):  # type: ignore[union-attr]
                    out.write(chunk)
                    size += len(chunk)
                    tail = (tail + chunk)[-4096:]
                stderr = proc.stderr.read().decode(errors="replace").strip()
                rc = proc.wait()
        finally:
            out.close()
            crc = compressor.wait() if compressor is not None else 0
    problem = ""
    if rc != 0:
        problem = f"exit status {rc}: {stderr[-500:]}"
    elif crc != 0:
        problem = f"compressor exit status {crc}"
    elif size == 0 or MARKERS[engine] not in tail:
        problem = "incomplete output (no completion marker)"
    elif not partial.exists() or partial.stat().st_size == 0:
        problem = "empty file"
    if problem:
        partial.unlink(missing_ok=True)
        raise errors.TemporaryError(f"dump of {db} ({engine}) failed: {problem}", delay=30.0)
    partial.chmod(0o600)
    os.replace(partial, final)
    return final
