"""PostgreSQL: gather tenantctl's databases, roles, owners, PUBLIC's CONNECT, login
state and sizes in one query; carry out ``decide.Step``s. Identifiers only through
``psycopg.sql.Identifier`` (after the whitelist), passwords as SCRAM verifiers
computed here (the plain password never reaches the server or its logs).

A tenant's database is owned by its role (all rights on it, none elsewhere) and
``REVOKE ALL ... FROM PUBLIC``: new databases let PUBLIC connect otherwise.

A move's freeze (``freeze``): an owner can always grant itself its rights back and turn
a read-only default off, so while frozen the database and everything its login owned in
it belong to a NOLOGIN role of its own (``holder``: ``tenantctl_frozen_<database>``),
``REASSIGN OWNED`` in one transaction in that database. The login keeps CONNECT and
TEMPORARY on the database and, on what it owned, USAGE on schemas and types, SELECT on
tables, views, sequences and large objects, EXECUTE on routines (``FREEZE_GRANTS``; what
PUBLIC has stands); its SECURITY DEFINER routines stay its own (the holder's would write
with the holder's rights). Thawing revokes what the freeze granted (``THAW_REVOKES``),
gives everything back (``REASSIGN OWNED``) and drops the holder, leaving the privileges
as they were (an ACL that was empty, the owner's defaults, is left spelled out); ``drop``
drops the holder too. ``observe`` reports a database its holder owns as ``frozen``.
What the freeze leaves possible: temporary tables, and new large objects (PostgreSQL
lets any role create one; no table can refer to it). Catalog names in those blocks are
formatted by the server (``format('%I')``, ``regclass``, ``regprocedure``); the two role
names reach it as parameters (``_ROLES``).

Fencing (``fence``): the table ``tenantctl.fence`` in the ``postgres`` database (the one
the admin connection uses: no second connection), read with the batch's subscriptions
as one array parameter; raised with an upsert that keeps the higher generation.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from controller.agent import jobs
from controller.drivers.db import decide, failures, fence

ENGINE = "postgresql"
PORT = 5432

#: the prefix of a frozen database's holder role (never a login's ``u<12 hex>``)
HOLDER_PREFIX = "tenantctl_frozen_"
#: PostgreSQL's longest identifier (NAMEDATALEN - 1 bytes): longer names are truncated
MAX_NAME = 63

OBSERVE = """
SELECT 'db', d.datname, pg_get_userbyid(d.datdba), pg_database_size(d.oid)::text,
       has_database_privilege('public', d.oid, 'CONNECT')
  FROM pg_database d WHERE d.datname ~ '^[a-z][a-z0-9_]*_[0-9a-f]{8}$'
UNION ALL
SELECT 'user', a.rolname, NULL, coalesce(a.rolpassword, ''), a.rolcanlogin
  FROM pg_authid a WHERE a.rolname ~ '^u[0-9a-f]{12}$'
"""


_FENCE = sql.SQL("{}.{}").format(sql.Identifier(fence.SCHEMA), sql.Identifier(fence.TABLE))
#: SQLSTATEs of a fence table that does not exist (yet): undefined table, unknown schema
_MISSING = ("42P01", "3F000")
FENCE_SCHEMA = (
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(fence.SCHEMA)),
    sql.SQL("CREATE TABLE IF NOT EXISTS {} (subscription text PRIMARY KEY, generation bigint NOT NULL)").format(_FENCE),
)


#: The freeze, in the frozen database after ``REASSIGN OWNED BY login TO holder`` (same
#: transaction): SECURITY DEFINER routines back to the login (as the holder's, they
#: would write with its rights), then what the login needs to read and lacks (PUBLIC's
#: rights stand: an ACL spelled out for nothing is avoided where it can be).
#: ``tenantctl.login`` / ``tenantctl.holder``: set by ``_ROLES`` just before.
FREEZE_GRANTS = """
DO $freeze$
DECLARE
  login text := pg_catalog.current_setting('tenantctl.login');
  h oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = pg_catalog.current_setting('tenantctl.holder'));
  r record;
