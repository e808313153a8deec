"""The ``binlog`` entry of the agent: MariaDB binary-log archiving (standard library and
``controller.agent`` only: it runs on the servers, from the zipapp).

* ``grant`` (source MariaDB server): the archivers' login ``'LOGIN'@'ADDR'`` for each
  archiving repository server's address (REPLICATION SLAVE, BINLOG MONITOR), its
  password set, logins from other addresses dropped; SQL on the client's stdin (never on
  a command line). Refused when binary logging is off.
* ``archive`` (repository server): one option file per source (0600, user
  tenantctl-binlog), ``sources.json``, the supervisor (``supervisor.py``, staged by the
  controller: the zipapp holds only this module), the service named in ``/etc/tenantctl/autostart.d/``; the service is
  restarted when any of it changed, started when it is not running, else left alone.
* ``archived`` (repository server): the archive's files and the newest archived event's
  time, per source.
* ``logs`` (source): ``SHOW BINARY LOGS`` and the time of the first event the archive
  lacks (read from the event header at the archived size).
* ``position`` (any server with restic): the binlog position the nightly dump recorded
  (the head of ``restic dump``, read until the ``CHANGE MASTER`` comment).
"""

from __future__ import annotations

import ipaddress
import json
import os
import pwd
import re
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from controller.agent import binlogjobs, files, jobs, restic

LOGIN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PASSWORD = re.compile(r"^[A-Za-z0-9]{16,128}$")
SOURCE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DATABASE = re.compile(r"^[a-z0-9_]{1,64}$")
#: fixed names (controller/provisioning/binlog.py and the role's pitr-mariadb.yml agree)
USER = "tenantctl-binlog"
SERVICE = "tenantctl-binlog"
ROOT = "/var/lib/tenantctl-binlog"
ETC = "/etc/tenantctl-binlog"
SUPERVISOR = "/usr/local/lib/tenantctl-binlog/supervisor.py"
AUTOSTART = "/etc/tenantctl/autostart.d/tenantctl-binlog"
#: the staged file of an ``archive`` job holding the supervisor (controller/drivers/binlog/supervisor.py)
SUPERVISOR_STAGED = "supervisor.py"
#: bytes of a dump read at most while looking for its position
HEAD_LIMIT = 1 << 16


# --- binary-log facts (the controller reads them with the same code) ----------------------------

#: a binary log's name (``mariadb-bin.000012``)
LOG_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{6}$")
MAGIC = b"\xfebin"
HEADER = struct.Struct("<IBIIIH")
#: the comment ``mariadb-dump --master-data=2`` writes near the top of a dump
_CHANGE_MASTER = re.compile(rb"^-- CHANGE MASTER TO MASTER_LOG_FILE='(?P<file>[A-Za-z0-9_.-]+)', "
                            rb"MASTER_LOG_POS=(?P<pos>[0-9]+);", re.M)
#: an event's comment line in ``mariadb-binlog`` output
_EVENT = re.compile(r"^#\d{6} +\d{1,2}:\d\d:\d\d server id \d+ +end_log_pos (?P<pos>\d+)\b(?P<rest>.*)$")


@dataclass(frozen=True)
class Event:
    offset: int
    timestamp: int
    type: int
    size: int


def log_name(name: str) -> str:
    """``name`` if it is a binary log's file name, else ValueError."""
    if not isinstance(name, str) or not LOG_NAME.match(name):
        raise ValueError(f"not a binary log name: {name!r}")
    return name


def events(fh: BinaryIO, start: int = 4) -> list[Event]:
    """The complete events of an open binlog file from ``start`` (a partial last event,
    still being written, is left out)."""
    fh.seek(0, 2)
    end = fh.tell()
    fh.seek(0)
    if fh.read(4) != MAGIC:
        raise ValueError("not a binary log (no magic number)")
    out = []
    offset = max(4, start)
    while offset + HEADER.size <= end:
        fh.seek(offset)
        ts, kind, _server, size, _next, _flags = HEADER.unpack(fh.read(HEADER.size))
        if size < HEADER.size or offset + size > end:
            break
        out.append(Event(offset, ts, kind, size))
        offset += size
    return out


