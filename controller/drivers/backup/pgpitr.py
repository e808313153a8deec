"""PostgreSQL point-in-time recovery with pgBackRest (issue 10, BKP-4): the controller's side.

Every ``db-postgresql`` server is a stanza (its name) archiving every WAL segment into
two repositories: index 1 = its region's repository server, index 2 = the repository of
the first region its region copies to (``topology``); remote repositories over
pgBackRest's TLS server with certificates of the backup CA (``provisioning.pitr``). The
agent entry ``pgpitr`` does the work on each server; this module decides who does what:

* ``ensure``: the configuration of every host involved (its ``pgbackrest.conf`` covers
  every stanza it takes part in, from the whole topology), then archiving on each db
  server (one restart of PostgreSQL when ``archive_mode`` changes), stanza-create and
  check. Idempotent: unchanged hosts are not touched and nothing restarts. A repository
  host that does not answer (a lost region's: after an evacuation the moved databases'
  server archives into its own region's repository and the lost one's) is left out of
  the db hosts' configuration, so archiving into the repository that answers starts at
  once; the server's answer says so (not ""), and the next ``ensure`` after that host
  answers again adds it back (``conf.answering``).
* ``base_backup`` (weekly full, nightly diff) on each repository host, ``verify``.
* ``recover``: WAL switch and wait until archived, then the target checked against the
  archive (``OutOfRange``, nothing changed), then the stanza restored into a scratch
  instance on the db server and one database dumped into the live one (BKP-5).
* ``recover_latest``: after the loss of a server's region, one of its databases
  recovered on another server from the end of its archive in a surviving region's
  repository (the lost server is never asked: ``evacuate``).
* ``lag`` and ``window`` for status and metrics.

A db server's PostgreSQL major version (its release's, ``context.Server.pg_version``
from ``kinds.RELEASES``) is in its stanza and in every job that touches its cluster:
the agent never guesses it.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from controller import errors
from controller.agent import jobs
from controller.agent import pgpitrjobs as pj
from controller.drivers import transport
from controller.drivers.backup import topology
from controller.drivers.pgpitr import conf, info
from controller.provisioning import backup as backup_secrets
from controller.provisioning import pitr as pitr_secrets

ROLE = "db-postgresql"
#: keepDaily when the caller gives none (the plans' default)
KEEP_DAILY = 15
#: seconds an agent job may take (a base backup of a big cluster, a restore)
LONG = 6 * 3600.0
SHORT = 300.0
HOSTS_AT_ONCE = 8
_DB = re.compile(r"^[a-z0-9_]{1,63}$")

T = TypeVar("T")


class OutOfRange(errors.PermanentError):
    """The recovery target is not covered by the archive (before the oldest base backup,
    after the newest archived WAL): nothing was changed."""


@dataclass(frozen=True)
class BaseBackupResult:
    server: str
    kind: str
    #: region -> the backup's label (e.g. ``20261130-162312F``)
    labels: dict[str, str] = field(default_factory=dict)
    #: region -> what failed
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.labels)


@dataclass(frozen=True)
class Recovered:
    base_backup: str
    stopped_at: str
    repository_region: str
    seconds: float = 0.0
    #: the time recovered to (the target; to the end of the archive: its last transaction)
    point: dt.datetime | None = None


@dataclass(frozen=True)
class Lag:
    #: seconds since the oldest completed WAL segment not archived yet; 0 when all is
    #: archived; NaN when the server could not be asked (``error``)
    seconds: float
    newest_archived: dt.datetime | None
    error: str = ""


def retention(keep_daily: int) -> tuple[int, int]:
    """(full, diff) retention counts for weekly fulls and nightly diffs that keep
    ``keep_daily`` days recoverable."""
    keep = max(1, keep_daily)
    return math.ceil(keep / 7) + 1, keep


def db_servers(topo: topology.Topology) -> list[str]:
    return sorted(n for n, s in topo.ctx.servers.items() if ROLE in s.roles)


def stanza_of(topo: topology.Topology, server: str, keep_daily: int = KEEP_DAILY) -> conf.Stanza | None:
    """``server``'s stanza (None when no region can hold its archive)."""
    region = topo.region_of(server)
    repos = []
    if region in topo.repositories:
        repos.append(conf.Repo(1, region, topo.repositories[region]))
    other = next(iter(topo.target_regions(server)), None)
    if other is not None:
        repos.append(conf.Repo(2, other, topo.repositories[other]))
    if not repos:
        return None
    full, diff = retention(keep_daily)
    # the db servers of its copy region may recover it there (from the repository of
    # their own region) after the loss of its region
    readers = tuple(sorted((n, r.index) for r in repos if r.region != region
                           for n, s in topo.ctx.servers.items() if ROLE in s.roles and n != server
                           and s.region == r.region))
    return conf.Stanza(server, server, tuple(repos), full, diff, topo.ctx.servers[server].pg_version, readers)


