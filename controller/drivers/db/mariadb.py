"""MariaDB: gather tenantctl's databases, logins, grants, lock state and sizes in one
query; carry out ``decide.Step``s. Identifiers are whitelisted (``decide.ident``) and
backquoted; user names, hosts and password hashes go through PyMySQL's escaping.

A tenant's login is ``'<user>'@'<host>'`` with ``host`` from ``Settings`` (by default
the loopback network the embedded servers live on); it has ALL on its own database
only (``GRANT ALL ON `name`.*`` with ``_`` escaped, so the grant is not a pattern).
A move's freeze (``freeze``) leaves it ``FROZEN`` (SELECT, SHOW VIEW, LOCK TABLES);
``observe`` reports a database whose login has exactly that as ``frozen``.

Fencing (``fence``): the table ``tenantctl.fence`` of this server, read with the batch's
subscriptions as parameters; raised with an upsert that keeps the higher generation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pymysql  # type: ignore[import-untyped,unused-ignore]
import pymysql.cursors  # type: ignore[import-untyped,unused-ignore]

from controller import errors
from controller.agent import jobs
from controller.drivers.db import decide, failures, fence

ENGINE = "mariadb"
PORT = 3306
_DB_RE = "^[a-z][a-z0-9_]*_[0-9a-f]{8}$"
_USER_RE = "^u[0-9a-f]{12}$"
_PRIVS = ("Select", "Insert", "Update", "Delete", "Create", "Drop", "Index", "Alter", "Create_tmp_table",
          "Lock_tables", "Create_view", "Show_view", "Create_routine", "Alter_routine", "Execute", "Event",
          "Trigger")
#: what a login keeps on its database while a move freezes it (``freeze``): reading
FROZEN = ("Select", "Lock_tables", "Show_view")

OBSERVE = (
    "SELECT 'db', s.SCHEMA_NAME, '', CAST(COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) AS CHAR) "
    "FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME "
    f"WHERE s.SCHEMA_NAME REGEXP '{_DB_RE}' GROUP BY s.SCHEMA_NAME "
    "UNION ALL "
    "SELECT 'user', User, COALESCE(JSON_VALUE(Priv, '$.account_locked'), 'false'), "
    "COALESCE(JSON_VALUE(Priv, '$.authentication_string'), '') "
    f"FROM mysql.global_priv WHERE User REGEXP '{_USER_RE}' AND Host = %s "
    "UNION ALL "
    "SELECT 'grant', Db, User, CONCAT(" + ", ".join(f"{p}_priv" for p in _PRIVS) + ") "
    f"FROM mysql.db WHERE User REGEXP '{_USER_RE}' AND Host = %s"
)


_FENCE = f"`{fence.SCHEMA}`.`{fence.TABLE}`"
#: tables of tenantctl's that do not exist (yet): unknown database, unknown table
_MISSING = (1049, 1146)
FENCE_SCHEMA = (
    f"CREATE DATABASE IF NOT EXISTS `{fence.SCHEMA}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    f"CREATE TABLE IF NOT EXISTS {_FENCE} (subscription VARCHAR(253) NOT NULL PRIMARY KEY, "
    "generation BIGINT NOT NULL) ENGINE=InnoDB",
)


#: the privilege flags of ``OBSERVE``'s grant rows of a frozen database
_FROZEN_FLAGS = "".join("Y" if p in FROZEN else "N" for p in _PRIVS)


def quoted_db(name: str) -> str:
    """A whitelisted database name, backquoted."""
    return f"`{decide.ident(name)}`"


def grant_pattern(name: str) -> str:
    """The database in a GRANT: ``_`` escaped so it matches this database only."""
    return "`" + decide.ident(name).replace("_", "\\_") + "`"


class MariaDB:
    """One admin connection to one server's MariaDB."""

    engine = ENGINE

    def __init__(self, where: str, host: str, port: int, user: str, password: str, *,
                 login_host: str, timeout: float = 5.0) -> None:
        self.where = where
        self.login_host = login_host
        #: statements sent that change something (DDL / DCL): 0 on a no-op apply
        self.changes = 0

        def connect() -> pymysql.connections.Connection[Any]:
            return pymysql.connect(host=host, port=port, user=user, password=password, database=None,
                                   connect_timeout=int(timeout), read_timeout=int(timeout * 12),
                                   write_timeout=int(timeout * 12), autocommit=True, charset="utf8mb4")

        self.conn = failures.with_retries(connect, f"{where}:{port}")

    def close(self) -> None:
        with contextlib.suppress(pymysql.err.Error):
            self.conn.close()

    def _exec(self, sql: str, args: tuple[object, ...] = (), *, change: bool = True) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, args or None)
                rows = list(cur.fetchall())
        except pymysql.err.MySQLError as exc:
            raise failures.mysql_error(exc, self.where) from exc
        if change:
            self.changes += 1
        return rows

    def observe(self) -> decide.Observed:
        obs = decide.Observed()
        for kind, a, b, c in self._exec(OBSERVE, (self.login_host, self.login_host), change=False):
            if kind == "db":
                obs.databases[a] = int(c)
            elif kind == "user":
                obs.logins[a] = decide.Login(verifier=c or "", locked=b in ("1", "true"))
            elif kind == "grant" and c == "Y" * len(_PRIVS):
                obs.grants.add((a.replace("\\_", "_"), b))
            elif kind == "grant" and c == _FROZEN_FLAGS:
                obs.frozen.add(a.replace("\\_", "_"))
        return obs

    def _who(self, user: str) -> tuple[str, str]:
        return decide.ident(user), self.login_host

    def run(self, step: decide.Step) -> None:
        who = self._who(step.user)
        if step.kind == "create_user":
            self._exec("CREATE USER %s@%s IDENTIFIED BY PASSWORD %s", (*who, decide.mariadb_native_hash(step.password)))
        elif step.kind == "set_password":
            self._exec("ALTER USER %s@%s IDENTIFIED BY PASSWORD %s", (*who, decide.mariadb_native_hash(step.password)))
        elif step.kind == "create_database":
            self._exec(f"CREATE DATABASE {quoted_db(step.database)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        elif step.kind == "grant":
            self._exec(f"GRANT ALL PRIVILEGES ON {grant_pattern(step.database)}.* TO %s@%s", who)
        elif step.kind == "lock":
            self._exec("ALTER USER %s@%s ACCOUNT LOCK", who)
            self.end_sessions(step.user)
        elif step.kind == "unlock":
            self._exec("ALTER USER %s@%s ACCOUNT UNLOCK", who)
        elif step.kind == "revoke_public":
            pass  # MariaDB has no PUBLIC grants on databases
        else:  # pragma: no cover - exhaustive over StepKind
            raise AssertionError(step.kind)

    def end_sessions(self, user: str) -> None:
        """Disconnect every session of ``user`` (a locked login must not keep working)."""
        for (pid,) in self._exec("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s",
                                 (decide.ident(user),), change=False):
            with contextlib.suppress(errors.PermanentError):  # it ended meanwhile (unknown thread id)
                self._exec("KILL CONNECTION %s", (int(pid),))

    def fence(self, sent: Mapping[str, int]) -> dict[str, jobs.Fenced]:
        """Check and raise the fence of ``sent`` (subscription -> generation) on this
        server: the refused ones (``fence.decide``). One read; an upsert only when a
        generation rises (the table created first when missing)."""
        if not sent:
            return {}
        subs = sorted(sent)
        marks = ", ".join(["%s"] * len(subs))
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"SELECT subscription, generation FROM {_FENCE} WHERE subscription IN ({marks})", subs)
                stored = {str(s): int(g) for s, g in cur.fetchall()}
            missing = False
        except pymysql.err.MySQLError as exc:
            if not (exc.args and exc.args[0] in _MISSING):
                raise failures.mysql_error(exc, self.where) from exc
            stored, missing = {}, True
        decision = fence.decide(stored, sent)
        if decision.raised:
            if missing:
                for statement in FENCE_SCHEMA:
                    self._exec(statement)
            values = ", ".join(["(%s, %s)"] * len(decision.raised))
            self._exec(f"INSERT INTO {_FENCE} (subscription, generation) VALUES {values} "
                       "ON DUPLICATE KEY UPDATE generation = GREATEST(generation, VALUES(generation))",
                       tuple(x for s, g in sorted(decision.raised.items()) for x in (s, g)))
        return decision.refused

    def freeze(self, database: str, user: str, *, read_only: bool) -> None:
        """The login ``user`` keeps ``FROZEN`` on ``database`` only (or ALL again); its
        sessions ended. Granted first: REVOKE fails where the login has no grant at all
        (a re-run after a crash between the two)."""
        who, db = self._who(user), grant_pattern(database)
        if read_only:
            frozen = f"GRANT {', '.join(p.replace('_', ' ').upper() for p in FROZEN)} ON {db}.* TO %s@%s"
            self._exec(frozen, who)
            self._exec(f"REVOKE ALL PRIVILEGES ON {db}.* FROM %s@%s", who)
            self._exec(frozen, who)
        else:
            self._exec(f"GRANT ALL PRIVILEGES ON {db}.* TO %s@%s", who)
        self.end_sessions(user)

    def drop(self, database: str, user: str) -> None:
        self.end_sessions(user)
        self._exec(f"DROP DATABASE IF EXISTS {quoted_db(database)}")
        self._exec("DROP USER IF EXISTS %s@%s", self._who(user))