def event_time_at(fh: BinaryIO, offset: int) -> int | None:
    """The timestamp of the event starting at ``offset`` (None: no complete header there)."""
    fh.seek(offset)
    raw = fh.read(HEADER.size)
    if len(raw) < HEADER.size:
        return None
    ts: int = HEADER.unpack(raw)[0]
    return ts


def newest_time(fh: BinaryIO) -> int:
    """The newest timestamp of the file's complete events (0: none)."""
    return max((e.timestamp for e in events(fh)), default=0)


def binary_logs(text: str) -> list[tuple[str, int]]:
    """``SHOW BINARY LOGS`` in batch mode without column names: (name, size) rows."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[1].isdigit():
            raise ValueError(f"not a SHOW BINARY LOGS row: {line!r}")
        rows.append((log_name(cols[0]), int(cols[1])))
    return rows


def master_status(text: str) -> tuple[str, int] | None:
    """``SHOW MASTER STATUS`` (batch, no column names): (file, position), None if off."""
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[1].isdigit():
            return log_name(cols[0]), int(cols[1])
    return None


def dump_position(head: bytes) -> tuple[str, int] | None:
    """The binlog position a dump's header records (``--master-data=2``), if any."""
    m = _CHANGE_MASTER.search(head)
    if m is None:
        return None
    return log_name(m["file"].decode()), int(m["pos"])


class Progress:
    """Follows ``mariadb-binlog`` output over ``files`` (decoded in one run): which file
    and position the last event printed ended at. Each file's output starts with its
    format description event (``Start: binlog v 4``)."""

    def __init__(self, files: list[str], start: int) -> None:
        self.files = files
        self.index = -1
        self.position = start

    def feed(self, line: str) -> None:
        m = _EVENT.match(line)
        if m is None:
            return
        if "Start: binlog v 4" in m["rest"]:
            self.index += 1
            if self.index > 0:
                self.position = 4
            return
        self.position = max(self.position, int(m["pos"])) if self.index <= 0 else int(m["pos"])

    @property
    def stopped_at(self) -> str:
        name = self.files[max(0, min(self.index, len(self.files) - 1))] if self.files else ""
        return f"{name}:{self.position}"


class Problem(Exception):
    """An expected failure (its message is the outcome's)."""


