"""The ``pgpitr`` entry of the agent: PostgreSQL PITR with pgBackRest on a server
(standard library and ``controller.agent`` only: it runs from the zipapp).

* ``configure`` (every host of a stanza): the staged ``pgbackrest.conf`` and TLS
  identity, the peers' names in ``/etc/hosts`` (a marked block), and ``pgbackrest
  server`` (SysV script, autostarted after a container restart) restarted only when
  something it reads changed or it does not answer.
* ``archive`` (db host): the archiving settings in ``conf.d``; reload, and a restart
  only when PostgreSQL says one is pending (``archive_mode``); ``stanza-create`` and
  ``check`` when anything changed or they never succeeded for this configuration.
* ``backup`` / ``verify`` (repository host, ``--repo`` = its index).
* ``info`` (db host): ``pgbackrest info`` JSON, ``pg_stat_archiver``, and the age of the
  oldest completed segment not archived yet (``pg_wal/archive_status/*.ready``);
  ``switch``: first a transaction and ``pg_switch_wal()``, waiting until archived.
* ``catalog`` (repository host): ``pgbackrest info`` of one repository (the stanza's db
  host may be down: a lost region's).
* ``recover`` (db host): the stanza restored at a time (``latest``: to the end of the
  archive) into a scratch data directory (``recovery_conf``: another server's stanza,
  read with that configuration, e.g. after its region was lost),
  started on a Unix socket only (no TCP), one database dumped from it and loaded into
  the live one in one transaction (BKP-5 overwrite: what the dump holds is dropped and
  re-created), the scratch stopped and removed whatever happened.

Every expected failure is an outcome with ``ok`` False and the tool's message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

from controller.agent import files, jobs
from controller.agent import pgpitrjobs as pj

PG_AS = ["runuser", "-u", "postgres", "--"]
INIT = "/etc/init.d/tenantctl-pgbackrest"
AUTOSTART = "/etc/tenantctl/autostart.d/pgbackrest"
HOSTS = "/etc/hosts"
BEGIN, END = "# BEGIN tenantctl pgbackrest", "# END tenantctl pgbackrest"
#: digests of configurations whose stanza-create + check succeeded
MARKS = "/var/lib/tenantctl/pitr"
SCRATCH_PORT = 5499
TAIL = 2000
#: seconds a base backup / restore may take
LONG = 6 * 3600.0

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DB = re.compile(r"^[a-z0-9_]{1,63}$")
_LABEL = re.compile(r"^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$")
_TARGET = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?\+00$")
_STAGED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_WAL = re.compile(r"^[0-9A-F]{24}$")

INIT_SCRIPT = b"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          tenantctl-pgbackrest
# Required-Start:    $network $remote_fs $syslog
# Required-Stop:     $network $remote_fs $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: pgBackRest TLS server (tenantctl PITR, written by the pgpitr agent)
### END INIT INFO
PIDFILE=/run/tenantctl-pgbackrest.pid
case "$1" in
    start)
        # --name/--user, not --exec: /proc/PID/exe of another user is unreadable in containers
        start-stop-daemon --start --quiet --oknodo --background --make-pidfile --pidfile "$PIDFILE" \\
            --name pgbackrest --user postgres --chuid postgres:postgres --umask 0077 --chdir /var/lib/postgresql \\
            --startas /usr/bin/pgbackrest -- server
        ;;
    stop)
        start-stop-daemon --stop --quiet --oknodo --retry 10 --pidfile "$PIDFILE" --name pgbackrest --user postgres
        rm -f "$PIDFILE"
        ;;
    restart|force-reload)
        "$0" stop
        "$0" start
        ;;
    status)
        start-stop-daemon --status --pidfile "$PIDFILE" --name pgbackrest --user postgres
        ;;
    *)
        echo "Usage: $0 {start|stop|restart|force-reload|status}" >&2
        exit 3
        ;;
esac
"""


class Problem(Exception):
    """An expected failure (its message is the outcome's)."""


