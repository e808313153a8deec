"""The ``db`` concern's driver: tenant databases and their logins (issue 3, point 4).

Per batch: gather (one query per database server and engine: databases, logins,
grants, lock state, sizes), decide with ``decide.steps`` (pure), act. Each database
lives on its own server (``effective.databases[].server``), not necessarily the
subscription's web server the engine batches by, so connections follow the slice.

- ensure / suspend: database + login + grant; login locked when suspended (LIFE-2),
  unlocked when active. Databases dropped from the spec are dumped, then dropped.
- delete (LIFE-6): a final dump of every database on file for the subscription, all of
  them first; only if every dump is complete are databases and logins dropped.
- sizes are measured in the same query and compared with ``databaseQuotaMB`` (RES-2:
  reported, nothing deleted).
- fencing (issue 10 item 4, DR-1): before writing on a server, the batch's subscriptions
  are checked against that server's ``tenantctl.fence`` table and raised there
  (``fence``; one read per server and engine, the generations of the engine's view,
  ``use_generations``, once per pass); a subscription the server has seen a newer
  generation of is refused there, a permanent failure naming both generations; a
  subscription refused on one server drops nothing anywhere.
- moves (issue 13): ``freeze`` makes a database read-only for its login (or writable
  again), ``drop_copy`` removes the source's copy. A frozen database keeps its rights
  through any pass (``decide.Observed.frozen``: only ``freeze`` gives them back).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from controller import errors
from controller.agent import jobs
from controller.drivers import base, naming, slices, transport
from controller.drivers.context import Context
from controller.drivers.db import credentials, decide, dump, fence, mariadb, postgresql
from controller.effective import spec

ENGINES = ("mariadb", "postgresql")
Key = tuple[str, str]  # (server, engine)


@dataclass(frozen=True)
class Settings:
    """How the db driver reaches and shapes tenant databases."""

    #: MariaDB host part of tenant logins (who may connect); the default is the loopback
    #: network the embedded servers live on, like PostgreSQL's pg_hba networks.
    mariadb_login_host: str = "127.0.0.0/255.0.0.0"
    #: TCP ports of the engines on each server's address.
    ports: Mapping[str, int] = field(default_factory=lambda: {"mariadb": mariadb.PORT,
                                                              "postgresql": postgresql.PORT})
    #: connect timeout in seconds (statements get 12 times that)
    timeout: float = 5.0


class Backend(Protocol):
    engine: str
    changes: int

    def observe(self) -> decide.Observed: ...
    def fence(self, sent: Mapping[str, int]) -> dict[str, jobs.Fenced]: ...
    def run(self, step: decide.Step) -> None: ...
    def drop(self, database: str, user: str) -> None: ...
    def freeze(self, database: str, user: str, *, read_only: bool) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Outcome:
    notes: list[str] = field(default_factory=list)
    failures: list[errors.DriverError] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    size: int = 0

    def fail(self, err: errors.DriverError) -> None:
        self.failures.append(err)


def _mb(n: int) -> float:
    return n / 1048576


DbChange = base.Change[slices.Db]


class DbDriver:
    """Tenant databases on MariaDB and PostgreSQL servers."""

    concern = "db"

    def __init__(self, ctx: Context, settings: Settings | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or Settings()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        #: ``{sub: {"databaseMB": x}}`` measured by the last apply (for store.put_usage)
        self.last_usage: dict[str, dict[str, float]] = {}
        #: statements that changed something in the last apply (0: a no-op)
        self.last_changes = 0
        #: regions under evacuation (from the state store): their databases may move out
        self._evacuated: Callable[[], Mapping[str, str]] = dict
        #: subscriptions placed on another server by a move (state.moves): their databases follow
        self._moving: Callable[[], Mapping[str, str]] = dict
        #: subscriptions whose databases a move keeps read-only (state.moves.frozen)
        self._frozen: Callable[[], frozenset[str]] = frozenset
        #: the subscriptions' generations this driver's writes carry (fencing, DR-1)
        self.generations = transport.Generations(getattr(ctx, "state_dir", None))

    def use_generations(self, gens: Mapping[str, int]) -> None:
        """The engine's view of the subscriptions' generations, once per pass (fencing)."""
        self.generations.use(gens)

    @property
    def state_dir(self) -> Path:
        return self.ctx.state_dir

    def sources(self) -> Sequence[Path]:
        """What decides what this driver creates: its package and the naming rules of
        databases and logins (base.Versioned)."""
        return [Path(__file__).resolve().parent, Path(naming.__file__).resolve()]

    def use_store(self, store: object) -> None:
        from controller.state import moves, regions

        self._evacuated = lambda: regions.targets(store)  # type: ignore[arg-type]
        self._moving = lambda: moves.targets(store)  # type: ignore[arg-type]
        self._frozen = lambda: moves.frozen(store)  # type: ignore[arg-type]

    def _evacuating(self, creds: credentials.Credentials, server: str) -> bool:
        """The database's recorded server is in a region under evacuation and its new
        one outside it: the database is re-created there (restored from backups, DR-1)."""
        old, new = self.ctx.servers.get(creds.server), self.ctx.servers.get(server)
        return (old is not None and new is not None and old.region != new.region
                and old.region in self._evacuated())

    def slice(self, item: spec.Item) -> slices.Db:
        return slices.db(item)

    # --- connections -------------------------------------------------------------

    def _address(self, server: str, engine: str) -> tuple[str, int]:
        srv = self.ctx.servers.get(server)
        if srv is None:
            raise errors.PermanentError(f"unknown database server {server!r}")
        if f"db-{engine}" not in srv.roles:
            raise errors.PermanentError(f"server {server} has no db-{engine} role")
        return srv.address, self.settings.ports[engine]

    def _connect(self, key: Key) -> Backend:
        server, engine = key
        host, port = self._address(server, engine)
        try:
            secrets = self.ctx.secrets(server)
        except (OSError, ValueError, KeyError) as exc:
            raise errors.PermanentError(f"no admin credentials for {server}: {exc}") from exc
        if engine == "mariadb":
            return mariadb.MariaDB(server, host, port, secrets["mariadb_admin_user"],
                                   secrets["mariadb_admin_password"], login_host=self.settings.mariadb_login_host,
                                   timeout=self.settings.timeout)
        return postgresql.PostgreSQL(server, host, port, secrets["postgresql_admin_user"],
                                     secrets["postgresql_admin_password"], timeout=self.settings.timeout)

    # --- what a change wants -----------------------------------------------------

    def _wanted(self, change: DbChange, out: _Outcome, *, create: bool) -> list[decide.Wanted]:
        """The change's databases with their stored credentials (created when ``create``)."""
        wanted: list[decide.Wanted] = []
        for entry in change.slice.get("databases", []):
            db, engine, server = entry["name"], entry["engine"], entry.get("server")
            if server is None:
                out.unplaced.append(db)
                continue
            try:
                if engine not in ENGINES:
                    raise errors.PermanentError(f"{db}: unknown engine {engine!r}")
                host, port = self._address(server, engine)
                if create:
                    creds = credentials.ensure(self.state_dir, change.name, db, engine=engine, server=server,
                                               host=host, port=port)
                else:
                    found = credentials.load(self.state_dir, change.name, db)
                    if found is None:
                        out.notes.append(f"{db}: never provisioned (no credentials on file)")
                        continue
                    creds = found
            except ValueError as exc:
                out.fail(errors.PermanentError(f"{db}: {exc}"))
                continue
            except errors.DriverError as exc:
                out.fail(exc)
                continue
            if creds.engine == engine and creds.server != server and create and self._evacuating(creds, server):
                host, port = self._address(server, engine)
                creds = credentials.move(self.state_dir, creds, server=server, host=host, port=port)
                out.notes.append(f"{db}: moved out of an evacuated region to {server}")
            elif creds.engine == engine and creds.server != server and create and change.name in self._moving():
                # issue 13: created empty on the move's server, restored there from its backup; the
                # source's copy stays (read-only) until the move removes it (``drop_copy``)
                host, port = self._address(server, engine)
                out.notes.append(f"{db}: moved from {creds.server} to {server} (tenantctl move)")
                creds = credentials.move(self.state_dir, creds, server=server, host=host, port=port)
            if (creds.engine, creds.server) != (engine, server):
                out.fail(errors.PermanentError(
                    f"{db}: lives on {creds.engine} on {creds.server}; moving it to {engine} on {server} is not "
                    "supported (remove it from the spec, which dumps and drops it, then add it under a new name)"))
                continue
            wanted.append(decide.Wanted(sub=change.name, db=db, engine=engine, server=server,
                                        database=creds.database, user=creds.user, password=creds.password))
        return wanted

    def final_dump(self, sub: str, creds: credentials.Credentials) -> Path:
        """LIFE-6: a dump of the database ``creds`` names, taken with its server's admin
        login, before it is dropped; where it is."""
        secrets = self.ctx.secrets(creds.server)
        prefix = creds.engine if creds.engine == "mariadb" else "postgresql"
        return dump.dump(self.state_dir, sub, creds.db, engine=creds.engine, host=creds.host, port=creds.port,
                         user=secrets[f"{prefix}_admin_user"], password=secrets[f"{prefix}_admin_password"],
                         database=creds.database, now=self.clock())

    def _retired(self, change: DbChange) -> list[credentials.Credentials]:
        """Databases on file for the subscription that its spec no longer has."""
        names = {d["name"] for d in change.slice.get("databases", [])}
        return [c for c in credentials.list_for(self.state_dir, change.name) if c.db not in names]

    # --- apply -------------------------------------------------------------------

    def apply(self, server: str | None, changes: Sequence[DbChange]) -> list[base.Result]:
        del server  # each database names its own server
        outs = {c.name: _Outcome() for c in changes}
        ensure: dict[Key, list[tuple[DbChange, decide.Wanted]]] = defaultdict(list)
        retire: dict[Key, list[tuple[DbChange, credentials.Credentials]]] = defaultdict(list)
        # asked only when something is ensured: a deletion never needs the store (callers
        # remove what a test or a command left after closing it)
        frozen = self._frozen() if any(c.action != "delete" for c in changes) else frozenset()
        for change in changes:
            if change.action == "delete":
                for creds in credentials.list_for(self.state_dir, change.name):
                    retire[(creds.server, creds.engine)].append((change, creds))
                continue
            if change.name in frozen:  # a pass, a drift repair or apply --force would grant writes again
                outs[change.name].notes.append("frozen by a move in progress (read-only until it switches): "
                                               "left as they are")
                continue
            for want in self._wanted(change, outs[change.name], create=True):
                ensure[(want.server, want.engine)].append((change, want))
            for creds in self._retired(change):
                retire[(creds.server, creds.engine)].append((change, creds))
        backends: dict[Key, Backend | errors.DriverError] = {}
        observed: dict[Key, decide.Observed] = {}
        self.last_changes = 0
        try:
            for key in sorted(set(ensure) | set(retire)):
                self._open(key, ensure, retire, backends, observed, outs)
            for key, items in sorted(ensure.items()):
                self._ensure(key, items, backends[key], observed.get(key), outs)
            deleting = [c for c in changes if c.action == "delete"]
            self._retire(retire, backends, observed, outs, all_first={c.name for c in deleting})
        finally:
            for b in backends.values():
                if not isinstance(b, errors.DriverError):
                    self.last_changes += b.changes
                    b.close()
        self.last_usage = {
            c.name: {"databaseMB": round(_mb(outs[c.name].size), 3)} for c in changes
            if c.action != "delete" and c.name not in frozen  # not measured: left as they are
        }
        return [self._result(c, outs[c.name]) for c in changes]

    def _open(self, key: Key, ensure: dict[Key, list[tuple[DbChange, decide.Wanted]]],
              retire: dict[Key, list[tuple[DbChange, credentials.Credentials]]],
              backends: dict[Key, Backend | errors.DriverError], observed: dict[Key, decide.Observed],
              outs: dict[str, _Outcome]) -> None:
        """Connect to ``key``'s server, observe it and check the fence of the
        subscriptions the batch writes there; the refused ones' items on it are taken out
        of ``ensure`` and ``retire`` (their outcome fails, permanently)."""
        backend: Backend | None = None
        try:
            backend = self._connect(key)
            observed[key] = backend.observe()
            subs = {c.name for c, _w in ensure.get(key, ())} | {c.name for c, _c in retire.get(key, ())}
            refused = backend.fence(self.generations.of(subs))
        except errors.DriverError as exc:
            if backend is not None:
                self.last_changes += backend.changes
                backend.close()
            backends[key] = exc
            return
        backends[key] = backend
        if not refused:
            return
        server, engine = key
        for sub, f in sorted(refused.items()):
            outs[sub].fail(fence.refusal(f"{engine} on {server}", {sub: f}))
        if key in ensure:
            ensure[key] = [(c, w) for c, w in ensure[key] if c.name not in refused]
        if key in retire:
            retire[key] = [(c, cr) for c, cr in retire[key] if c.name not in refused]

    def _ensure(self, key: Key, items: list[tuple[DbChange, decide.Wanted]],
                backend: Backend | errors.DriverError, obs: decide.Observed | None,
                outs: dict[str, _Outcome]) -> None:
        for change, want in items:
            out = outs[change.name]
            if isinstance(backend, errors.DriverError) or obs is None:
                assert isinstance(backend, errors.DriverError)
                out.fail(backend)
                continue
            out.size += obs.databases.get(want.database, 0)
            try:
                todo = decide.steps(want, obs, locked=change.action == "suspend")
                for step in todo:
                    backend.run(step)
            except errors.DriverError as exc:
                out.fail(exc)
                continue
            if todo:
                out.notes.append(f"{want.db} ({want.engine} on {want.server}): "
                                 + ", ".join(s.kind.replace("_", " ") for s in todo))

    def _retire(self, retire: dict[Key, list[tuple[DbChange, credentials.Credentials]]],
                backends: Mapping[Key, Backend | errors.DriverError], observed: Mapping[Key, decide.Observed],
                outs: dict[str, _Outcome], *, all_first: set[str]) -> None:
        """Dump, then drop. For deletions (``all_first``) every database of the
        subscription is dumped before any is dropped; one failed dump drops nothing."""
        dumped: list[tuple[Key, DbChange, credentials.Credentials, str]] = []
        for key, items in sorted(retire.items()):
            backend = backends[key]
            for change, creds in items:
                out = outs[change.name]
                if isinstance(backend, errors.DriverError):
                    out.fail(backend)
                    continue
                if creds.database not in observed[key].databases:
                    dumped.append((key, change, creds, "nothing to dump: the database was already gone"))
                    continue
                try:
                    path = self.final_dump(change.name, creds)
                except errors.DriverError as exc:
                    out.fail(exc)
                    continue
                dumped.append((key, change, creds, f"dumped to {path.relative_to(self.state_dir)}"))
        for key, change, creds, what in dumped:
            out = outs[change.name]
            if change.name in all_first and out.failures:
                continue  # LIFE-6: a deletion drops nothing unless every final dump is there
            if any(isinstance(e, transport.Fenced) for e in out.failures):
                continue  # refused by a server's fence: this controller is stale, it drops nothing
            backend = backends[key]
            assert not isinstance(backend, errors.DriverError)
            try:
                backend.drop(creds.database, creds.user)
            except errors.DriverError as exc:
                out.fail(exc)
                continue
            credentials.forget(self.state_dir, change.name, creds.db)
            out.notes.append(f"{creds.db} ({creds.engine} on {creds.server}) {what}, then dropped")

    def _result(self, change: DbChange, out: _Outcome) -> base.Result:
        parts: list[str] = []
        if change.action != "delete":
            quota = change.slice.get("quotaMB")
            n = len(change.slice.get("databases", []))
            parts.append(f"{n} database(s), {_mb(out.size):.1f} MB of "
                         + (f"{quota} MB" if isinstance(quota, int | float) else str(quota)))
            over = decide.over_quota(out.size, quota)
            if over:
                parts.append(over)
            if change.action == "suspend" and n:
                parts.append("logins locked (LIFE-2)")
        elif not out.notes and not out.failures:
            parts.append("no databases on file")
        parts += out.notes
        if out.unplaced:
            parts.append("no database server for " + ", ".join(out.unplaced))
        if out.failures:
            delays = [e.delay for e in out.failures if isinstance(e, errors.TemporaryError) and e.delay]
            msg = "; ".join([*(str(e) for e in out.failures), *parts])
            return base.Result(change.name, "failed", msg, retry_after=min(delays) if delays else None,
                               permanent=any(isinstance(e, transport.Fenced) for e in out.failures))
        outcome: base.Outcome = "not provisioned" if out.unplaced else "provisioned"
        return base.Result(change.name, outcome, "; ".join(parts))

    # --- drift and usage ---------------------------------------------------------

    def _gather(self, changes: Sequence[DbChange]) -> tuple[
            dict[str, _Outcome], dict[Key, list[tuple[DbChange, decide.Wanted]]],
            dict[Key, decide.Observed | errors.DriverError]]:
        outs = {c.name: _Outcome() for c in changes}
        groups: dict[Key, list[tuple[DbChange, decide.Wanted]]] = defaultdict(list)
        for change in changes:
            if change.action == "delete":
                continue
            for want in self._wanted(change, outs[change.name], create=False):
                groups[(want.server, want.engine)].append((change, want))
        observed: dict[Key, decide.Observed | errors.DriverError] = {}
        for key in sorted(groups):
            try:
                backend = self._connect(key)
            except errors.DriverError as exc:
                observed[key] = exc
                continue
            try:
                observed[key] = backend.observe()
            except errors.DriverError as exc:
                observed[key] = exc
            finally:
                backend.close()
        return outs, groups, observed

    def drifted(self, server: str | None, changes: Sequence[DbChange]) -> dict[str, str]:
        """What differs from the desired slices, one query per database server and
        engine. A server that cannot be reached is not reported as drift (it is not
        known to differ); the next apply reports it."""
        del server
        outs, groups, observed = self._gather(changes)
        for key, items in groups.items():
            obs = observed[key]
            if isinstance(obs, errors.DriverError):
                continue
            for change, want in items:
                outs[change.name].notes += decide.drift(want, obs, locked=change.action == "suspend")
        for change in changes:
            if change.action != "delete":
                outs[change.name].notes += [f"{c.db}: removed from the spec, not dropped yet"
                                            for c in self._retired(change)]
        return {name: "; ".join(out.notes) for name, out in outs.items() if out.notes}

    def usage(self, changes: Sequence[DbChange]) -> dict[str, dict[str, float]]:
        """``{sub: {"databaseMB": x}}`` for the given slices, measured now (one query
        per database server and engine)."""
        outs, groups, observed = self._gather(changes)
        for key, items in groups.items():
            obs = observed[key]
            if isinstance(obs, errors.DriverError):
                continue
            for change, want in items:
                outs[change.name].size += obs.databases.get(want.database, 0)
        return {c.name: {"databaseMB": round(_mb(outs[c.name].size), 3)} for c in changes if c.action != "delete"}