def stanzas(topo: topology.Topology, keep_daily: int = KEEP_DAILY) -> list[conf.Stanza]:
    return [s for s in (stanza_of(topo, n, keep_daily) for n in db_servers(topo)) if s is not None]


def _stanza(topo: topology.Topology, server: str) -> conf.Stanza:
    if server not in topo.ctx.servers or ROLE not in topo.ctx.servers[server].roles:
        raise errors.PermanentError(f"{server} is not a {ROLE} server")
    st = stanza_of(topo, server)
    if st is None:
        raise errors.PermanentError(f"{server}: no region with a backup server can hold its WAL archive")
    return st


def run(pool: transport.Pool, server: str, job: pj.PgPitrJob, staged: Sequence[transport.File] = (), *,
        timeout: float = SHORT, writes: Sequence[str] = ()) -> pj.PgPitrOutcome:
    """One ``pgpitr`` agent job on ``server``; a failed one raises ``PermanentError``.
    ``writes``: the subscriptions whose things it writes there (a recovery into a
    tenant's database): the job carries their generations (fencing, ``transport``)."""
    out = transport.Agent(pool.get(server), "pgpitr").run(jobs.Job(jobs.VERSION, "pitr", pgpitr=job), staged,
                                                          timeout=timeout, writes=writes)
    if out.pgpitr is None:
        raise errors.PermanentError(f"server {server}: the pgpitr agent answered without an outcome")
    if not out.pgpitr.ok:
        raise errors.PermanentError(f"server {server}: pgpitr {job.action}: {out.pgpitr.message}")
    return out.pgpitr


def _each(names: Sequence[str], work: Callable[[str], T]) -> dict[str, T | errors.TenantctlError]:
    out: dict[str, T | errors.TenantctlError] = {}
    if not names:
        return out
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(HOSTS_AT_ONCE, len(names))) as ex:
        futures = {ex.submit(work, n): n for n in names}
        for fut in concurrent.futures.as_completed(futures):
            try:
                out[futures[fut]] = fut.result()
            except errors.TenantctlError as exc:
                out[futures[fut]] = exc
    return out


def _configure(topo: topology.Topology, pool: transport.Pool, host: str, every: list[conf.Stanza]) -> bool:
    addresses = {n: s.address for n, s in topo.ctx.servers.items()}
    cert, key = pitr_secrets.identity(topo.state_dir, host)
    staged = [transport.File("pgbackrest.conf", conf.render(host, addresses[host], every).encode(), 0o600),
              transport.File("ca.crt", backup_secrets.ca_pem(topo.state_dir).encode(), 0o600),
              transport.File("host.crt", cert.encode(), 0o600), transport.File("host.key", key.encode(), 0o600)]
    job = pj.PgPitrJob(action="configure", serve=True, address=addresses[host],
                       hosts=conf.hosts_entries(host, every, addresses),
                       files=[pj.ConfFile(pj.CONF, "pgbackrest.conf"), pj.ConfFile(pj.TLS_CA, "ca.crt"),
                              pj.ConfFile(pj.TLS_CERT, "host.crt"), pj.ConfFile(pj.TLS_KEY, "host.key")])
    return run(pool, host, job, staged).changed