def _check(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise Problem(f"not a {what}: {value!r}")
    return value


def _tail(text: str) -> str:
    return text.strip()[-TAIL:]


def _run(argv: list[str], what: str, timeout: float = 600.0) -> str:
    code, out = files.run(argv, timeout=timeout)
    if code != 0:
        raise Problem(f"{what} exited {code}: {_tail(out)}")
    return out


def pgbackrest(args: list[str], timeout: float = 600.0) -> str:
    return _run([*PG_AS, "pgbackrest", *args], f"pgbackrest {next((a for a in args if not a.startswith('-')), '')}",
                timeout)


def psql(sql: str, db: str = "postgres") -> str:
    return _run([*PG_AS, "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                "psql", 120).strip()


def _ids() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise Problem("no user postgres on this server") from exc
    return pw.pw_uid, pw.pw_gid


def _put(path: str, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> bool:
    """Write ``path`` when its content, mode or owner differ; True if it did."""
    try:
        st = os.stat(path)
        same = files.read(path) == data and st.st_mode & 0o7777 == mode and (st.st_uid, st.st_gid) == (uid, gid)
    except FileNotFoundError:
        same = False
    if not same:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.write(path, data, mode, uid=uid, gid=gid)
    return not same


def version(j: pj.PgPitrJob) -> str:
    """The job's PostgreSQL major version (the controller's, from the db host's release):
    a job that needs one and has none is refused, never guessed."""
    if not j.pg_version:
        raise Problem(f"pgpitr {j.action}: the job names no PostgreSQL version")
    try:
        return pj.major(j.pg_version)
    except ValueError as exc:
        raise Problem(str(exc)) from exc


def _install(f: pj.ConfFile, stage: str, uid: int, gid: int, pg_version: str = "") -> bool:
    mode = (pj.writable(pg_version) if pg_version else pj.WRITABLE).get(f.dest)
    if mode is None:
        raise Problem(f"not a file this agent writes: {f.dest!r}")
    data = files.read(os.path.join(stage, _check(f.src, _STAGED, "staged file name")))
    if data is None:
        raise Problem(f"staged file {f.src!r} missing")
    return _put(f.dest, data, mode, uid, gid)


def hosts_text(current: str, entries: dict[str, str]) -> str:
    """``current`` /etc/hosts with the marked block holding ``entries`` (names checked)."""
    kept, inside = [], False
    for line in current.splitlines():
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif not inside:
            kept.append(line)
    block = [f"{_check(addr, re.compile(r'^[0-9a-fA-F:.]+$'), 'address')} {_check(n, _NAME, 'host name')}"
             for n, addr in sorted(entries.items())]
    return "\n".join(kept + ([BEGIN, *block, END] if block else [])) + "\n"


def _hosts(entries: dict[str, str]) -> bool:
    current = (files.read(HOSTS) or b"").decode()
    wanted = hosts_text(current, entries)
    if wanted == current:
        return False
    with open(HOSTS, "w") as fh:  # in place: Docker bind-mounts /etc/hosts
        fh.write(wanted)
    return True


def _listening(address: str) -> bool:
    try:
        with socket.create_connection((address, pj.TLS_PORT), timeout=2):
            return True
    except OSError:
        return False


def configure(j: pj.PgPitrJob, stage: str) -> pj.PgPitrOutcome:
    uid, gid = _ids()
    changed = False
    for d, mode in (("/etc/pgbackrest", 0o750), (pj.TLS_DIR, 0o700), (pj.REPO_PATH, 0o750),
                    (pj.SPOOL_PATH, 0o750), (pj.LOG_PATH, 0o750)):
        os.makedirs(os.path.dirname(d), exist_ok=True)
        changed |= files.ensure_dir(d, uid, gid, mode)
    for f in j.files:
        changed |= _install(f, stage, uid, gid)
    changed |= _hosts(j.hosts)
    if not j.serve:
        return pj.PgPitrOutcome(True, changed=changed)
    changed |= _put(INIT, INIT_SCRIPT, 0o755)
    changed |= _put(AUTOSTART, b"tenantctl-pgbackrest\n", 0o644)
    if changed or not _listening(j.address):
        _run(["service", "tenantctl-pgbackrest", "restart"], "service tenantctl-pgbackrest restart", 60)
        deadline = time.monotonic() + 15
        while not _listening(j.address):
            if time.monotonic() > deadline:
                raise Problem(f"pgbackrest server does not answer on {j.address}:{pj.TLS_PORT}")
            time.sleep(0.2)
        changed = True
    return pj.PgPitrOutcome(True, changed=changed)


# --- archiving ----------------------------------------------------------------------------------


def _pg_ready(pg_version: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while files.run([*PG_AS, f"{pj.pg_bin(pg_version)}/pg_isready", "-q", "-h", pj.PG_SOCKET], timeout=10)[0] != 0:
        if time.monotonic() > deadline:
            raise Problem("PostgreSQL does not accept connections")
        time.sleep(0.3)


def archive(j: pj.PgPitrJob, stage: str) -> pj.PgPitrOutcome:
    stanza = _check(j.stanza, _NAME, "stanza")
    pg_version = version(j)
    uid, gid = _ids()
    changed = any([_install(f, stage, uid, gid, pg_version) for f in j.files])
    restarted = False
    if changed:
        psql("SELECT pg_reload_conf()")
    # archive_mode and wal_level take effect at a start only: restart once, when they differ
    if psql("SHOW archive_mode") != "on" or psql("SHOW wal_level") not in ("replica", "logical"):
        _run(["pg_ctlcluster", pg_version, "main", "restart"], "pg_ctlcluster restart", 300)
        restarted = True
        deadline = time.monotonic() + 60
        while True:  # pg_ctlcluster may return while the old postmaster still answers
            _pg_ready(pg_version)
            if psql("SHOW archive_mode") == "on":
                break
            if time.monotonic() > deadline:
                raise Problem(f"archive_mode is still off after a restart (is {pj.pg_conf(pg_version)} included?)")
            time.sleep(0.5)
    _pg_ready(pg_version)
    digest = hashlib.sha256(b"".join(files.read(p) or b"" for p in (pj.CONF, pj.pg_conf(pg_version)))).hexdigest()
    mark = os.path.join(MARKS, stanza)
    if changed or restarted or files.read(mark) != digest.encode():
        pgbackrest([f"--stanza={stanza}", "stanza-create"])
        pgbackrest([f"--stanza={stanza}", "check"])
        os.makedirs(MARKS, mode=0o700, exist_ok=True)
        files.write(mark, digest.encode(), 0o600)
        changed = True
    return pj.PgPitrOutcome(True, changed=changed, restarted=restarted)


# --- base backups and verification --------------------------------------------------------------


def _repo(j: pj.PgPitrJob) -> list[str]:
    if j.repo not in (1, 2):
        raise Problem(f"not a repository index: {j.repo!r}")
    return [f"--stanza={_check(j.stanza, _NAME, 'stanza')}", f"--repo={j.repo}"]


def backup(j: pj.PgPitrJob, stage: str) -> pj.PgPitrOutcome:
    if j.kind not in ("full", "diff"):
        raise Problem(f"not a backup type: {j.kind!r}")
    pgbackrest([*_repo(j), f"--type={j.kind}", "backup"], LONG)
    return pj.PgPitrOutcome(True, changed=True, info=pgbackrest([*_repo(j), "--output=json", "info"]))


def catalog(j: pj.PgPitrJob, stage: str) -> pj.PgPitrOutcome:
    return pj.PgPitrOutcome(True, info=pgbackrest([*_repo(j), "--output=json", "info"], 120))


def verify(j: pj.PgPitrJob, stage: str) -> pj.PgPitrOutcome:
    # verify exits 0 even when it found errors (pgbackrest#2502): read its report
    bad = verify_problems(pgbackrest([*_repo(j), "--log-level-console=info", "verify"], LONG))
    return pj.PgPitrOutcome(not bad, "; ".join(bad)[-TAIL:])


def verify_problems(report: str) -> list[str]:
    """The lines of ``pgbackrest verify``'s report that name a problem."""
    return [ln.strip() for ln in report.splitlines()
            if re.search(r"status: (?!valid\b|ok\b)|invalid: [1-9]|missing: [1-9]|other: [1-9]", ln)]


# --- archive state ------------------------------------------------------------------------------


def waiting_seconds(status_dir: str, now: float) -> float:
    """Seconds since the oldest completed segment still waiting to be archived."""
    try:
        ready = [e for e in os.scandir(status_dir) if e.name.endswith(".ready")]
    except FileNotFoundError:
        return 0.0
    oldest = min((e.stat().st_mtime for e in ready), default=now)
    return max(0.0, now - oldest)


def _archiver() -> tuple[str, str, str]:
    row = psql("SELECT coalesce(last_archived_wal, ''), coalesce(extract(epoch FROM last_archived_time)::text, ''), "
               "coalesce(extract(epoch FROM last_failed_time)::text, '') FROM pg_stat_archiver")
    wal, archived, failed = [*row.split("|"), "", "", ""][:3]
    return wal, archived, failed


def _switch(timeout: float = 180.0) -> str:
    """A commit record now (so a target just before now is reachable), a WAL switch, and
    the wait until that segment is archived: the switch's time."""
    psql("SELECT txid_current()")
    row = psql("SELECT pg_walfile_name(pg_switch_wal()) || '|' || extract(epoch FROM clock_timestamp())::text")
    segment, at = row.split("|", 1)
    _check(segment, _WAL, "WAL segment name")
    deadline = time.monotonic() + timeout
    while True:
        wal = _archiver()[0]
        if _WAL.match(wal) and wal >= segment:
            return at
        if time.monotonic() > deadline:
            raise Problem(f"WAL segment {segment} not archived after {timeout:.0f}s (last archived: {wal or 'none'})")
        time.sleep(0.5)


def info(j: pj.PgPitrJob, stage: str) -> pj.PgPitrOutcome:
    stanza = _check(j.stanza, _NAME, "stanza")
    data = pj.pg_data(version(j))
    switched = _switch() if j.switch else ""
    wal, archived, failed = _archiver()
    # lag: PostgreSQL's view only (pgbackrest info waits for a repository that is down)
    doc = "" if j.action == "lag" else pgbackrest([f"--stanza={stanza}", "--output=json", "info"], 120)
    return pj.PgPitrOutcome(True, info=doc, last_archived_wal=wal, last_archived_time=archived,
                            last_failed_time=failed, switched_at=switched,
                            waiting_seconds=round(waiting_seconds(f"{data}/pg_wal/archive_status",
                                                                  time.time()), 3))


# --- recovery -----------------------------------------------------------------------------------


def scratch_conf(scratch: str) -> bytes:
    """The scratch instance's postgresql.conf (``scratch`` is ``pj.scratch``'s: a fixed path)."""
    return f"""# tenantctl PITR scratch instance: Unix socket only, never archives
listen_addresses = ''
port = {SCRATCH_PORT}
unix_socket_directories = '{scratch}'
hot_standby = off
archive_mode = off
shared_buffers = 32MB
logging_collector = off
""".encode()


def _drop_scratch(pg_version: str) -> None:
    scratch = pj.scratch(pg_version)
    if os.path.exists(os.path.join(scratch, "postmaster.pid")):
        files.run([*PG_AS, f"{pj.pg_bin(pg_version)}/pg_ctl", "-D", scratch, "-m", "immediate", "-w", "stop"],
                  timeout=120)
    shutil.rmtree(scratch, ignore_errors=True)
    for leftover in (f"{scratch}.log", recovery_conf_path(pg_version)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)


def recovery_conf_path(pg_version: str) -> str:
    """Where a recovery of another server's stanza keeps its pgBackRest configuration
    (beside the scratch directory: the scratch instance's ``archive-get`` reads it)."""
    return f"{pj.scratch(pg_version)}.pgbackrest.conf"


def finished(where: str, latest: bool) -> bool:
    """Whether the scratch log's ``where`` shows a recovery that reached its end: the
    target (``recovery stopping``), or with ``latest`` the end of the archive."""
    if latest:
        return "redo done" in where or "last completed transaction" in where
    return "recovery stopping" in where


def stopped_at(log: str) -> str:
    """Where recovery stopped, from the scratch instance's log."""
    keep = []
    for pattern in (r"recovery stopping [^\n]*", r"redo done at [0-9A-F]+/[0-9A-F]+", r"last completed transaction "
                    r"was at log time [^\n]*"):
        m = re.search(pattern, log)
        if m:
            keep.append(m.group(0).strip())
    return "; ".join(keep)


def _pipe(src_argv: list[str], dst_argv: list[str], prefix: bytes) -> None:
    """``src_argv``'s output into ``dst_argv`` after ``prefix``; Problem naming the one that failed."""
    with tempfile.TemporaryFile() as src_err, tempfile.TemporaryFile() as dst_out:
        src = subprocess.Popen(src_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=src_err)
        try:
            dst = subprocess.Popen(dst_argv, stdin=subprocess.PIPE, stdout=dst_out, stderr=subprocess.STDOUT)
        except OSError:
            src.kill()
            src.wait()
            raise
        assert src.stdout is not None and dst.stdin is not None
        try:
            with src.stdout:
                dst.stdin.write(prefix)
                while chunk := src.stdout.read(1 << 20):
                    dst.stdin.write(chunk)
        except BrokenPipeError:
            src.kill()
        with contextlib.suppress(BrokenPipeError):
            dst.stdin.close()
        src_code, dst_code = src.wait(), dst.wait()
        src_err.seek(0)
        dst_out.seek(0)
        if src_code != 0:
            raise Problem(f"pg_dump exited {src_code}: {_tail(src_err.read().decode(errors='replace'))}")
        if dst_code != 0:
            raise Problem(f"psql exited {dst_code}: {_tail(dst_out.read().decode(errors='replace'))}")


def recover(j: pj.PgPitrJob, stage: str) -> pj.PgPitrOutcome:
    db = _check(j.database, _DB, "database name")
    target = "" if j.latest else _check(j.target, _TARGET, "recovery target time")
    label = _check(j.backup_set, _LABEL, "backup label")
    repo = _repo(j)
    pg_version = version(j)
    bin_dir, scratch = pj.pg_bin(pg_version), pj.scratch(pg_version)
    scratch_log = f"{scratch}.log"
    owner = psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'")
    if not owner:
        raise Problem(f"no database {db!r} on this server")
    _check(owner, re.compile(r"^[a-z0-9_]{1,63}$"), "database owner")
    uid, gid = _ids()
    _drop_scratch(pg_version)
    try:
        os.mkdir(scratch, 0o700)
        os.chown(scratch, uid, gid)
        config: list[str] = []
        if j.recovery_conf:
            files.write(recovery_conf_path(pg_version), j.recovery_conf.encode(), 0o600, uid=uid, gid=gid)
            config = [f"--config={recovery_conf_path(pg_version)}"]
        kind = ["--type=default"] if j.latest else ["--type=time", f"--target={target}", "--target-action=promote"]
        pgbackrest([*config, *repo, f"--set={label}", f"--pg1-path={scratch}", *kind, "--archive-mode=off",
                    "restore"], LONG)
        for name, data in (("postgresql.conf", scratch_conf(scratch)), ("pg_hba.conf", b"local all postgres peer\n"),
                           ("pg_ident.conf", b"")):
            files.write(os.path.join(scratch, name), data, 0o600, uid=uid, gid=gid)
        with open(scratch_log, "w"):
            pass
        os.chown(scratch_log, uid, gid)
        code, out = files.run([*PG_AS, f"{bin_dir}/pg_ctl", "-D", scratch, "-l", scratch_log, "-w", "-t",
                               str(int(LONG)), "start"], timeout=LONG)
        log = (files.read(scratch_log) or b"").decode(errors="replace")
        if code != 0:
            raise Problem(f"the scratch instance did not recover: {_tail(log) or _tail(out)}")
        # pg_ctl -w returns once the postmaster runs (PG 15 and later: "standby" counts): wait for
        # the end of recovery, i.e. for connections (hot_standby is off)
        deadline = time.monotonic() + LONG
        while True:
            code, out = files.run([*PG_AS, "psql", "-X", "-A", "-t", "-h", scratch, "-p", str(SCRATCH_PORT), "-d",
                                   "postgres", "-c", "SELECT pg_is_in_recovery()"], timeout=60)
            if code == 0 and out.strip() == "f":
                break
            if files.run([*PG_AS, f"{bin_dir}/pg_ctl", "-D", scratch, "status"], timeout=60)[0] != 0:
                log = (files.read(scratch_log) or b"").decode(errors="replace")
                raise Problem(f"the scratch instance stopped while recovering: {_tail(log)}")
            if time.monotonic() > deadline:
                raise Problem(f"the scratch instance did not finish recovery: {_tail(out)}")
            time.sleep(0.3)
        where = stopped_at((files.read(scratch_log) or b"").decode(errors="replace"))
        if not finished(where, j.latest):
            raise Problem(f"recovery did not stop at the target: {where or _tail(log)}")
        dump = [*PG_AS, "pg_dump", "-h", scratch, "-p", str(SCRATCH_PORT), "--format=plain", "--clean",
                "--if-exists", "--no-owner", "--no-privileges", "--", db]
        load = [*PG_AS, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", db, "-f", "-"]
        _pipe(dump, load, f'SET ROLE "{owner}";\n'.encode())
    finally:
        _drop_scratch(pg_version)
    return pj.PgPitrOutcome(True, changed=True, stopped_at=where)


ACTIONS: dict[str, Callable[[pj.PgPitrJob, str], pj.PgPitrOutcome]] = {
    "configure": configure, "archive": archive, "backup": backup, "verify": verify, "info": info, "lag": info,
    "catalog": catalog, "recover": recover,
}


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    if job.pgpitr is None:
        raise ValueError(f"{job.op}: the job has no pgpitr section")
    started = time.monotonic()
    os.chdir("/")  # the tools run as postgres, who cannot enter root's directory
    action = ACTIONS.get(job.pgpitr.action)
    if action is None:
        out = pj.PgPitrOutcome(False, f"unknown action {job.pgpitr.action!r}")
    else:
        try:
            out = action(job.pgpitr, stage)
        except (Problem, OSError, ValueError) as exc:
            out = pj.PgPitrOutcome(False, str(exc))
    return jobs.Outcome(jobs.VERSION, pgpitr=dataclasses.replace(out, seconds=round(time.monotonic() - started, 3)))
