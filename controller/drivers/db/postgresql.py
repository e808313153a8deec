"""PostgreSQL: gather tenantctl's databases, roles, owners, PUBLIC's CONNECT, login
state and sizes in one query; carry out ``decide.Step``s. Identifiers only through
``psycopg.sql.Identifier`` (after the whitelist), passwords as SCRAM verifiers
computed here (the plain password never reaches the server or its logs).

A tenant's database is owned by its role (all rights on it, none elsewhere) and
``REVOKE ALL ... FROM PUBLIC``: new databases let PUBLIC connect otherwise.

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

        def connect() -> psycopg.Connection[tuple[Any, ...]]:
            return psycopg.connect(host=host, port=port, user=user, password=password, dbname="postgres",
                                   connect_timeout=max(1, int(timeout)), autocommit=True,
                                   options=f"-c statement_timeout={int(timeout * 12000)}",
                                   application_name="tenantctl-db")

        self.conn = failures.with_retries(connect, f"{where}:{port}")

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