def ensure(topo: topology.Topology, pool: transport.Pool, servers: Sequence[str], *,
           keep_daily: int = KEEP_DAILY) -> dict[str, str]:
    """Archiving configured on each of ``servers``: server -> "" (ok) or what failed.
    PostgreSQL restarts once, when ``archive_mode`` is switched on (``restarted`` in
    the agent's answer; the first ``ensure`` of a server)."""
    every = stanzas(topo, keep_daily)
    result: dict[str, str] = {}
    wanted: list[conf.Stanza] = []
    for server in servers:
        try:
            st = _stanza(topo, server)
        except errors.PermanentError as exc:
            result[server] = str(exc)
            continue
        wanted.append(next(s for s in every if s.name == st.name))
    hosts = sorted({h for s in wanted for h in s.hosts()})
    configured = _each(hosts, lambda h: _configure(topo, pool, h, every))
    down = unanswered(wanted, configured)
    skipped: dict[str, list[conf.Repo]] = {}
    if down:  # the repositories that answer: the db hosts archive into them alone for now
        every = conf.answering(every, down)
        narrowed = {s.name: s for s in every}
        for st in wanted:
            if st.name in narrowed and narrowed[st.name] != st:
                skipped[st.name] = [r for r in st.repos if r.host in down]
        wanted = [narrowed.get(s.name, s) for s in wanted]
        configured.update(_each(sorted({s.db_host for s in wanted if s.name in skipped}),
                                lambda h: _configure(topo, pool, h, every)))

    def archive(st: conf.Stanza) -> str:
        failed = [f"{h}: {v}" for h in sorted(st.hosts()) if isinstance(v := configured[h], errors.TenantctlError)]
        if failed:
            return "; ".join(failed)
        staged = [transport.File("pitr.conf", conf.pg_conf(st.name).encode(), 0o600)]
        run(pool, st.db_host, pj.PgPitrJob(action="archive", stanza=st.name, pg_version=st.pg_version,
                                           files=[pj.ConfFile(pj.pg_conf(st.pg_version), "pitr.conf")]), staged)
        if st.name in skipped:
            return (f"archiving into {', '.join(r.region for r in st.repos)} only: the repository of "
                    + ", ".join(f"{r.region} ({r.host}: {configured[r.host]})" for r in skipped[st.name])
                    + " does not answer; it is added when it answers")
        return ""
    done = _each([s.name for s in wanted], lambda n: archive(next(s for s in wanted if s.name == n)))
    for name, value in done.items():
        result[name] = str(value) if isinstance(value, errors.TenantctlError) else value
    return result


def unanswered(wanted: Sequence[conf.Stanza], configured: Mapping[str, object]) -> set[str]:
    """The repository hosts of ``wanted`` that could not be reached (``TemporaryError``:
    SSH could not connect, or no answer): left out until they answer (``conf.answering``).
    A host that answered with an error is not among them (that error is reported), nor
    a db host (its stanza cannot archive at all)."""
    repo_hosts = {r.host for s in wanted for r in s.repos} - {s.db_host for s in wanted}
    return {h for h in repo_hosts if isinstance(configured.get(h), errors.TemporaryError)}


def base_backup(topo: topology.Topology, pool: transport.Pool, server: str,
                kind: Literal["full", "diff"]) -> BaseBackupResult:
    """A base backup of ``server`` into each of its repositories (run on each repository
    host, ``start-fast``); a ``diff`` without a full becomes a full (pgBackRest)."""
    st = _stanza(topo, server)
    started = time.monotonic()
    labels: dict[str, str] = {}
    failed: dict[str, str] = {}
    for repo in st.repos:
        try:
            out = run(pool, repo.host, pj.PgPitrJob(action="backup", stanza=st.name, repo=repo.index, kind=kind),
                      timeout=LONG)
            newest = info.parse(out.info, st.name).newest()
            if newest is None:
                raise errors.PermanentError(f"{repo.host}: no backup listed after the backup")
            labels[repo.region] = newest.label
        except (errors.TenantctlError, ValueError) as exc:
            failed[repo.region] = str(exc)
    return BaseBackupResult(server, kind, labels, failed, round(time.monotonic() - started, 3))


