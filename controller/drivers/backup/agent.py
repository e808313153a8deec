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
  data and answers the recomputed sums for the controller to compare. A part marked
  ``exact`` (the clone of PLAT-2 test copies and PLAT-3 demos, possibly into another
  subscription: ``origin``, ``user``) leaves exactly the snapshot's content: the
  database dropped and created again empty before the load, every entry of the web
  space but ``tmp`` and ``logs`` replaced by the snapshot's (staged under
  ``CLONE_ROOT``, then renamed in, owned by the target's user; the source's subdomain
  document roots ``sites/<sub>.<source>`` renamed ``sites/<sub>.<target>``).
* ``drill`` with ``dr`` (DR-1's scratch copy on a spare server) is not this entry's: it
  is the ``drdrill`` entry's (``controller.drivers.drdrill.agent``), which shares this
  module's restore helpers (``local_repo``, ``part_result``, ``restored_files``,
  ``loaded_stats``, ``restored_settings``, ``drop_db``, ``SCRATCH``, ``dispatch``) and
  ``PROBE_URL``.
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
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from controller.agent import backupjobs, dumpstats, files, jobs, restic

#: how PostgreSQL client tools run (peer authentication as the cluster's superuser)
PG_AS = ["runuser", "-u", "postgres", "--"]
MARIADB_DUMP = ["mariadb-dump", "--single-transaction", "--routines", "--events", "--triggers", "--hex-blob",
                "--master-data=2", "--skip-extended-insert", "--order-by-primary", "--default-character-set=utf8mb4"]
PG_DUMP = ["pg_dump", "--format=plain", "--clean", "--if-exists", "--no-owner", "--no-privileges"]
#: where drills restore web files (a scratch directory per drill, removed afterwards)
DRILL_ROOT = "/var/lib/tenantctl-backup-drill"
#: where exact restores (clones) stage web files before they replace the target's (root only)
CLONE_ROOT = "/var/lib/tenantctl-backup-clone"
#: entries of a web space an exact restore leaves as they are: the server's own (nginx's
#: logs, PHP's temporary files), never the snapshot's
KEPT = ("logs", "tmp")
#: the users and groups (besides root) whose files keep their owner in a clone: the web
#: space's root-owned top and nginx's log files
SYSTEM_OWNERS = ("www-data",)
#: how the db driver creates a MariaDB database (``controller.drivers.db.mariadb``)
MARIADB_CREATE = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
HTPASSWD = "/etc/tenantctl-backup/htpasswd"
HTGROUP = "tenantctl-backup"
#: the URL path of the DR drill's PHP probe (DR-1): the ``drdrill`` entry serves it, the
#: controller side (``drdrill.py``) fetches it; defined here, where both can import it
#: (the drdrill package imports this module, never the other way round)
PROBE_URL = "/tenantctl-dr-probe.php"
#: seconds one restic command may take (a hung repository server fails the part)
TIMEOUT = 6 * 3600.0
CHUNK = 1 << 20

_NAME = re.compile(r"^[a-z0-9_]{1,64}$")
SCRATCH = re.compile(r"^[a-z0-9]{1,24}$")
_LOGIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
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


def local_repo(b: backupjobs.BackupJob, stage: str, op: str) -> restic.Restic:
    """The job's own repository (``local``: backed up into, copied, restored from)."""
    if b.local is None:
        raise ValueError(f"{op}: no repository (local)")
    return restic.Restic(b.local, stage, b.cacert)


