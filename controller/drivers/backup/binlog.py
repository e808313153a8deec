"""MariaDB point-in-time recovery (issue 10, BKP-4): binary logs archived in two regions,
a tenant database recovered as its nightly dump plus a replay of its own events.

* ``ensure``: on each source MariaDB server the archivers' replication login (from the
  archiving repository servers' addresses only); on each repository server the
  archivers of the sources it archives (``archivers``: the source's own region's
  repository server and that of the first region its backups are copied to).
* ``recover``: the newest nightly dump at or before the target (the ledger), the binlog
  position the dump recorded (read from the snapshot's head), the archive of the first
  region that holds the binlogs from that position; the replay SQL is made THERE
  (``mariadb-binlog --database=DB --start-position --stop-datetime --disable-log-bin``,
  streamed down over SSH), then the dump is restored (``restore.restore``) and the SQL
  loaded on the database's server. Every check comes before the first change: a target
  outside [oldest dump, newest archived event] is ``OutOfRange`` and changes nothing.
  ``--stop-datetime`` has a resolution of one second: the replay applies every event
  whose time (whole seconds, UTC) is at or before the target's second.
* ``lag``: per source, seconds since its first binlog event not yet in the archive
  (0 when the archive holds every byte of every binlog the server has: an idle server
  is not lagging), per archive region.
* ``window``: the times a database can be recovered to.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller import errors, provisioning
from controller.agent import backupjobs, binlogjobs, jobs
from controller.drivers import transport
from controller.drivers.backup import restore, runner, topology
from controller.drivers.binlog import agent as binlog_agent
from controller.provisioning import binlog as secrets
from controller.state import backups as ledger
from controller.state import store as state_store

PORT = 3306
#: where connections between embedded servers come from (``_shared_loopback``)
LOOPBACK = "127.0.0.1"
#: the supervisor the repository servers run (staged with every ``archive`` job)
SUPERVISOR = Path(__file__).resolve().parent.parent / "binlog" / "supervisor.py"
#: seconds a replay's SQL may take to make or to load
TIMEOUT = 3600.0


class OutOfRange(errors.PermanentError):
    """The target time is outside what the dumps and the archive can recover (nothing changed)."""


@dataclass(frozen=True)
class Recovered:
    #: the nightly dump's snapshot id
    dump_snapshot: str
    #: where the replay stopped: ``file:position`` (end of the last event applied)
    stopped_at: str
    #: the region whose archive the binlogs came from
    archive_region: str
    #: the position the dump recorded (``file:position``)
    dump_position: str = ""
    #: bytes of replay SQL loaded
    replayed: int = 0
    seconds: float = 0.0
    #: the time the database was recovered to (the target; without one, the newest
    #: archived event, or the dump's time when nothing was archived after it)
    point: dt.datetime | None = None


@dataclass(frozen=True)
class Lag:
    #: the worst archive region's lag (``inf``: no archive answered)
    seconds: float
    newest_archived: dt.datetime | None
    #: that region
    region: str = ""
    #: every archive region's lag
    regions: Mapping[str, float] = field(default_factory=dict)


def archivers(topo: topology.Topology, source: str) -> list[tuple[str, str]]:
    """(region, repository server) archiving ``source``: its own region's, then the first
    region its backups are copied to (two regions whenever there are two)."""
    out = []
    own = topo.local_region(source)
    if own is not None:
        out.append((own, topo.repositories[own]))
    targets = topo.target_regions(source)
    if targets:
        out.append((targets[0], topo.repositories[targets[0]]))
    return out


def _shared_loopback(topo: topology.Topology, servers: Sequence[str]) -> bool:
    """Embedded servers share the host's loopback: a connection between two of them comes
    from 127.0.0.1 whatever their addresses (``mariadb-binlog`` cannot bind a source
    address), so the login must also be allowed from there."""
    return any(topo.ctx.servers[s].provider == "docker" for s in servers)


def _run(pool: transport.Pool, server: str, job: binlogjobs.BinlogJob, files: Sequence[transport.File] = (),
         timeout: float = 600.0, writes: Sequence[str] = ()) -> binlogjobs.BinlogOutcome:
    """``writes``: the subscriptions whose things this job (or what the caller does after
    it on that server) writes: the agent refuses it for a stale generation (fencing)."""
    out = transport.Agent(pool.get(server), "binlog").run(jobs.Job(jobs.VERSION, "pitr", binlog=job), files,
                                                           timeout=timeout, writes=writes)
    if out.binlog is None:
        raise errors.PermanentError(f"server {server}: the binlog agent answered without a binlog outcome")
    return out.binlog


# --- ensure ---------------------------------------------------------------------------------


def ensure(topo: topology.Topology, pool: transport.Pool, sources: Sequence[str]) -> dict[str, str]:
    """Logins on ``sources`` and archivers on their repository servers: source -> "" or
    what failed. ``sources`` is the complete list: a repository server stops archiving
    any source not in it (its archive stays)."""
    result = {s: "" for s in sources}
    state = topo.state_dir
    by_repo: dict[str, list[binlogjobs.Source]] = {}
    for source in sources:
        srv = topo.ctx.servers.get(source)
        if srv is None or "db-mariadb" not in srv.roles:
            result[source] = f"{source} is not a db-mariadb server"
            continue
        arch = archivers(topo, source)
        if not arch:
            result[source] = f"region {srv.region} has no repository server to archive binary logs"
            continue
        password = secrets.password(state, source)
        hosts = sorted({topo.ctx.servers[repo].address for _region, repo in arch}
                       | ({LOOPBACK} if _shared_loopback(topo, [source, *(r for _g, r in arch)]) else set()))
        try:
            out = _run(pool, source, binlogjobs.BinlogJob("grant", login=secrets.LOGIN, password=password,
                                                          hosts=hosts))
            if not out.ok:
                result[source] = out.message
                continue
        except errors.TenantctlError as exc:
            result[source] = str(exc)
            continue
        for _region, repo in arch:
            by_repo.setdefault(repo, []).append(binlogjobs.Source(
                source, srv.address, PORT, password, secrets.archiver_id(repo, source)))
    staged = transport.File(binlog_agent.SUPERVISOR_STAGED, SUPERVISOR.read_bytes(), 0o644)
    repos = sorted(set(by_repo) | {topo.repositories[r] for r in topo.repositories})
    for repo in repos:
        srcs = by_repo.get(repo, [])
        try:
            out = _run(pool, repo, binlogjobs.BinlogJob("archive", sources=srcs), [staged])
            err = "" if out.ok else out.message
        except errors.TenantctlError as exc:
            err = str(exc)
        for s in srcs:
            if err and not result[s.name]:
                result[s.name] = f"archiver on {repo}: {err}"
    return result


# --- archive facts ----------------------------------------------------------------------------


def _archived(pool: transport.Pool, repo: str, names: Sequence[str]) -> dict[str, binlogjobs.Archive]:
    out = _run(pool, repo, binlogjobs.BinlogJob("archived", names=list(names)))
    if not out.ok:
        raise errors.PermanentError(f"server {repo}: {out.message}")
    return out.archives


def _unarchived(pool: transport.Pool, source: str, archive: binlogjobs.Archive) -> int | None:
    """Unix time of the source's first event the archive lacks (0: none); None when the
    source does not answer."""
    try:
        out = _run(pool, source, binlogjobs.BinlogJob("logs", archived={f.name: f.size for f in archive.files}))
    except errors.TenantctlError:
        return None
    return out.unarchived if out.ok else None


def _utc(ts: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ts, dt.UTC) if ts else None


def lag(topo: topology.Topology, pool: transport.Pool, sources: Sequence[str], *,
        now: dt.datetime | None = None) -> dict[str, Lag]:
    now = now or dt.datetime.now(dt.UTC)
    wanted: dict[str, list[str]] = {}
    for s in sources:
        for _region, repo in archivers(topo, s):
            wanted.setdefault(repo, []).append(s)
    listings: dict[str, dict[str, binlogjobs.Archive]] = {}
    for repo, names in wanted.items():
        try:
            listings[repo] = _archived(pool, repo, names)
        except errors.TenantctlError:
            listings[repo] = {}
    out = {}
    for s in sources:
        regions: dict[str, float] = {}
        newest: dt.datetime | None = None
        for region, repo in archivers(topo, s):
            archive = listings[repo].get(s)
            if archive is None:
                regions[region] = float("inf")
                continue
            last = _utc(archive.newest)
            newest = max(filter(None, [newest, last]), default=None)
            first_missing = _unarchived(pool, s, archive)
            if first_missing is None:  # the source is down: what is missing is unknown
                regions[region] = (now - last).total_seconds() if last else float("inf")
            else:
                regions[region] = max(0.0, now.timestamp() - first_missing) if first_missing else 0.0
        worst = max(regions, key=lambda r: regions[r], default="")
        out[s] = Lag(regions[worst] if worst else float("inf"), newest, worst, regions)
    return out


# --- recover ----------------------------------------------------------------------------------


def _dumps(store: state_store.Store, subscription: str, database: str) -> list[ledger.Snapshot]:
    return [s for s in ledger.snapshots(store, subscription) if s.kind == "db" and s.name == database]


@dataclass(frozen=True)
class _Source:
    region: str
    repo: str
    archive: binlogjobs.Archive
    #: the newest time the archive can recover to
    newest: dt.datetime


def _archive_for(topo: topology.Topology, pool: transport.Pool, source: str, first: str,
                 now: dt.datetime, prefer: str | None = None) -> _Source:
    """The first archive region (``prefer`` first) holding ``source``'s binlogs from file
    ``first`` on."""
    problems = []
    for region, repo in sorted(archivers(topo, source), key=lambda a: a[0] != prefer):
        try:
            archive = _archived(pool, repo, [source]).get(source)
        except errors.TenantctlError as exc:
            problems.append(f"{region}: {exc}")
            continue
        names = [f.name for f in archive.files] if archive else []
        if archive is None or first not in names:
            problems.append(f"{region}: the archive lacks {first}")
            continue
        newest = _utc(archive.newest) or now
        missing = _unarchived(pool, source, archive) if source in topo.ctx.servers else None
        if missing == 0:  # caught up with a live server: recoverable up to now
            newest = max(newest, now)
        return _Source(region, repo, archive, newest)
    raise OutOfRange(f"no archive of {source}'s binary logs from {first} on ({'; '.join(problems) or 'none'})")


def _position(topo: topology.Topology, pool: transport.Pool, server: str, snap: ledger.Snapshot
              ) -> tuple[str, int]:
    """The dump's binlog position, read on ``server``: the first job of a recovery there,
    so it carries the subscription's generation (a stale controller is refused before
    the database is emptied)."""
    repo = topo.repo(snap.server, snap.region)
    ca = transport.File(runner.CA_FILE, provisioning.backup.ca_pem(topo.state_dir).encode(), 0o600)
    out = _run(pool, server, binlogjobs.BinlogJob("position", repo=repo, cacert=runner.CA_FILE, snapshot=snap.id,
                                                  database=snap.name), [ca], writes=[snap.subscription])
    if not out.ok:
        raise errors.PermanentError(f"server {server}: {out.message}")
    if not out.file:
        raise OutOfRange(f"the dump {snap.id[:12]} of {snap.taken_at.isoformat()} recorded no binlog position "
                         "(taken before binary logging was on)")
    return out.file, out.position


def stop_datetime(at: dt.datetime) -> str:
    """``--stop-datetime`` for a target: the second after it (events of its second apply)."""
    whole = at.astimezone(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
    return whole.strftime("%Y-%m-%d %H:%M:%S")


def replay_argv(source: str, database: str, files: Sequence[str], start: int, at: dt.datetime) -> list[str]:
    """``mariadb-binlog`` on the archive: ``database``'s events from ``start`` in the first
    file to the target, without writing the replay to the binary log (checked names only)."""
    if not binlog_agent.DATABASE.match(database) or not binlog_agent.SOURCE.match(source) or not files:
        raise ValueError(f"not a database/source: {database!r}/{source!r}")
    paths = [f"{secrets.ARCHIVE_ROOT}/{source}/{binlog_agent.log_name(f)}" for f in files]
    return ["env", "TZ=UTC", "mariadb-binlog", f"--database={database}", "--disable-log-bin",
            f"--start-position={int(start)}", f"--stop-datetime={stop_datetime(at)}", *paths]


def recover(topo: topology.Topology, pool: transport.Pool, store: state_store.Store, server: str,
            subscription: str, database: str, at: dt.datetime | None, *, now: dt.datetime | None = None,
            region: str | None = None) -> Recovered:
    """Recover ``database`` (its name on the server) of ``subscription`` on ``server`` to
    ``at`` (see the module docstring); ``at`` None: to the newest archived event (from
    the newest dump: after a region loss). ``region``: take the dump and the archive
    from that region (after a region loss: a surviving one); default: the dump's
    source's own region first."""
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    latest = at is None
    at = now if at is None else at.astimezone(dt.UTC)
    if not binlog_agent.DATABASE.match(database):
        raise OutOfRange(f"not a database name: {database!r}")
    if at > now:
        raise OutOfRange(f"{at.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})")
    dumps = _dumps(store, subscription, database)
    if not dumps:
        raise OutOfRange(f"{subscription} has no nightly dump of {database}")
    if region is not None:
        dumps = [s for s in dumps if s.region == region]
        if not dumps:
            raise OutOfRange(f"region {region} holds no nightly dump of {database}")
    eligible = [s for s in dumps if s.taken_at <= at]
    if not eligible:
        oldest = min(s.taken_at for s in dumps)
        raise OutOfRange(f"{at.isoformat()} is before the oldest nightly dump of {database} "
                         f"({oldest.isoformat()})")
    newest_at = max(s.taken_at for s in eligible)
    same = [s for s in eligible if s.taken_at == newest_at]
    order = topo.regions_of(same[0].server) if same[0].server in topo.ctx.servers else ()
    snap = sorted(same, key=lambda s: (order.index(s.region) if s.region in order else len(order), s.region))[0]
    first, start = _position(topo, pool, server, snap)
    arch = _archive_for(topo, pool, snap.server, first, now, region)
    if latest:
        at = min(at, arch.newest)
    if at > arch.newest:
        raise OutOfRange(f"{at.isoformat()} is after the newest archived binlog event of {snap.server} "
                         f"({arch.newest.isoformat()}, region {arch.region})")
    names = [f.name for f in arch.archive.files]
    chosen = names[names.index(first):]
    argv = replay_argv(snap.server, database, chosen, start, at)
    with tempfile.TemporaryDirectory(prefix="binlog-replay-", dir=_scratch(topo)) as tmp:
        sql_path = Path(tmp) / "replay.sql"
        code = pool.get(arch.repo).fetch(argv, sql_path, timeout=TIMEOUT)
        if code != 0:
            raise errors.PermanentError(f"server {arch.repo}: mariadb-binlog exited {code} making the replay")
        sql = sql_path.read_bytes()
    progress = binlog_agent.Progress(chosen, start)
    for line in sql.decode(errors="replace").splitlines():
        progress.feed(line)
    # the first change: the database emptied (it is brought back as it was at the target:
    # a table created after the dump is created again by the replay), the dump back,
    # then the events after it
    _empty(pool, server, database)
    part = backupjobs.Part(kind="db", name=database, engine="mariadb", snapshot=snap.id)
    results = restore.restore(topo, pool, subscription, restore.Choice(snap.region, {server: [part]}, [snap]))
    failed = [r for r in results if not r.ok]
    if failed:
        raise errors.PermanentError(f"restoring dump {snap.id[:12]}: {failed[0].error}")
    pool.get(server).check(["mariadb", "--binary-mode", "--batch"], stdin=sql, timeout=TIMEOUT)
    return Recovered(dump_snapshot=snap.id, stopped_at=progress.stopped_at, archive_region=arch.region,
                     dump_position=f"{first}:{start}", replayed=len(sql), seconds=time.monotonic() - started,
                     point=max(at, snap.taken_at) if latest else at)