def _mariadb(sql: str, timeout: float = 60) -> str:
    """Run SQL as the server's root (socket) with the statements on stdin."""
    try:
        done = subprocess.run(["mariadb", "--batch", "--skip-column-names"], input=sql, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Problem(f"mariadb: {exc}") from exc
    if done.returncode != 0:
        raise Problem(f"mariadb exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def _quote(value: str) -> str:
    """A checked value as an SQL string literal (only [A-Za-z0-9_.:-] gets here)."""
    if not re.match(r"^[A-Za-z0-9_.:-]*$", value):
        raise Problem(f"refusing to quote {value!r}")
    return f"'{value}'"


# --- grant -------------------------------------------------------------------------------------


def grant(b: binlogjobs.BinlogJob) -> binlogjobs.BinlogOutcome:
    if not LOGIN.match(b.login) or not PASSWORD.match(b.password):
        raise ValueError("grant: not a login or password")
    hosts = sorted({str(ipaddress.ip_address(h)) for h in b.hosts})
    if _mariadb("SELECT @@log_bin").strip() != "1":
        return binlogjobs.BinlogOutcome(False, "binary logging is off on this server (log-bin)")
    present = {line.strip() for line in _mariadb(
        f"SELECT Host FROM mysql.user WHERE User = {_quote(b.login)}").splitlines() if line.strip()}
    sql = []
    for h in hosts:
        who = f"{_quote(b.login)}@{_quote(h)}"
        sql += [f"CREATE USER IF NOT EXISTS {who} IDENTIFIED BY {_quote(b.password)};",
                f"ALTER USER {who} IDENTIFIED BY {_quote(b.password)};",
                f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO {who};"]
    for h in sorted(present - set(hosts)):
        if re.match(r"^[A-Za-z0-9_.:%-]+$", h):
            sql.append(f"DROP USER IF EXISTS {_quote(b.login)}@'{h}';")
    try:
        _mariadb("\n".join(sql))
    except Problem as exc:  # an error may quote the statement: never the password
        raise Problem(str(exc).replace(b.password, "***")) from None
    return binlogjobs.BinlogOutcome(True, changed=set(hosts) != present)


# --- archive -----------------------------------------------------------------------------------


def _option_file(src: binlogjobs.Source) -> bytes:
    if not PASSWORD.match(src.password):
        raise ValueError(f"archive: not a password for {src.name!r}")
    return f"[client]\nuser={_LOGIN_OF_ARCHIVERS}\npassword={src.password}\n".encode()


#: the archivers' login (controller.provisioning.binlog.LOGIN)
_LOGIN_OF_ARCHIVERS = "tenantctl_binlog"


def _running() -> bool:
    return files.run(["service", SERVICE, "status"], timeout=30)[0] == 0


#: seconds a restarted supervisor has to show up (``start-stop-daemon --background``
#: writes its pidfile from the forked child: a loaded server may take a moment)
START_WAIT = 15.0


def _started(wait: float = START_WAIT) -> bool:
    """Whether the supervisor runs, asked until ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        if _running():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def archive(b: binlogjobs.BinlogJob, stage: str) -> binlogjobs.BinlogOutcome:
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        return binlogjobs.BinlogOutcome(False, f"no user {USER!r} (not a backup server?)")
    config: list[dict[str, object]] = []
    wanted: dict[str, bytes] = {}
    for src in sorted(b.sources, key=lambda s: s.name):
        if not SOURCE.match(src.name):
            raise ValueError(f"archive: not a server name: {src.name!r}")
        host = str(ipaddress.ip_address(src.host))
        if not 0 < src.port < 65536 or not 0 < src.replica_id < 2**32:
            raise ValueError(f"archive: bad port or replica id for {src.name!r}")
        defaults = f"{ETC}/{src.name}.cnf"
        wanted[defaults] = _option_file(src)
        config.append({"name": src.name, "host": host, "port": src.port, "defaults": defaults,
                       "replica_id": src.replica_id, "dir": f"{ROOT}/{src.name}"})
    code = files.read(os.path.join(stage, SUPERVISOR_STAGED))
    if code is None:
        raise Problem(f"the job lacks the staged {SUPERVISOR_STAGED}")
    changed = False
    for path, data in wanted.items():
        if files.read(path) != data:
            files.write(path, data, 0o600, uid=user.pw_uid, gid=user.pw_gid)
            changed = True
    for name in os.listdir(ETC):
        path = f"{ETC}/{name}"
        if name.endswith(".cnf") and path not in wanted:
            os.unlink(path)
            changed = True
    for path, data, mode in ((f"{ETC}/sources.json", json.dumps({"sources": config}, indent=1).encode(), 0o640),
                             (SUPERVISOR, code, 0o644)):
        if files.read(path) != data:
            files.write(path, data, mode, gid=user.pw_gid)
            changed = True
    for src in b.sources:
        os.makedirs(f"{ROOT}/{src.name}", mode=0o750, exist_ok=True)
        os.chown(f"{ROOT}/{src.name}", user.pw_uid, user.pw_gid)
    os.makedirs(os.path.dirname(AUTOSTART), mode=0o755, exist_ok=True)
    if files.read(AUTOSTART) != f"{SERVICE}\n".encode():
        files.write(AUTOSTART, f"{SERVICE}\n".encode(), 0o644)
    if not config:
        files.run(["service", SERVICE, "stop"], timeout=60)
        return binlogjobs.BinlogOutcome(True, changed=changed)
    if changed or not _running():
        code_, out = files.run(["service", SERVICE, "restart"], timeout=60)
        if code_ != 0 or not _started():
            return binlogjobs.BinlogOutcome(False, f"{SERVICE} does not run {START_WAIT:.0f} s after its "
                                                   f"restart: {out.strip()[-500:]}")
        changed = True
    return binlogjobs.BinlogOutcome(True, changed=changed)


# --- archived / logs ---------------------------------------------------------------------------


def archived(b: binlogjobs.BinlogJob) -> binlogjobs.BinlogOutcome:
    out = {}
    for name in b.names:
        if not SOURCE.match(name):
            raise ValueError(f"archived: not a server name: {name!r}")
        d = f"{ROOT}/{name}"
        logs = sorted(n for n in (os.listdir(d) if os.path.isdir(d) else []) if LOG_NAME.match(n))
        entries = [binlogjobs.LogFile(n, os.path.getsize(f"{d}/{n}")) for n in logs]
        newest = 0
        for n in reversed(logs):  # the newest file with a complete event
            with open(f"{d}/{n}", "rb") as fh:
                try:
                    newest = newest_time(fh)
                except ValueError:
                    newest = 0
            if newest:
                break
        out[name] = binlogjobs.Archive(entries, newest)
    return binlogjobs.BinlogOutcome(True, archives=out)


def logs(b: binlogjobs.BinlogJob) -> binlogjobs.BinlogOutcome:
    rows = binary_logs(_mariadb("SHOW BINARY LOGS"))
    base = _mariadb("SELECT @@log_bin_basename").strip()
    folder = os.path.dirname(base)
    unarchived = 0
    for name, size in rows:
        have = b.archived.get(name, 0)
        if have >= size:
            continue
        with open(os.path.join(folder, name), "rb") as fh:
            ts = event_time_at(fh, max(4, have))
        unarchived = ts or 0
        break
    return binlogjobs.BinlogOutcome(True, logs=[binlogjobs.LogFile(n, s) for n, s in rows], unarchived=unarchived)


# --- position ------------------------------------------------------------------------------------


def position(b: binlogjobs.BinlogJob, stage: str) -> binlogjobs.BinlogOutcome:
    if b.repo is None or not b.snapshot or not DATABASE.match(b.database):
        raise ValueError("position: needs a repository, a snapshot and a database")
    if not re.match(r"^[0-9a-f]{8,64}$", b.snapshot):
        raise ValueError(f"position: not a snapshot id: {b.snapshot!r}")
    r = restic.Restic(b.repo, stage, b.cacert)
    proc = r.dump(b.snapshot, f"/{b.database}.sql")
    assert proc.stdout is not None and proc.stderr is not None
    head = b""
    try:
        while len(head) < HEAD_LIMIT and (found := dump_position(head)) is None:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            head += chunk
        found = dump_position(head)
    finally:
        proc.kill()
        proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()
        proc.stdout.close()
        proc.stderr.close()
    if found is None:
        if not head:
            return binlogjobs.BinlogOutcome(False, f"restic dump of {b.snapshot[:12]} failed: {err[-500:]}")
        return binlogjobs.BinlogOutcome(True, "the dump recorded no binlog position")
    return binlogjobs.BinlogOutcome(True, file=found[0], position=found[1])


ACTIONS: dict[str, Callable[[binlogjobs.BinlogJob, str], binlogjobs.BinlogOutcome]] = {
    "grant": lambda b, _s: grant(b), "archive": archive, "archived": lambda b, _s: archived(b),
    "logs": lambda b, _s: logs(b), "position": position,
}


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    if job.binlog is None:
        raise ValueError(f"{job.op}: the job has no binlog section")
    action = ACTIONS.get(job.binlog.action)
    if action is None:
        return jobs.Outcome(jobs.VERSION, binlog=binlogjobs.BinlogOutcome(
            False, f"unknown action {job.binlog.action!r}"))
    try:
        out = action(job.binlog, stage)
    except (Problem, OSError, ValueError) as exc:
        out = binlogjobs.BinlogOutcome(False, str(exc))
    return jobs.Outcome(jobs.VERSION, binlog=out)