def verify(topo: topology.Topology, pool: transport.Pool, server: str) -> str:
    """``pgbackrest verify`` of each repository: "" when all are sound, else the problems."""
    st = _stanza(topo, server)
    problems = []
    for repo in st.repos:
        try:
            run(pool, repo.host, pj.PgPitrJob(action="verify", stanza=st.name, repo=repo.index), timeout=LONG)
        except errors.TenantctlError as exc:
            problems.append(f"{repo.region}: {exc}")
    return "; ".join(problems)


def _epoch(text: str) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(float(text), dt.UTC) if text else None


def state(topo: topology.Topology, pool: transport.Pool, server: str, *, switch: bool = False
          ) -> tuple[info.Stanza, pj.PgPitrOutcome]:
    st = _stanza(topo, server)
    out = run(pool, server, pj.PgPitrJob(action="info", stanza=st.name, switch=switch, pg_version=st.pg_version))
    try:
        return info.parse(out.info, st.name), out
    except ValueError as exc:
        raise errors.PermanentError(f"server {server}: {exc}") from exc


def window(topo: topology.Topology, pool: transport.Pool, server: str) -> tuple[dt.datetime, dt.datetime] | None:
    """(end of the oldest base backup, newest archived WAL time), None without a backup."""
    parsed, out = state(topo, pool, server)
    oldest, newest = parsed.oldest(), _epoch(out.last_archived_time)
    return None if oldest is None or newest is None else (oldest.stop, newest)


def lag(topo: topology.Topology, pool: transport.Pool, servers: Sequence[str]) -> dict[str, Lag]:
    """Per db server: seconds since the oldest WAL segment not archived yet, newest archived time."""
    def one(server: str) -> Lag:
        st = _stanza(topo, server)
        out = run(pool, server, pj.PgPitrJob(action="lag", stanza=st.name, pg_version=st.pg_version))
        return Lag(out.waiting_seconds, _epoch(out.last_archived_time))
    got = _each(list(servers), one)
    return {s: v if isinstance(v, Lag) else Lag(math.nan, None, str(v)) for s, v in got.items()}


def target_text(at: dt.datetime) -> str:
    """A recovery target as pgBackRest takes it (UTC, microseconds)."""
    if at.tzinfo is None:
        raise ValueError("a recovery target needs a time zone")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00"


def recover(topo: topology.Topology, pool: transport.Pool, server: str, database: str,
            at: dt.datetime, *, subscription: str = "") -> Recovered:
    """``database`` on ``server`` as it was at ``at`` (BKP-5 overwrite; other databases
    untouched). ``subscription``: the database's (the recovery job then carries its
    generation: fencing)."""
    started = time.monotonic()
    if not _DB.match(database):
        raise errors.PermanentError(f"not a database name: {database!r}")
    st = _stanza(topo, server)
    target = target_text(at)
    parsed, out = state(topo, pool, server, switch=True)  # the last minute becomes reachable
    newest = _epoch(out.switched_at)
    if newest is None or at > newest:
        raise OutOfRange(f"{server}: {at.isoformat()} is after the newest archived WAL "
                         f"({newest.isoformat() if newest else 'none'})")
    base = parsed.base_for(at, [r.index for r in st.repos])
    if base is None:
        oldest = parsed.oldest()
        raise OutOfRange(f"{server}: {at.isoformat()} is before the oldest base backup "
                         f"({oldest.label + ' ended ' + oldest.stop.isoformat() if oldest else 'none yet'})")
    repo = st.repo(base.repo)
    job = pj.PgPitrJob(action="recover", stanza=st.name, repo=repo.index, target=target, backup_set=base.label,
                       database=database, pg_version=st.pg_version)
    done = _recovery(pool, server, job, subscription)
    return Recovered(base.label, done.stopped_at, repo.region, round(time.monotonic() - started, 3), at)