# --- moves (issue 13): the source's copy of a database ----------------------------------


def freeze(driver: DbDriver, creds: credentials.Credentials, *, read_only: bool = True) -> None:
    """Make the database ``creds`` names read-only for its login, for real (or writable
    again, as it was), and end the login's sessions, so that no write is committed after
    the move's backup. Idempotent both ways (a re-run after a crash converges).

    MariaDB: the login keeps SELECT, SHOW VIEW and LOCK TABLES only. PostgreSQL: an
    owner can always write (it can grant itself its rights back, and turn a read-only
    default off in its session), so the database and everything the login owns in it
    are handed to a NOLOGIN role of its own (``postgresql.holder``), the login keeping
    CONNECT, TEMPORARY, USAGE on the schemas and SELECT on tables, views, sequences and
    large objects; its SECURITY DEFINER routines stay its own. Writable again: those
    grants revoked, everything the login's again, the holder role dropped (privileges as
    before; an ACL that was empty, the owner's defaults, stays spelled out). Ownership
    does not travel: every dump is ``--no-owner``, a restore runs as the target's login.
    A frozen database keeps its rights through the db driver's passes
    (``decide.Observed.frozen``); ``drop_copy`` drops the holder with the database."""
    backend = driver._connect((creds.server, creds.engine))
    try:
        backend.freeze(creds.database, creds.user, read_only=read_only)
    finally:
        backend.close()


def drop_copy(driver: DbDriver, creds: credentials.Credentials) -> str:
    """LIFE-6 for the source's copy of a moved database: a final dump first, then the
    database and its login dropped there (the credentials on file name the new server
    and stay). Returns where the dump is."""
    backend = driver._connect((creds.server, creds.engine))
    try:
        if creds.database not in backend.observe().databases:
            return "nothing to dump: the database was already gone"
        path = driver.final_dump(creds.subscription, creds)
        backend.drop(creds.database, creds.user)
        return f"dumped to {path.relative_to(driver.state_dir)}, then dropped"
    finally:
        backend.close()


def credentials_of(state_dir: Path, sub: str, db: str) -> credentials.Credentials | None:
    """The stored credentials of ``sub``'s ``db`` (``tenantctl db credentials``)."""
    naming.database(sub, db)
    return credentials.load(state_dir, sub, db)