def backup(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    started = time.monotonic()
    r = local_repo(b, stage, "backup")
    try:
        r.ensure()
    except restic.Failed as exc:
        return backupjobs.BackupOutcome(
            parts=_failed_parts(b, str(exc)),
            repos=[backupjobs.RepoResult(r.repo.region, False, str(exc), round(time.monotonic() - started, 3))])

    def unit(u: backupjobs.Unit) -> list[backupjobs.PartResult]:
        return [_backup_part(r, b, u, p, stage) for p in u.parts]
    with concurrent.futures.ThreadPoolExecutor(max(1, b.concurrency)) as pool:
        parts = [p for ps in pool.map(unit, b.units) for p in ps]
    return backupjobs.BackupOutcome(parts=parts, repos=[
        backupjobs.RepoResult(r.repo.region, True, seconds=round(time.monotonic() - started, 3))])


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
    src = local_repo(b, stage, "copy")
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
                             *restic.tag_args([f"sub={s}" for s in rotate])], timeout=TIMEOUT,
                            lock_wait=restic.LOCK_WAIT)
            ids = proposal(groups, b)
        if b.forget_ids:
            present = [s.id for s in t.snapshots()]
            ids += [i for i in present if any(backupjobs.same_id(i, f) for f in b.forget_ids)
                    and not any(backupjobs.same_id(i, p) for p in b.protect) and i not in ids]
        for n in range(0, len(ids), 100):
            t.check(["forget", *ids[n:n + 100]], timeout=TIMEOUT, lock_wait=restic.LOCK_WAIT)
        if b.prune:
            t.check(["prune"], timeout=TIMEOUT, lock_wait=restic.LOCK_WAIT)
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
    src = r.dump(part.snapshot, f"/{_name(part.origin or part.name, 'database')}.sql")
    if part.engine == "mariadb":
        # one transaction per table (LOCK/UNLOCK TABLES commit), not one per row: the dump
        # has a row per INSERT (--skip-extended-insert, for deduplication)
        problem = pipe(src, ["mariadb", into], MARIADB_LOAD_PREFIX, b"\nCOMMIT;\n")  # a validated name
    else:
        prefix = f'SET ROLE "{_name(role, "role")}";\n'.encode() if role else b""
        problem = pipe(src, [*PG_AS, "psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", into], prefix)
    if problem:
        raise Problem(f"loading snapshot {part.snapshot} into {into}: {problem}")


def _engine(engine: str) -> str:
    if engine not in ("mariadb", "postgresql"):
        raise Problem(f"unknown database engine {engine!r}")
    return engine


def _create_db(engine: str, db: str) -> None:
    if _engine(engine) == "mariadb":
        _mariadb(f"CREATE DATABASE `{_name(db, 'database')}`")
    else:
        _psql(f'CREATE DATABASE "{_name(db, "database")}"')


def drop_db(engine: str, db: str) -> None:
    if _engine(engine) == "mariadb":
        _mariadb(f"DROP DATABASE IF EXISTS `{_name(db, 'database')}`")
    else:
        _psql(f'DROP DATABASE IF EXISTS "{_name(db, "database")}" WITH (FORCE)')


def loaded_stats(r: restic.Restic, part: backupjobs.Part, db: str, what: str) -> dict[str, Any]:
    """Create the scratch database ``db``, load the part's dump into it and dump-stats it:
    the recomputed sums (``what`` names the copy in an error)."""
    _create_db(part.engine, db)
    _load(r, part, db)
    stats = dumpstats.DumpStats()
    problem = produce(dump_argv(part.engine, db), lambda _chunk: None, stats)
    if problem:
        raise Problem(f"dumping {what}: {problem}")
    return {"tables": stats.tables, "total": stats.size}


def restored_files(r: restic.Restic, part: backupjobs.Part, target: str) -> tuple[str, dict[str, Any]]:
    """The part's files restored under ``target``: where they are, and their recomputed sums."""
    r.check(["restore", part.snapshot, "--target", target, "--include", part.path], timeout=TIMEOUT)
    copy_ = os.path.join(target, part.path.lstrip("/"))
    m = dumpstats.manifest(copy_, skip=part.unstable)
    return copy_, {"files": len(m), "digest": dumpstats.aggregate(m), "total": sum(e.size for e in m.values())}


def restored_settings(r: restic.Restic, part: backupjobs.Part) -> dict[str, Any]:
    done = r.check(["dump", "--", part.snapshot, "/settings.json"], timeout=600)
    data = done.out.encode()
    return {"content": done.out, "digest": hashlib.sha256(data).hexdigest(), "total": len(data)}


def part_result(unit: backupjobs.Unit, part: backupjobs.Part,
                 work: Callable[[], dict[str, Any]]) -> backupjobs.PartResult:
    """``work`` for one part of a restore or drill, as its result (its sums, or the error)."""
    started = time.monotonic()
    try:
        if not part.snapshot:
            raise Problem("no snapshot given")
        res = work()
    except (Problem, restic.Failed, ValueError, OSError) as exc:
        return backupjobs.PartResult(unit.subscription, part.kind, part.name, False, str(exc), snapshot=part.snapshot,
                                     seconds=round(time.monotonic() - started, 3))
    return backupjobs.PartResult(unit.subscription, part.kind, part.name, True, snapshot=part.snapshot,
                                 seconds=round(time.monotonic() - started, 3), **res)