def _recovery(pool: transport.Pool, server: str, job: pj.PgPitrJob, subscription: str) -> pj.PgPitrOutcome:
    """A ``recover`` job, carrying ``subscription``'s generation when it is named."""
    if subscription:
        return run(pool, server, job, timeout=LONG, writes=[subscription])
    return run(pool, server, job, timeout=LONG)


_LAST_TX = re.compile(r"last completed transaction was at log time (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d)")


def last_transaction(stopped_at: str) -> dt.datetime | None:
    """The time of the last transaction a recovery replayed (``stopped_at``: the agent's
    excerpt of the scratch instance's log), None when the log does not say."""
    m = _LAST_TX.search(stopped_at)
    if m is None:
        return None
    try:
        return dt.datetime.fromisoformat(m.group(1) + ":00").astimezone(dt.UTC)
    except ValueError:
        return None


def catalog(topo: topology.Topology, pool: transport.Pool, source: str, region: str) -> tuple[conf.Repo, info.Stanza]:
    """``source``'s stanza as its repository in ``region`` holds it (read on that
    repository's host: ``source`` itself is not asked)."""
    st = _stanza(topo, source)
    repo = next((r for r in st.repos if r.region == region), None)
    if repo is None:
        raise OutOfRange(f"{source}'s WAL archive has no repository in {region} "
                         f"(it is archived in {', '.join(r.region for r in st.repos)})")
    out = run(pool, repo.host, pj.PgPitrJob(action="catalog", stanza=st.name, repo=repo.index))
    try:
        return repo, info.parse(out.info, st.name)
    except ValueError as exc:
        raise errors.PermanentError(f"server {repo.host}: {exc}") from exc


def recover_latest(topo: topology.Topology, pool: transport.Pool, server: str, source: str, database: str,
                   region: str, *, subscription: str = "") -> Recovered:
    """``database`` on ``server`` (BKP-5 overwrite) as ``source``'s WAL archive in
    ``region``'s repository last holds it: its newest base backup there, replayed to the
    end of the archive (``source`` may be down: a lost region's server; ``server`` can
    be ``source`` itself). ``OutOfRange`` (nothing changed) without a base backup there
    or when ``server`` runs another PostgreSQL major version than ``source``'s.
    ``subscription``: the database's (the job then carries its generation: fencing)."""
    started = time.monotonic()
    if not _DB.match(database):
        raise errors.PermanentError(f"not a database name: {database!r}")
    _stanza(topo, server)
    st = _stanza(topo, source)
    here = topo.ctx.servers[server].pg_version
    if here != st.pg_version:  # a cluster's files are recovered by its own major version only
        raise OutOfRange(f"{source}'s archive is of PostgreSQL {st.pg_version}, {server} runs {here}")
    repo, parsed = catalog(topo, pool, source, region)
    if parsed.repos.get(repo.index, (1, ""))[0] != 0:
        raise OutOfRange(f"{source}'s repository in {region} ({repo.host}) is not usable: "
                         f"{parsed.repos.get(repo.index, (1, 'not listed'))[1]}")
    backups = parsed.usable(repo.index)
    if not backups:
        raise OutOfRange(f"no base backup of {source} in its repository in {region} ({repo.host})")
    base = max(backups, key=lambda b: b.stop)
    done = _recovery(pool, server, pj.PgPitrJob(action="recover", stanza=st.name, repo=repo.index, latest=True,
                                                backup_set=base.label, database=database, pg_version=st.pg_version,
                                                recovery_conf=conf.recovery(st, server, repo.index)), subscription)
    return Recovered(base.label, done.stopped_at, repo.region, round(time.monotonic() - started, 3),
                     max(filter(None, [last_transaction(done.stopped_at), base.stop])))