BEGIN
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_catalog.pg_proc p WHERE p.proowner = h AND p.prosecdef LOOP
    EXECUTE pg_catalog.format('ALTER ROUTINE %s OWNER TO %I', r.f, login);
  END LOOP;
  EXECUTE pg_catalog.format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', pg_catalog.current_database(), login);
  FOR r IN SELECT n.oid::regnamespace AS s FROM pg_catalog.pg_namespace n
           WHERE n.nspowner = h AND NOT pg_catalog.has_schema_privilege(login, n.oid, 'USAGE') LOOP
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %s TO %I', r.s, login);
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS t FROM pg_catalog.pg_class c WHERE c.relowner = h
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND NOT pg_catalog.has_table_privilege(login, c.oid, 'SELECT') LOOP
    EXECUTE pg_catalog.format('GRANT SELECT ON %s TO %I', r.t, login);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_catalog.pg_proc p
           WHERE p.proowner = h AND NOT pg_catalog.has_function_privilege(login, p.oid, 'EXECUTE') LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %I', r.f, login);
  END LOOP;
  FOR r IN SELECT t.oid::regtype AS t FROM pg_catalog.pg_type t WHERE t.typowner = h AND t.typtype IN ('d', 'e', 'r')
           AND NOT pg_catalog.has_type_privilege(login, t.oid, 'USAGE') LOOP
    EXECUTE pg_catalog.format('GRANT USAGE ON TYPE %s TO %I', r.t, login);
  END LOOP;
  FOR r IN SELECT m.oid FROM pg_catalog.pg_largeobject_metadata m WHERE m.lomowner = h LOOP
    EXECUTE pg_catalog.format('GRANT SELECT ON LARGE OBJECT %s TO %I', r.oid, login);
  END LOOP;
END
$freeze$
"""

#: The thaw, before ``REASSIGN OWNED BY holder TO login`` (same transaction): every
#: privilege the login holds on the holder's objects is one the freeze granted (the
#: login's own entries became the holder's), revoked so that none outlives the freeze.
THAW_REVOKES = """
DO $thaw$
DECLARE
  login oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = pg_catalog.current_setting('tenantctl.login'));
  h oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = pg_catalog.current_setting('tenantctl.holder'));
  r record;
BEGIN
  IF (SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) = h THEN
    EXECUTE pg_catalog.format('REVOKE ALL ON DATABASE %I FROM %s', pg_catalog.current_database(), login::regrole);
  END IF;
  FOR r IN SELECT n.oid::regnamespace AS s FROM pg_catalog.pg_namespace n WHERE n.nspowner = h
           AND EXISTS (SELECT FROM pg_catalog.aclexplode(n.nspacl) a WHERE a.grantee = login) LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA %s FROM %s', r.s, login::regrole);
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS t FROM pg_catalog.pg_class c WHERE c.relowner = h
           AND EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) a WHERE a.grantee = login) LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM %s', r.t, login::regrole);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS f FROM pg_catalog.pg_proc p WHERE p.proowner = h
           AND EXISTS (SELECT FROM pg_catalog.aclexplode(p.proacl) a WHERE a.grantee = login) LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM %s', r.f, login::regrole);
  END LOOP;
  FOR r IN SELECT t.oid::regtype AS t FROM pg_catalog.pg_type t WHERE t.typowner = h
           AND EXISTS (SELECT FROM pg_catalog.aclexplode(t.typacl) a WHERE a.grantee = login) LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON TYPE %s FROM %s', r.t, login::regrole);
  END LOOP;
  FOR r IN SELECT m.oid FROM pg_catalog.pg_largeobject_metadata m WHERE m.lomowner = h
           AND EXISTS (SELECT FROM pg_catalog.aclexplode(m.lomacl) a WHERE a.grantee = login) LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON LARGE OBJECT %s FROM %s', r.oid, login::regrole);
  END LOOP;