def _restore_part(r: restic.Restic, unit: backupjobs.Unit, part: backupjobs.Part, drill: str) -> dict[str, Any]:
    if part.kind == "db":
        db = _name(part.name, "database")
        _engine(part.engine)
        role = _name(part.owner, "role") if part.engine == "postgresql" else ""
        if drill:
            return _drill_db(r, part, drill)
        if part.exact:  # nothing but the snapshot's tables: an empty database first
            drop_db(part.engine, db)
            if part.engine == "mariadb":  # its grants stay: MariaDB keeps them across a DROP
                _mariadb(f"CREATE DATABASE `{db}` {MARIADB_CREATE}")
            else:  # as the db driver makes it: its owner, nothing granted to PUBLIC
                _psql(f'CREATE DATABASE "{db}" OWNER "{role}"')
                _psql(f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC')
        elif part.engine == "mariadb":
            _mariadb(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        elif not _pg_exists(db):  # dropped: back with its owner, as the db driver makes it
            _psql(f'CREATE DATABASE "{db}" OWNER "{role}"')
        _load(r, part, db, role)
        return {}
    if part.kind == "files":
        if not os.path.isabs(part.path):
            raise Problem(f"not an absolute path: {part.path!r}")
        if part.exact or part.origin:
            if drill or not part.exact:
                raise Problem("files restored into another web space are an exact restore, never a drill")
            return clone_files(r, part)
        if not drill:
            r.check(["restore", part.snapshot, "--target", "/", "--include", part.path], timeout=TIMEOUT)
            return {}
        target = os.path.join(DRILL_ROOT, drill)
        os.makedirs(DRILL_ROOT, mode=0o700, exist_ok=True)  # tenants' files: root only while the drill runs
        os.chmod(DRILL_ROOT, 0o700)
        try:
            return restored_files(r, part, target)[1]
        finally:
            shutil.rmtree(target, ignore_errors=True)
    return restored_settings(r, part)


def _path(value: str, what: str) -> str:
    if not os.path.isabs(value) or os.path.normpath(value) != value or value == "/" or "\n" in value:
        raise Problem(f"not a {what}: {value!r}")
    return value


def _ids(names: tuple[str, ...]) -> tuple[set[int], set[int]]:
    """The uids and gids (root's and ``names``') whose files keep their owner in a clone."""
    uids, gids = {0}, {0}
    for n in names:
        with contextlib.suppress(KeyError):
            uids.add(pwd.getpwnam(n).pw_uid)
        with contextlib.suppress(KeyError):
            gids.add(grp.getgrnam(n).gr_gid)
    return uids, gids


def own_tree(top: str, uid: int, gid: int, keep: tuple[set[int], set[int]]) -> None:
    """Every entry under ``top`` (not ``top``, never following a link) owned by
    ``uid``/``gid``, but for the owners in ``keep`` (root, www-data)."""
    keep_u, keep_g = keep
    for dirpath, dirnames, filenames in os.walk(top):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            want = (st.st_uid if st.st_uid in keep_u else uid, st.st_gid if st.st_gid in keep_g else gid)
            if want != (st.st_uid, st.st_gid):
                os.chown(path, *want, follow_symlinks=False)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def rename_sites(top: str, source: str, target: str) -> None:
    """The subdomains' document roots of a web space cloned from ``source`` to
    ``target`` (homes are named after their domain): ``sites/blog.<source>`` becomes
    ``sites/blog.<target>``; other sites (alias domains) keep their names."""
    sites = os.path.join(top, "sites")
    if source == target or not os.path.isdir(sites) or os.path.islink(sites):
        return
    for name in sorted(os.listdir(sites)):
        if name.endswith(f".{source}"):
            os.rename(os.path.join(sites, name), os.path.join(sites, name[: -len(source)] + target))


def clone_files(r: restic.Restic, part: backupjobs.Part) -> dict[str, Any]:
    """An exact restore of a web space (PLAT-2/PLAT-3): the snapshot's ``origin`` (the
    source's home; default ``path``) restored into a root-only stage, owned by ``user``,
    then every entry of ``path`` but ``KEPT`` replaced by the stage's: afterwards ``path``
    holds the snapshot's files and nothing else. Its sums, as a drill reports them."""
    home = _path(part.path, "web space")
    origin = _path(part.origin or part.path, "snapshot path")
    if not _USER.match(part.user):
        raise Problem(f"not a system user name: {part.user!r}")
    try:
        pw = pwd.getpwnam(part.user)
    except KeyError as exc:
        raise Problem(f"no system user {part.user!r} on this server") from exc
    if not os.path.isdir(home) or os.path.islink(home):
        raise Problem(f"not a directory: {home!r}")
    os.makedirs(CLONE_ROOT, mode=0o700, exist_ok=True)  # tenants' files: root only while staged
    os.chmod(CLONE_ROOT, 0o700)
    stage = tempfile.mkdtemp(prefix=f"{pw.pw_name}-", dir=CLONE_ROOT)
    try:
        r.check(["restore", part.snapshot, "--target", stage, "--include", origin], timeout=TIMEOUT)
        src = os.path.join(stage, origin.lstrip("/"))
        if not os.path.isdir(src):
            raise Problem(f"snapshot {part.snapshot} holds no {origin}")
        own_tree(src, pw.pw_uid, pw.pw_gid, _ids(SYSTEM_OWNERS))
        rename_sites(src, os.path.basename(origin), os.path.basename(home))
        for name in sorted(os.listdir(home)):
            if name not in KEPT:
                _remove(os.path.join(home, name))
        for name in sorted(os.listdir(src)):
            if name not in KEPT:
                shutil.move(os.path.join(src, name), os.path.join(home, name))  # a rename on one file system
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    m = dumpstats.manifest(home, exclude=[os.path.join(home, k) for k in KEPT])
    return {"files": len(m), "digest": dumpstats.aggregate(m), "total": sum(e.size for e in m.values())}


def _drill_db(r: restic.Restic, part: backupjobs.Part, drill: str) -> dict[str, Any]:
    scratch = _name(f"tenantctl_drill_{drill}", "scratch database")
    drop_db(part.engine, scratch)
    try:
        return loaded_stats(r, part, scratch, "the drill's copy")
    finally:
        with contextlib.suppress(Problem):
            drop_db(part.engine, scratch)


def _failed_parts(b: backupjobs.BackupJob, error: str) -> list[backupjobs.PartResult]:
    """Every part of the job failed with ``error`` (its repository could not be used)."""
    return [backupjobs.PartResult(u.subscription, p.kind, p.name, False, error, snapshot=p.snapshot)
            for u in b.units for p in u.parts]


def _restore(b: backupjobs.BackupJob, stage: str, drill: str) -> backupjobs.BackupOutcome:
    r = local_repo(b, stage, "restore")
    try:
        r.probe()
    except restic.Failed as exc:
        return backupjobs.BackupOutcome(parts=_failed_parts(b, str(exc)))
    parts: list[backupjobs.PartResult] = []
    for u in b.units:
        for p in u.parts:
            scratch = f"{drill}_{len(parts)}" if drill else ""
            parts.append(part_result(u, p, functools.partial(_restore_part, r, u, p, scratch)))
    return backupjobs.BackupOutcome(parts=parts)


def restore(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    return _restore(b, stage, "")


def drill(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    if b.dr:
        raise ValueError(f"drill: dr phase {b.dr!r} is the drdrill entry's, not the backup entry's")
    if not SCRATCH.match(b.scratch):
        raise ValueError(f"drill: not a scratch name: {b.scratch!r}")
    return _restore(b, stage, b.scratch)


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


def dispatch(entry: str, ops: dict[str, Callable[[backupjobs.BackupJob, str], backupjobs.BackupOutcome]],
             job: jobs.Job, stage: str) -> jobs.Outcome:
    """``job`` (its ``backup`` section) done by ``entry``'s op of its name (the backup
    entry's, and the drdrill entry's, ``handle``)."""
    op = ops.get(job.op)
    if op is None:
        raise ValueError(f"the {entry} agent does not do {job.op!r}")
    if job.backup is None:
        raise ValueError(f"{job.op}: the job has no backup section")
    return jobs.Outcome(jobs.VERSION, backup=op(job.backup, stage))


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    return dispatch("backup", OPS, job, stage)
