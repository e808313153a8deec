"""The remote half of the backup driver: the ``backup`` entry of the agent (standard
library and ``controller.agent`` only: it runs on the server, from the zipapp). Its ops
take no agent lock: backups of several tenants run on one server at once (BKP-1).

* ``backup`` (source server): per unit (``concurrency`` at once), per part: a database
  dump streamed into ``restic backup --stdin`` through ``dumpstats`` (per-table sums) with
  the guard of ``restic.backup_stdin`` (a failed, killed or unfinished dump leaves no
  snapshot); web files with a manifest (files changed while restic read them are left
  out of it); the subscription's settings from a staged file. Tags ``sub=``, ``kind=``,
  (``db=``, ``engine=``) and the job's extra tags; stable names, never dated.
* ``copy`` (source server): each target initialised with the source's chunker parameters
  if missing, then ``copy --from-repo`` (BKP-3); one unreachable target stops no other.
* ``snapshots``: the targets' snapshots. ``forget`` / ``check`` (repository server, owner
  side): rotation by tags that never removes protected ids, kept tags or a group's newest
  snapshot (BKP-2), exact removals (LIFE-6 purge), prune; ``restic check``.
* ``restore`` (BKP-5) / ``drill``: a snapshot back into the database, the web space or
  the job's answer (settings); a drill loads into scratch places that never touch tenant
  data and answers the recomputed sums for the controller to compare.
* ``drill`` with ``dr`` (a spare server of another region, DR-1): ``restore`` makes a
  scratch copy of a subscription (its own system user ``tdr<hex>``, web space under
  ``DR_ROOT``, databases ``tenantctl_dr_<hex>_<n>``: names no tenant can have) served by
  an nginx vhost of its own on the spare's address (plain HTTP, no certificate, no DNS);
  ``clean`` removes every scratch copy of every DR drill (also a crashed one's).
* ``logins`` (repository server): the rclone htpasswd file, rewritten when it differs.

Every expected failure is a result with ``ok`` False naming what failed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import grp
import hashlib
import ipaddress
import os
import pwd
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from controller.agent import backupjobs, dumpstats, files, jobs, restic, services

#: how PostgreSQL client tools run (peer authentication as the cluster's superuser)
PG_AS = ["runuser", "-u", "postgres", "--"]
MARIADB_DUMP = ["mariadb-dump", "--single-transaction", "--routines", "--events", "--triggers", "--hex-blob",
                "--master-data=2", "--skip-extended-insert", "--order-by-primary", "--default-character-set=utf8mb4"]
PG_DUMP = ["pg_dump", "--format=plain", "--clean", "--if-exists", "--no-owner", "--no-privileges"]
#: where drills restore web files (a scratch directory per drill, removed afterwards)
DRILL_ROOT = "/var/lib/tenantctl-backup-drill"
HTPASSWD = "/etc/tenantctl-backup/htpasswd"
HTGROUP = "tenantctl-backup"
#: seconds one restic command may take (a hung repository server fails the part)
TIMEOUT = 6 * 3600.0
CHUNK = 1 << 20

_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
_SCRATCH = re.compile(r"^[a-z0-9]{1,24}$")
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_STAGED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Problem(Exception):
    """An expected failure of one part or repository (its message is the result's error)."""


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise Problem(f"not a {what} name: {value!r}")
    return value


def _tail(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode(errors="replace").strip()[-restic.TAIL:]


@functools.cache
def _binlog_on() -> bool:
    """Whether this MariaDB writes binary logs (``--master-data`` needs them: a server
    the role has not re-configured yet still gets its nightly dumps, without a position)."""
    try:
        done = subprocess.run(["mariadb", "-N", "-B", "-e", "SELECT @@log_bin"], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return True  # let the dump say what is wrong
    return done.returncode != 0 or done.stdout.strip() != "0"


def dump_argv(engine: str, db: str) -> list[str]:
    _name(db, "database")
    if engine == "mariadb":
        argv = MARIADB_DUMP if _binlog_on() else [a for a in MARIADB_DUMP if not a.startswith("--master-data")]
        return [*argv, "--", db]
    if engine == "postgresql":
        return [*PG_AS, *PG_DUMP, "--", db]
    raise Problem(f"unknown database engine {engine!r}")


def produce(argv: list[str], write: Callable[[bytes], None], stats: dumpstats.DumpStats) -> str:
    """Run a dump, feeding its output to ``stats`` and ``write``: "" when it exited 0 with
    its completion marker, else what went wrong."""
    label = next((a for a in argv if a in ("mariadb-dump", "pg_dump")), argv[0])
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return f"cannot run {label}: {exc}"
    assert proc.stdout is not None and proc.stderr is not None
    err: list[bytes] = []
    reader = restic.drain(proc.stderr, err)
    try:
        with proc.stdout:
            while chunk := os.read(proc.stdout.fileno(), CHUNK):
                stats.feed(chunk)
                write(chunk)
    except BaseException:
        proc.kill()
        proc.wait()
        reader.join()
        raise
    code = proc.wait()
    reader.join()
    if code < 0:
        return f"{label} killed by signal {-code}: {_tail(err)}".rstrip(": ")
    if code != 0:
        return f"{label} exited {code}: {_tail(err)}".rstrip(": ")
    if not stats.complete:
        return f"{label} output lacks its completion marker (dump cut short)"
    return ""


#: sent before a MariaDB dump is loaded: no commit per row, no per-row key checks
MARIADB_LOAD_PREFIX = b"SET autocommit=0; SET unique_checks=0; SET foreign_key_checks=0;\n"


def pipe(src: subprocess.Popen[bytes], dst_argv: list[str], prefix: bytes = b"", suffix: bytes = b"") -> str:
    """Copy ``src``'s stdout (a ``restic dump``) into ``dst_argv`` (a SQL client) between
    ``prefix`` and ``suffix``; "" when both exited 0, else what failed."""
    assert src.stdout is not None and src.stderr is not None
    src_err: list[bytes] = []
    readers = [restic.drain(src.stderr, src_err)]
    try:
        dst = subprocess.Popen(dst_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        src.kill()
        src.wait()
        src.stdout.close()
        readers[0].join()
        return f"cannot run {dst_argv[0]}: {exc}"
    assert dst.stdin is not None and dst.stdout is not None and dst.stderr is not None
    dst_out: list[bytes] = []
    dst_err: list[bytes] = []
    readers += [restic.drain(dst.stdout, dst_out), restic.drain(dst.stderr, dst_err)]
    try:
        with src.stdout:
            dst.stdin.write(prefix)
            while chunk := os.read(src.stdout.fileno(), CHUNK):
                dst.stdin.write(chunk)
            dst.stdin.write(suffix)
    except BrokenPipeError:
        src.kill()
    with contextlib.suppress(BrokenPipeError):
        dst.stdin.close()
    src_code, dst_code = src.wait(), dst.wait()
    for t in readers:
        t.join()
    client = next((a for a in dst_argv if a in ("mariadb", "psql")), dst_argv[0])
    if dst_code != 0:
        return f"{client} exited {dst_code}: {_tail(dst_err) or _tail(dst_out)}"
    if src_code != 0:
        return f"restic dump exited {src_code}: {_tail(src_err)}"
    return ""


# --- backup ---------------------------------------------------------------------------------


def _tags(b: backupjobs.BackupJob, unit: backupjobs.Unit, part: backupjobs.Part) -> list[str]:
    tags = [f"sub={unit.subscription}", f"kind={part.kind}"]
    if part.kind == "db":
        tags += [f"db={part.name}", f"engine={part.engine}"]
    return tags + [t for t in b.tags if t not in tags]


def _backup_part(r: restic.Restic, b: backupjobs.BackupJob, unit: backupjobs.Unit, part: backupjobs.Part,
                 stage: str) -> backupjobs.PartResult:
    started = time.monotonic()
    res: dict[str, Any] = {}
    try:
        tags = _tags(b, unit, part)
        if part.kind == "db":
            argv = dump_argv(part.engine, part.name)
            stats = dumpstats.DumpStats()
            s = r.backup_stdin(f"{part.name}.sql", b.host, b.time, tags, lambda write: produce(argv, write, stats))
            res = {"tables": stats.tables, "total": stats.size}
        elif part.kind == "files":
            if not os.path.isabs(part.path) or not os.path.isdir(part.path):
                raise Problem(f"not a directory: {part.path!r}")
            before = dumpstats.manifest(part.path, part.exclude)
            s = r.backup_paths([part.path], part.exclude, b.host, b.time, tags, timeout=TIMEOUT)
            kept, changed = dumpstats.settled(part.path, before)
            res = {"files": len(kept), "digest": dumpstats.aggregate(kept), "unstable": changed, "total": s.total}
        else:
            if not _STAGED.match(part.path):
                raise Problem(f"not a staged file name: {part.path!r}")
            data = files.read(os.path.join(stage, part.path))
            if data is None:
                raise Problem(f"staged settings file {part.path!r} missing")

            def feed(write: Callable[[bytes], None]) -> str:
                write(data)
                return ""
            s = r.backup_stdin("settings.json", b.host, b.time, tags, feed)
            res = {"digest": files.digest(data), "total": len(data)}
    except (Problem, restic.Failed, ValueError, OSError) as exc:
        return backupjobs.PartResult(unit.subscription, part.kind, part.name, False, str(exc),
                                     seconds=round(time.monotonic() - started, 3))
    return backupjobs.PartResult(unit.subscription, part.kind, part.name, True, snapshot=r.full_id(s.snapshot),
                                 added=s.added,
                                 seconds=round(time.monotonic() - started, 3), **res)


def backup(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    started = time.monotonic()
    if b.local is None:
        raise ValueError("backup: no local repository")
    r = restic.Restic(b.local, stage, b.cacert)
    try:
        r.ensure()
    except restic.Failed as exc:
        return backupjobs.BackupOutcome(
            parts=[backupjobs.PartResult(u.subscription, p.kind, p.name, False, str(exc)) for u in b.units
                   for p in u.parts],
            repos=[backupjobs.RepoResult(b.local.region, False, str(exc), round(time.monotonic() - started, 3))])

    def unit(u: backupjobs.Unit) -> list[backupjobs.PartResult]:
        return [_backup_part(r, b, u, p, stage) for p in u.parts]
    with concurrent.futures.ThreadPoolExecutor(max(1, b.concurrency)) as pool:
        parts = [p for ps in pool.map(unit, b.units) for p in ps]
    return backupjobs.BackupOutcome(parts=parts, repos=[
        backupjobs.RepoResult(b.local.region, True, seconds=round(time.monotonic() - started, 3))])


# --- repositories ---------------------------------------------------------------------------


def _subs(b: backupjobs.BackupJob) -> list[str]:
    return [u.subscription for u in b.units]


def _each(b: backupjobs.BackupJob, stage: str,
          work: Callable[[restic.Restic], backupjobs.RepoResult]) -> backupjobs.BackupOutcome:
    out = []
    for target in b.targets or ([b.local] if b.local else []):
        started = time.monotonic()
        try:
            res = work(restic.Restic(target, stage, b.cacert))
        except (Problem, restic.Failed, ValueError, OSError) as exc:
            res = backupjobs.RepoResult(target.region, False, str(exc))
        out.append(dataclasses.replace(res, seconds=round(time.monotonic() - started, 3)))
    return backupjobs.BackupOutcome(repos=out)


def copy(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    if b.local is None:
        raise ValueError("copy: no source repository (local)")
    src = restic.Restic(b.local, stage, b.cacert)
    try:
        if not src.probe():
            raise restic.Failed(f"{src.label}: no repository to copy from")
    except restic.Failed as exc:
        return backupjobs.BackupOutcome(repos=[backupjobs.RepoResult(t.region, False, str(exc)) for t in b.targets])
    tags = restic.tag_args([f"sub={s}" for s in _subs(b)])

    def work(t: restic.Restic) -> backupjobs.RepoResult:
        t.ensure(source=src)
        t.check(["copy", *tags], source=src, timeout=TIMEOUT)
        return backupjobs.RepoResult(t.repo.region, True, snapshots=t.snapshots(_subs(b)))
    return _each(b, stage, work)


def snapshots(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    def work(t: restic.Restic) -> backupjobs.RepoResult:
        if not t.probe():
            return backupjobs.RepoResult(t.repo.region, True)  # no repository yet: no snapshots
        return backupjobs.RepoResult(t.repo.region, True, snapshots=t.snapshots(_subs(b)))
    return _each(b, stage, work)


def proposal(groups: list[dict[str, Any]], b: backupjobs.BackupJob) -> list[str]:
    """The ids of restic's ``forget --dry-run`` proposal that rotation may remove:
    never a protected id, a snapshot with a kept tag, or a group's newest snapshot."""
    out = []
    for g in groups or []:
        keep = [restic.snapshot_of(s) for s in g.get("keep") or []]
        remove = [restic.snapshot_of(s) for s in g.get("remove") or []]
        if remove and (not keep or max(s.time for s in remove) >= max(s.time for s in keep)):
            raise Problem(f"restic proposed removing the newest snapshot of group {g.get('tags')}: nothing removed")
        for s in remove:
            if any(backupjobs.same_id(s.id, p) for p in b.protect) or set(s.tags) & set(b.keep_tags):
                continue
            out.append(s.id)
    return out


def forget(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    rotate = [s for s in _subs(b) if s not in b.skip]

    def work(t: restic.Restic) -> backupjobs.RepoResult:
        if not t.probe():
            raise Problem(f"{t.label}: no repository")
        ids: list[str] = []
        if rotate:
            if b.keep_daily < 1:
                raise Problem(f"forget: keep_daily {b.keep_daily} would keep nothing")
            groups = t.json(["forget", "--dry-run", "--group-by", "tags", "--keep-daily", str(b.keep_daily),
                             *restic.tag_args([f"sub={s}" for s in rotate])], timeout=TIMEOUT)
            ids = proposal(groups, b)
        if b.forget_ids:
            present = [s.id for s in t.snapshots()]
            ids += [i for i in present if any(backupjobs.same_id(i, f) for f in b.forget_ids)
                    and not any(backupjobs.same_id(i, p) for p in b.protect) and i not in ids]
        for n in range(0, len(ids), 100):
            t.check(["forget", *ids[n:n + 100]], timeout=TIMEOUT)
        if b.prune:
            t.check(["prune"], timeout=TIMEOUT)
        return backupjobs.RepoResult(t.repo.region, True, snapshots=t.snapshots(), removed=ids)
    return _each(b, stage, work)


def check(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    def work(t: restic.Restic) -> backupjobs.RepoResult:
        if not t.probe():
            raise Problem(f"{t.label}: no repository")
        if b.subset and not re.match(r"^(\d+/\d+|\d+(\.\d+)?%)$", b.subset):
            raise Problem(f"not a read-data subset: {b.subset!r}")
        done = t.run(["check", *(["--read-data-subset", b.subset] if b.subset else [])], timeout=TIMEOUT)
        if done.code != 0:
            text = (done.out + done.err).strip()
            raise Problem(f"{t.label}: restic check found errors: {text[-restic.TAIL:]}")
        return backupjobs.RepoResult(t.repo.region, True)
    return _each(b, stage, work)


# --- restore and drill -------------------------------------------------------------------------


def _sql(argv: list[str], statement: str) -> None:
    code, out = files.run([*argv, statement], timeout=600)
    if code != 0:
        raise Problem(f"{statement.split(' ')[0]} failed: {out[-restic.TAIL:]}")


def _mariadb(statement: str) -> None:
    _sql(["mariadb", "-e"], statement)


def _psql(statement: str) -> None:
    _sql([*PG_AS, "psql", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c"], statement)


def _pg_exists(db: str) -> bool:
    """Whether the (validated) database exists on this server's PostgreSQL."""
    code, out = files.run([*PG_AS, "psql", "-X", "-tA", "-d", "postgres", "-c",
                           f"SELECT 1 FROM pg_database WHERE datname = '{_name(db, 'database')}'"], timeout=60)
    if code != 0:
        raise Problem(f"cannot list PostgreSQL databases: {out[-restic.TAIL:]}")
    return out.strip().endswith("1")


def _load(r: restic.Restic, part: backupjobs.Part, into: str, role: str = "") -> None:
    """The part's dump from its snapshot into database ``into``."""
    src = r.dump(part.snapshot, f"/{part.name}.sql")
    if part.engine == "mariadb":
        # one transaction per table (LOCK/UNLOCK TABLES commit), not one per row: the dump
        # has a row per INSERT (--skip-extended-insert, for deduplication)
        problem = pipe(src, ["mariadb", into], MARIADB_LOAD_PREFIX, b"\nCOMMIT;\n")  # a validated name
    else:
        prefix = f'SET ROLE "{_name(role, "role")}";\n'.encode() if role else b""
        problem = pipe(src, [*PG_AS, "psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", into], prefix)
    if problem:
        raise Problem(f"loading snapshot {part.snapshot} into {into}: {problem}")


def _restore_part(r: restic.Restic, unit: backupjobs.Unit, part: backupjobs.Part, drill: str,
                  stage: str) -> backupjobs.PartResult:
    started = time.monotonic()
    res: dict[str, Any] = {}
    try:
        if not part.snapshot:
            raise Problem("no snapshot given")
        if part.kind == "db":
            db = _name(part.name, "database")
            if part.engine not in ("mariadb", "postgresql"):
                raise Problem(f"unknown database engine {part.engine!r}")
            role = _name(part.owner, "role") if part.engine == "postgresql" else ""
            res = _drill_db(r, part, drill) if drill else {}
            if not drill:
                if part.engine == "mariadb":
                    _mariadb(f"CREATE DATABASE IF NOT EXISTS `{db}`")
                elif not _pg_exists(db):  # dropped: back with its owner, as the db driver makes it
                    _psql(f'CREATE DATABASE "{db}" OWNER "{role}"')
                _load(r, part, db, role)
        elif part.kind == "files":
            if not os.path.isabs(part.path):
                raise Problem(f"not an absolute path: {part.path!r}")
            target = os.path.join(DRILL_ROOT, drill) if drill else "/"
            if drill:  # tenants' files: readable by root only while the drill runs
                os.makedirs(DRILL_ROOT, mode=0o700, exist_ok=True)
                os.chmod(DRILL_ROOT, 0o700)
            try:
                r.check(["restore", part.snapshot, "--target", target, "--include", part.path], timeout=TIMEOUT)
                if drill:
                    copy_ = os.path.join(target, part.path.lstrip("/"))
                    m = dumpstats.manifest(copy_, skip=part.unstable)
                    res = {"files": len(m), "digest": dumpstats.aggregate(m), "total": sum(e.size for e in m.values())}
            finally:
                if drill:
                    shutil.rmtree(target, ignore_errors=True)
        else:
            done = r.check(["dump", "--", part.snapshot, "/settings.json"], timeout=600)
            data = done.out.encode()
            res = {"content": done.out, "digest": hashlib.sha256(data).hexdigest(), "total": len(data)}
    except (Problem, restic.Failed, ValueError, OSError) as exc:
        return backupjobs.PartResult(unit.subscription, part.kind, part.name, False, str(exc), snapshot=part.snapshot,
                                     seconds=round(time.monotonic() - started, 3))
    return backupjobs.PartResult(unit.subscription, part.kind, part.name, True, snapshot=part.snapshot,
                                 seconds=round(time.monotonic() - started, 3), **res)


def _drill_db(r: restic.Restic, part: backupjobs.Part, drill: str) -> dict[str, Any]:
    scratch = _name(f"tenantctl_drill_{drill}", "scratch database")
    drop = f"DROP DATABASE IF EXISTS `{scratch}`" if part.engine == "mariadb" else f'DROP DATABASE IF EXISTS "{scratch}"'
    run = _mariadb if part.engine == "mariadb" else _psql
    run(drop)
    try:
        run(f"CREATE DATABASE `{scratch}`" if part.engine == "mariadb" else f'CREATE DATABASE "{scratch}"')
        _load(r, part, scratch)
        stats = dumpstats.DumpStats()
        problem = produce(dump_argv(part.engine, scratch), lambda _chunk: None, stats)
        if problem:
            raise Problem(f"dumping the drill's copy: {problem}")
        return {"tables": stats.tables, "total": stats.size}
    finally:
        with contextlib.suppress(Problem):
            run(drop)


def _restore(b: backupjobs.BackupJob, stage: str, drill: str) -> backupjobs.BackupOutcome:
    if b.local is None:
        raise ValueError("restore: no repository (local)")
    r = restic.Restic(b.local, stage, b.cacert)
    try:
        r.probe()
    except restic.Failed as exc:
        return backupjobs.BackupOutcome(parts=[
            backupjobs.PartResult(u.subscription, p.kind, p.name, False, str(exc), snapshot=p.snapshot)
            for u in b.units for p in u.parts])
    parts: list[backupjobs.PartResult] = []
    for u in b.units:
        for p in u.parts:
            parts.append(_restore_part(r, u, p, f"{drill}_{len(parts)}" if drill else "", stage))
    return backupjobs.BackupOutcome(parts=parts)


def restore(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    return _restore(b, stage, "")


def drill(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    if b.dr == "clean":
        return dr_clean(b)
    if not _SCRATCH.match(b.scratch):
        raise ValueError(f"drill: not a scratch name: {b.scratch!r}")
    if b.dr == "restore":
        return dr_restore(b, stage)
    if b.dr:
        raise ValueError(f"drill: unknown dr phase {b.dr!r}")
    return _restore(b, stage, b.scratch)


# --- disaster-recovery drill on a spare server (DR-1) ---------------------------------------

#: scratch web spaces of DR drills (one directory per drill)
DR_ROOT = "/srv/tenantctl-dr"
#: scratch vhosts (nginx includes conf.d; the web driver's own directory is left alone)
DR_VHOSTS = "/etc/nginx/conf.d"
DR_VHOST = re.compile(r"^tenantctl-dr-[a-z0-9]{1,24}\.conf$")
DR_USER = re.compile(r"^tdr[a-z0-9]{1,24}$")
DR_DB = re.compile(r"^tenantctl_dr_[a-z0-9_]{1,40}$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,400}$")
INDEXES = ("index.html", "index.htm")
FAKE_CORRUPTION = b"\n<!-- tenantctl fake corruption (test fault hook) -->\n"


def dr_user(scratch: str) -> str:
    return f"tdr{scratch[:10]}"


def _dr_run(argv: list[str], what: str) -> str:
    code, out = files.run(argv, timeout=600)
    if code != 0:
        raise Problem(f"{what}: {out[-restic.TAIL:]}")
    return out


def _dr_databases(engine: str) -> list[str]:
    """The scratch databases of DR drills on this server's ``engine``."""
    if engine == "mariadb":
        out = _dr_run(["mariadb", "-N", "-B", "-e", "SHOW DATABASES"], "listing MariaDB databases")
    else:
        out = _dr_run([*PG_AS, "psql", "-X", "-tA", "-d", "postgres", "-c", "SELECT datname FROM pg_database"],
                      "listing PostgreSQL databases")
    return sorted(n for n in (line.strip() for line in out.splitlines()) if DR_DB.match(n))


def dr_clean(b: backupjobs.BackupJob) -> backupjobs.BackupOutcome:
    """Remove every DR scratch copy on this server: vhosts (nginx reloaded), web spaces,
    databases of ``b.dr_engines``, scratch users. What was removed is ``repos[0].removed``;
    what could not be is its ``error``."""
    removed: list[str] = []
    problems: list[str] = []
    vhosts = [n for n in sorted(os.listdir(DR_VHOSTS)) if DR_VHOST.match(n)] if os.path.isdir(DR_VHOSTS) else []
    for n in vhosts:
        os.unlink(os.path.join(DR_VHOSTS, n))
        removed.append(f"vhost {n}")
    if vhosts:
        problem = services.reload(services.NGINX, [])
        if problem:
            problems.append(f"nginx reload: {problem}")
    if os.path.isdir(DR_ROOT):
        for n in sorted(os.listdir(DR_ROOT)):
            shutil.rmtree(os.path.join(DR_ROOT, n), ignore_errors=True)
            removed.append(f"web space {n}")
    for engine in b.dr_engines:
        try:
            for db in _dr_databases(engine):
                if engine == "mariadb":
                    _mariadb(f"DROP DATABASE IF EXISTS `{db}`")
                else:
                    _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                removed.append(f"{engine} database {db}")
        except Problem as exc:
            problems.append(str(exc))
    for user in sorted(u.pw_name for u in pwd.getpwall() if DR_USER.match(u.pw_name)):
        code, out = files.run(["userdel", "--", user], timeout=60)
        if code == 0:
            removed.append(f"user {user}")
        else:
            problems.append(f"userdel {user}: {out[-restic.TAIL:]}")
    return backupjobs.BackupOutcome(changed=bool(removed), repos=[
        backupjobs.RepoResult("", not problems, "; ".join(problems), removed=removed)])


def _dr_vhost(domain: str, address: str, docroot: str, scratch: str) -> None:
    """The scratch copy's vhost: plain HTTP on the spare's address, static files only."""
    if not _DOMAIN.match(domain):
        raise Problem(f"not a domain: {domain!r}")
    addr = ipaddress.ip_address(address)
    listen = f"[{addr}]:80" if addr.version == 6 else f"{addr}:80"
    if not _PATH.match(docroot) or ".." in docroot.split("/"):
        raise Problem(f"not a document root: {docroot!r}")
    conf = (f"# tenantctl DR drill {scratch}: a scratch copy, removed after the drill\n"
            f"server {{\n    listen {listen};\n    server_name {domain};\n    root {docroot};\n"
            f"    index {' '.join(INDEXES)};\n    access_log off;\n"
            "    location ~ \\.php$ { return 403; }\n    location / { try_files $uri $uri/ =404; }\n}\n")
    path = os.path.join(DR_VHOSTS, f"tenantctl-dr-{scratch}.conf")
    files.write(path, conf.encode(), 0o644)
    code, out = files.run(["nginx", "-t"], timeout=60)
    if code != 0:
        os.unlink(path)
        raise Problem(f"nginx -t refused the scratch vhost: {out[-restic.TAIL:]}")
    problem = services.reload(services.NGINX, [])
    if problem:
        raise Problem(f"nginx reload: {problem}")


def _dr_files(r: restic.Restic, b: backupjobs.BackupJob, unit: backupjobs.Unit, part: backupjobs.Part,
              user: str) -> dict[str, Any]:
    if not _PATH.match(part.path):
        raise Problem(f"not an absolute path: {part.path!r}")
    os.makedirs(DR_ROOT, mode=0o711, exist_ok=True)
    os.chmod(DR_ROOT, 0o711)
    target = os.path.join(DR_ROOT, b.scratch)
    os.makedirs(target, mode=0o750, exist_ok=True)
    r.check(["restore", part.snapshot, "--target", target, "--include", part.path], timeout=TIMEOUT)
    copy_ = os.path.join(target, part.path.lstrip("/"))
    m = dumpstats.manifest(copy_, skip=part.unstable)
    res: dict[str, Any] = {"files": len(m), "digest": dumpstats.aggregate(m), "total": sum(e.size for e in m.values())}
    _dr_run(["chown", "-R", f"{user}:www-data", "--", target], "chown of the scratch web space")
    _dr_run(["chmod", "-R", "g+rX,o-rwx", "--", target], "chmod of the scratch web space")
    docroot = os.path.join(copy_, "httpdocs")
    index = probe_file(docroot)
    if index:
        data = files.read(os.path.join(docroot, index)) or b""
        res.update(index=index, index_digest=files.digest(data))
        if b.dr_fake_corrupt_index:
            with open(os.path.join(docroot, index), "ab") as fh:
                fh.write(FAKE_CORRUPTION)
    _dr_vhost(unit.subscription, b.dr_address, docroot, b.scratch)
    return res


#: static files a drill may fetch when the site has no index page (never a script)
STATIC = (".html", ".htm", ".txt", ".css", ".js", ".svg", ".png", ".jpg", ".gif", ".ico")
_PROBE = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


def probe_file(docroot: str) -> str:
    """What the drill fetches over HTTP (relative to ``docroot``): an index page, else the
    first static file in name order ("" : nothing static to fetch)."""
    for n in INDEXES:
        if os.path.isfile(os.path.join(docroot, n)):
            return n
    for dirpath, dirnames, filenames in os.walk(docroot):
        dirnames.sort()
        for f in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, f), docroot)
            if f.lower().endswith(STATIC) and _PROBE.match(rel) and not f.startswith("."):
                return rel
    return ""


def _dr_db(r: restic.Restic, part: backupjobs.Part, scratch: str) -> dict[str, Any]:
    """The database into a scratch database that stays until ``dr_clean``; its sums."""
    db = _name(f"tenantctl_dr_{scratch}", "scratch database")
    if part.engine not in ("mariadb", "postgresql"):
        raise Problem(f"unknown database engine {part.engine!r}")
    if part.engine == "mariadb":
        _mariadb(f"CREATE DATABASE `{db}`")
    else:
        _psql(f'CREATE DATABASE "{db}"')
    _load(r, part, db)
    stats = dumpstats.DumpStats()
    problem = produce(dump_argv(part.engine, db), lambda _chunk: None, stats)
    if problem:
        raise Problem(f"dumping the scratch copy: {problem}")
    return {"tables": stats.tables, "total": stats.size}


def dr_restore(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    """A scratch copy of each unit (in practice one) from ``b.local`` (another region's
    repository), served on ``b.dr_address``; per part the recomputed sums."""
    if b.local is None:
        raise ValueError("dr restore: no repository (local)")
    if b.dr_fresh:
        left = dr_clean(b).repos[0]
        if not left.ok:
            raise Problem(f"earlier drills' leftovers could not be removed: {left.error}")
    user = dr_user(b.scratch)
    if not DR_USER.match(user):
        raise ValueError(f"dr restore: not a scratch user: {user!r}")
    try:
        pwd.getpwnam(user)
    except KeyError:
        _dr_run(["useradd", "--system", "--no-create-home", "--home-dir", os.path.join(DR_ROOT, b.scratch),
                 "--shell", "/usr/sbin/nologin", "--", user], "useradd of the scratch user")
    r = restic.Restic(b.local, stage, b.cacert)
    parts: list[backupjobs.PartResult] = []
    for u in b.units:
        for p in u.parts:
            started = time.monotonic()
            try:
                if not p.snapshot:
                    raise Problem("no snapshot given")
                if p.kind == "files":
                    res = _dr_files(r, b, u, p, user)
                elif p.kind == "db":
                    res = _dr_db(r, p, f"{b.scratch}_{len(parts)}")
                else:
                    done = r.check(["dump", "--", p.snapshot, "/settings.json"], timeout=600)
                    data = done.out.encode()
                    res = {"digest": hashlib.sha256(data).hexdigest(), "total": len(data)}
            except (Problem, restic.Failed, ValueError, OSError) as exc:
                parts.append(backupjobs.PartResult(u.subscription, p.kind, p.name, False, str(exc),
                                                   snapshot=p.snapshot, seconds=round(time.monotonic() - started, 3)))
                continue
            parts.append(backupjobs.PartResult(u.subscription, p.kind, p.name, True, snapshot=p.snapshot,
                                               seconds=round(time.monotonic() - started, 3), **res))
    return backupjobs.BackupOutcome(parts=parts)


# --- logins -------------------------------------------------------------------------------------


def logins(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    for user, hashed in b.logins.items():
        if not _LOGIN.match(user) or not hashed or any(c in hashed for c in ":\n\r \t"):
            raise ValueError(f"logins: not a login: {user!r}")
    content = "".join(f"{u}:{b.logins[u]}\n" for u in sorted(b.logins)).encode()
    if files.read(HTPASSWD) == content:
        return backupjobs.BackupOutcome()
    try:
        gid = grp.getgrnam(HTGROUP).gr_gid
    except KeyError:
        return backupjobs.BackupOutcome(repos=[backupjobs.RepoResult("", False, f"no group {HTGROUP!r}")])
    files.write(HTPASSWD, content, 0o640, gid=gid)
    return backupjobs.BackupOutcome(changed=True)


OPS: dict[str, Callable[[backupjobs.BackupJob, str], backupjobs.BackupOutcome]] = {
    "backup": backup, "copy": copy, "snapshots": snapshots, "forget": forget, "check": check,
    "restore": restore, "drill": drill, "logins": logins,
}


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    op = OPS.get(job.op)
    if op is None:
        raise ValueError(f"the backup agent does not do {job.op!r}")
    if job.backup is None:
        raise ValueError(f"{job.op}: the job has no backup section")
    return jobs.Outcome(jobs.VERSION, backup=op(job.backup, stage))