_CHARSET = re.compile(r"^[a-z0-9_]{1,64}$")


def _empty(pool: transport.Pool, server: str, database: str) -> None:
    """``database`` dropped and created again with its character set and collation (its
    logins' privileges stay: MariaDB keeps database-level grants across a drop)."""
    t = pool.get(server)
    found = t.check(["mariadb", "-N", "-B", "-e", "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                     f"FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"]).stdout.decode().split()
    if len(found) != 2 or not all(_CHARSET.match(x) for x in found):
        raise errors.PermanentError(f"server {server}: database {database} not found or unreadable: {found!r}")
    charset, collation = found
    t.check(["mariadb", "-e", f"DROP DATABASE `{database}`; "
             f"CREATE DATABASE `{database}` CHARACTER SET {charset} COLLATE {collation}"])


def _scratch(topo: topology.Topology) -> Path:
    path = topo.state_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def window(topo: topology.Topology, pool: transport.Pool, store: state_store.Store, server: str,
           subscription: str, database: str, *, now: dt.datetime | None = None
           ) -> tuple[dt.datetime, dt.datetime] | None:
    """[oldest nightly dump, newest archived event (now when the archive is caught up)]
    of ``database``, None when there is no dump or no archive. ``server``: where the
    database lives (reads the oldest dump's position)."""
    now = now or dt.datetime.now(dt.UTC)
    dumps = _dumps(store, subscription, database)
    if not dumps:
        return None
    oldest = min(dumps, key=lambda s: s.taken_at)
    try:
        first, _start = _position(topo, pool, server, oldest)
        arch = _archive_for(topo, pool, oldest.server, first, now)
    except errors.PermanentError:
        return None
    return oldest.taken_at, arch.newest