END
$thaw$
"""

#: the freeze's and the thaw's two roles, as parameters (read back by the blocks above)
_ROLES = "SELECT pg_catalog.set_config('tenantctl.login', %s, true), pg_catalog.set_config('tenantctl.holder', %s, true)"


def holder(database: str) -> str:
    """The NOLOGIN role that owns ``database`` and its objects while a move freezes it."""
    name = HOLDER_PREFIX + decide.ident(database)
    if len(name) > MAX_NAME:
        raise ValueError(f"database name {database!r} too long for its freeze's role {name!r}")
    return name


def held(database: str, owner: str) -> bool:
    """Whether ``owner`` is ``database``'s holder: the database is frozen."""
    return owner == HOLDER_PREFIX + database


def _id(name: str) -> sql.Identifier:
    return sql.Identifier(decide.ident(name))


def verifier(password: str) -> str:
    return decide.scram_verifier(password, secrets.token_bytes(16))


class PostgreSQL:
    """One admin connection (autocommit: CREATE DATABASE needs it) to one server's PostgreSQL."""

    engine = ENGINE

    def __init__(self, where: str, host: str, port: int, user: str, password: str, *, timeout: float = 5.0) -> None:
        self.where = where
        #: statements sent that change something (DDL / DCL): 0 on a no-op apply
        self.changes = 0

        def connect(dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
            return psycopg.connect(host=host, port=port, user=user, password=password, dbname=dbname,
                                   connect_timeout=max(1, int(timeout)), autocommit=dbname == "postgres",
                                   options=f"-c statement_timeout={int(timeout * 12000)}",
                                   application_name="tenantctl-db")

        self._connect = connect
        self._label = f"{where}:{port}"
        self.conn = failures.with_retries(connect, self._label)

    def close(self) -> None:
        self.conn.close()

    def _exec(self, query: sql.Composed | sql.SQL | str, args: tuple[object, ...] | None = None, *,
              change: bool = True) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(sql.SQL(query) if isinstance(query, str) else query, args)
            rows = cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise failures.pg_error(exc, self.where) from exc
        if change:
            self.changes += 1
        return rows

    def observe(self) -> decide.Observed:
        obs = decide.Observed()
        for kind, a, b, c, d in self._exec(OBSERVE, change=False):
            if kind == "db":
                obs.databases[a] = int(c)
                obs.grants.add((a, b))
                if held(a, b):
                    obs.frozen.add(a)
                if d:
                    obs.public.add(a)
            else:
                obs.logins[a] = decide.Login(verifier=c, locked=not d)
        return obs

    def run(self, step: decide.Step) -> None:
        user, db = _id(step.user), _id(step.database)
        if step.kind == "create_user":
            self._exec(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user, sql.Literal(verifier(step.password))))
        elif step.kind == "set_password":
            self._exec(sql.SQL("ALTER ROLE {} PASSWORD {}").format(user, sql.Literal(verifier(step.password))))
        elif step.kind == "create_database":
            self._exec(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, user))
        elif step.kind == "grant":
            self._exec(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, user))
        elif step.kind == "revoke_public":
            self._exec(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        elif step.kind == "lock":
            self._exec(sql.SQL("ALTER ROLE {} NOLOGIN").format(user))
            self.end_sessions(step.user)
        elif step.kind == "unlock":
            self._exec(sql.SQL("ALTER ROLE {} LOGIN").format(user))
        else:  # pragma: no cover - exhaustive over StepKind
            raise AssertionError(step.kind)

    def end_sessions(self, user: str) -> None:
        self._exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                   (decide.ident(user),), change=False)

    def fence(self, sent: Mapping[str, int]) -> dict[str, jobs.Fenced]:
        """Check and raise the fence of ``sent`` (subscription -> generation) on this
        server: the refused ones (``fence.decide``). One read; an upsert only when a
        generation rises (the schema and table created first when missing)."""
        if not sent:
            return {}
        subs = sorted(sent)
        try:
            cur = self.conn.execute(
                sql.SQL("SELECT subscription, generation FROM {} WHERE subscription = ANY(%s)").format(_FENCE), (subs,))
            stored = {str(s): int(g) for s, g in cur.fetchall()}
            missing = False
        except psycopg.Error as exc:
            if exc.sqlstate not in _MISSING:
                raise failures.pg_error(exc, self.where) from exc
            stored, missing = {}, True
        decision = fence.decide(stored, sent)
        if decision.raised:
            if missing:
                for statement in FENCE_SCHEMA:
                    self._exec(statement)
            raised = sorted(decision.raised.items())
            self._exec(sql.SQL(
                "INSERT INTO {} AS f (subscription, generation) SELECT * FROM unnest(%s::text[], %s::bigint[]) "
                "ON CONFLICT (subscription) DO UPDATE SET generation = GREATEST(f.generation, EXCLUDED.generation)"
            ).format(_FENCE), ([s for s, _ in raised], [g for _, g in raised]))
        return decision.refused

    def drop(self, database: str, user: str) -> None:
        self._exec(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_id(database)))
        self.end_sessions(user)
        self._exec(sql.SQL("DROP ROLE IF EXISTS {}").format(_id(user)))
        self._exec(sql.SQL("DROP ROLE IF EXISTS {}").format(_id(holder(database))))  # a frozen copy's

    # --- a move's freeze -----------------------------------------------------------

    def _exists(self, query: str, name: str) -> bool:
        return bool(self._exec(query, (name,), change=False))

    def freeze(self, database: str, user: str, *, read_only: bool) -> None:
        """Make ``database`` read-only for its login ``user`` (its holder owns it), or
        writable again (the login owns it again, the holder dropped). Idempotent both
        ways: a re-run after a crash anywhere converges. A database that is not there
        has nothing to freeze (a thaw still drops a holder left behind)."""
        role = holder(database)
        login, held_by = _id(user), _id(role)
        if not self._exists("SELECT 1 FROM pg_database WHERE datname = %s", decide.ident(database)):
            if not read_only:
                self._exec(sql.SQL("DROP ROLE IF EXISTS {}").format(held_by))
            return
        # the freeze of old (a read-only default, which the owner could turn off), if any
        self._exec(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(_id(database)))
        has_holder = self._exists("SELECT 1 FROM pg_roles WHERE rolname = %s", role)
        if not read_only and not has_holder:
            return  # not frozen
        if not has_holder:
            self._exec(sql.SQL("CREATE ROLE {} NOLOGIN").format(held_by))
        self.end_sessions(user)  # no transaction of the site's left to wait for
        if read_only:
            self._in(database, (user, role), [sql.SQL("REASSIGN OWNED BY {} TO {}").format(login, held_by),
                                              sql.SQL(FREEZE_GRANTS)])
            self.end_sessions(user)  # those opened meanwhile
        else:
            self._in(database, (user, role), [sql.SQL(THAW_REVOKES),
                                              sql.SQL("REASSIGN OWNED BY {} TO {}").format(held_by, login),
                                              sql.SQL("DROP OWNED BY {}").format(held_by)])
            self._exec(sql.SQL("DROP ROLE {}").format(held_by))

    def _in(self, database: str, roles: tuple[str, str], statements: list[sql.SQL | sql.Composed]) -> None:
        """``statements`` in one transaction in ``database`` (a connection of its own),
        ``roles`` (login, holder) set for ``FREEZE_GRANTS`` / ``THAW_REVOKES`` to read."""
        conn = failures.with_retries(lambda: self._connect(decide.ident(database)), self._label)
        try:
            with conn.transaction():
                conn.execute("SET LOCAL search_path TO pg_catalog, pg_temp")
                conn.execute(_ROLES, roles)
                for statement in statements:
                    conn.execute(statement)
        except psycopg.Error as exc:
            raise failures.pg_error(exc, self.where) from exc
        finally:
            conn.close()
        self.changes += len(statements)
