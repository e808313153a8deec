"""``Store``: the one connection to the state file, and every typed read and write.

Concurrency model:

* One ``Store`` per process is enough; it may be shared by threads
  (``check_same_thread=False``). An ``RLock`` serialises every use of the connection, and
  a transaction holds it from ``BEGIN IMMEDIATE`` to ``COMMIT``, so another thread never
  sees (nor joins) a transaction it did not open.
* Other processes: WAL mode lets readers (``Store.open_readonly``, e.g. ``tenantctl
  status``) read the last committed state while a controller writes; writers of several
  processes queue on SQLite's lock for up to ``busy_timeout`` (5 s).
* ``transaction()`` nests: an inner block joins the outer transaction (nothing is
  committed before the outermost block ends) through a SAVEPOINT, so an exception that
  leaves an inner block undoes that block's writes only, even if the outer block catches
  it. Every write method runs in ``transaction()``, so a batch of them wrapped by the
  caller is atomic.
* Writes that are usually no-ops (``set_condition``, ``put_status``) compare first and
  write only on change (cert-manager status hygiene), and say whether they changed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.state import codec, errors, migrations, records

BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another process's write lock before failing."""

STATE_DIR_ENV = "TENANTCTL_STATE_DIR"
"""Environment variable naming the state directory."""

DEFAULT_STATE_DIR = ".state"
"""State directory when the variable is unset, relative to the working directory."""

WHOLE_SUBSCRIPTION = "*"
"""The fingerprint resource name that stands for the whole subscription."""


def default_path() -> Path:
    """``$TENANTCTL_STATE_DIR/state.db``, by default ``./.state/state.db``."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR) / "state.db"


Params = Sequence[Any]


class Store:
    """The state store. Use as a context manager, or call ``close()``."""

    def __init__(self, path: Path, *, now: Callable[[], datetime] = codec.utcnow) -> None:
        """Open (creating it and its directory if needed) and migrate the state file."""
        self.path = Path(path)
        self.readonly = False
        self._now = now
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = self._connect(str(self.path), uri=False)
        self._setup()
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")  # durable in WAL up to the last checkpoint
            migrations.migrate(self._conn, str(self.path))
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open_readonly(cls, path: Path) -> Store:
        """Open an existing, migrated state file for reading only.

        Safe while a controller in another process writes: readers see the last
        committed transaction. Raises ``FileNotFoundError`` if there is no state yet,
        ``SchemaTooNew``/``SchemaTooOld`` if the file is not at this code's version.
        Writes raise ``ReadOnlyStore``.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no state store (has the controller run?)")
        store = cls.__new__(cls)
        store.path = path
        store.readonly = True
        store._now = codec.utcnow
        store._conn = conn = cls._connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        store._setup()
        try:
            found = migrations.check_version(conn, str(path))
            if found < migrations.latest():
                raise errors.SchemaTooOld(str(path), found, migrations.latest())
        except BaseException:
            conn.close()
            raise
        return store

    @staticmethod
    def _connect(target: str, *, uri: bool) -> sqlite3.Connection:
        return sqlite3.connect(
            target,
            uri=uri,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )

    def _setup(self) -> None:
        assert self._conn is not None
        self._lock = threading.RLock()
        self._depth = 0
        self._in_snapshot = False
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA foreign_keys = ON")

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; further use raises ``StoreClosed``. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise errors.StoreClosed(f"{self.path}: the state store is closed")
        return self._conn

    # -- transactions and package-internal helpers ------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on exception); nests.

        Holding the write lock from the start (IMMEDIATE) means a transaction never
        fails half-way with SQLITE_BUSY on its first write.
        """
        if self.readonly:
            raise errors.ReadOnlyStore(f"{self.path}: opened read-only")
        with self._lock:
            if self._in_snapshot:
                raise errors.ReadOnlyStore("cannot write inside snapshot(); use transaction()")
            conn = self._connection()
            outer = self._depth == 0
            savepoint = f"sp{self._depth}"  # our own counter, not user text
            conn.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                        conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO {savepoint}")
                    conn.execute(f"RELEASE {savepoint}")
                raise
            self._depth -= 1
            if outer:
                conn.execute("COMMIT")
            else:
                conn.execute(f"RELEASE {savepoint}")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read-only block whose reads all see the same committed state.

        Works on read-only stores (``tenantctl status`` reading fingerprints, status and
        conditions consistently while a controller writes). Inside ``transaction()`` it
        just joins it.
        """
        with self._lock:
            conn = self._connection()
            if self._depth > 0:
                yield
                return
            conn.execute("BEGIN DEFERRED")
            self._depth += 1
            self._in_snapshot = True
            try:
                yield
            finally:
                self._in_snapshot = False
                self._depth -= 1
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # nothing to keep: transaction() refuses to run in here

    def _execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        """Run one write statement in a (possibly joined) transaction. For this package."""
        with self.transaction():
            return self._connection().execute(sql, params)

    def _executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self.transaction():
            self._connection().executemany(sql, rows)

    def _fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run one query under the lock. For this package."""
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def _fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._connection().execute(sql, params).fetchone()
            return row

    def now(self) -> datetime:
        """The store's clock (injectable for tests)."""
        return self._now()

    # -- subscriptions -------------------------------------------------------------

    _SUB_COLUMNS = "name, customer, created_at, server, ip, db_servers, deleted_at, purge_after"

    @staticmethod
    def _sub_from_row(row: tuple[Any, ...]) -> records.SubscriptionRecord:
        name, customer, created_at, server, ip, db_servers, deleted_at, purge_after = row
        return records.SubscriptionRecord(
            name=name,
            customer=customer,
            created_at=codec.text_to_dt(created_at),
            server=server,
            ip=ip,
            db_servers=codec.loads(db_servers),
            deleted_at=codec.opt_text_to_dt(deleted_at),
            purge_after=codec.opt_text_to_dt(purge_after),
        )

    def get_subscription(self, name: str) -> records.SubscriptionRecord | None:
        row = self._fetchone(f"SELECT {self._SUB_COLUMNS} FROM subscriptions WHERE name = ?", (name,))
        return None if row is None else self._sub_from_row(row)

    def list_subscriptions(self, *, include_deleted: bool = False) -> list[records.SubscriptionRecord]:
        """Every known subscription ordered by name; deleted ones only if asked."""
        where = "" if include_deleted else " WHERE deleted_at IS NULL"
        rows = self._fetchall(f"SELECT {self._SUB_COLUMNS} FROM subscriptions{where} ORDER BY name")
        return [self._sub_from_row(r) for r in rows]

    def upsert_subscription(self, rec: records.SubscriptionRecord) -> None:
        """Insert or replace every field of ``rec.name``'s row."""
        self._execute(
            f"INSERT INTO subscriptions ({self._SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET customer = excluded.customer, "
            "created_at = excluded.created_at, server = excluded.server, ip = excluded.ip, "
            "db_servers = excluded.db_servers, deleted_at = excluded.deleted_at, "
            "purge_after = excluded.purge_after",
            (
                rec.name,
                rec.customer,
                codec.dt_to_text(rec.created_at),
                rec.server,
                rec.ip,
                codec.dumps(rec.db_servers),
                codec.opt_dt_to_text(rec.deleted_at),
                codec.opt_dt_to_text(rec.purge_after),
            ),
        )

    # -- sticky customer values (SYNC-4) ------------------------------------------------

    def get_sticky(self, name: str) -> dict[str, dict[str, Any]]:
        """Group -> the customer's own values kept out of synchronisation (SYNC-4)."""
        rows = self._fetchall("SELECT grp, vals FROM sticky WHERE name = ? ORDER BY grp", (name,))
        return {grp: codec.loads(vals) for grp, vals in rows}

    def all_sticky(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every subscription's sticky groups, in one query (name -> group -> values)."""
        result: dict[str, dict[str, dict[str, Any]]] = {}
        for name, grp, vals in self._fetchall("SELECT name, grp, vals FROM sticky ORDER BY name, grp"):
            result.setdefault(name, {})[grp] = codec.loads(vals)
        return result

    def all_sticky_raw(self) -> dict[str, dict[str, str]]:
        """Like ``all_sticky`` but the values as their stored JSON text, unparsed: for
        callers that mostly compare (the planner parses only what it recomputes)."""
        result: dict[str, dict[str, str]] = {}
        for name, grp, vals in self._fetchall("SELECT name, grp, vals FROM sticky ORDER BY name, grp"):
            result.setdefault(name, {})[grp] = vals
        return result

    def set_sticky(self, name: str, group: str, values: dict[str, Any]) -> None:
        self._execute(
            "INSERT INTO sticky (name, grp, vals) VALUES (?, ?, ?) "
            "ON CONFLICT (name, grp) DO UPDATE SET vals = excluded.vals",
            (name, group, codec.dumps(values)),
        )

    def drop_sticky(self, name: str, group: str | None = None) -> None:
        """Forget one group, or every group of the subscription (e.g. on unlock & sync)."""
        if group is None:
            self._execute("DELETE FROM sticky WHERE name = ?", (name,))
        else:
            self._execute("DELETE FROM sticky WHERE name = ? AND grp = ?", (name, group))

    # -- transfers (PLAN-7) -----------------------------------------------------------

    @staticmethod
    def _transfer_from_row(row: tuple[Any, ...]) -> records.TransferRecord:
        return records.TransferRecord(
            name=row[0],
            from_customer=row[1],
            to_customer=row[2],
            at=codec.text_to_dt(row[3]),
            frozen=codec.loads(row[4]),
        )

    def get_transfer(self, name: str) -> records.TransferRecord | None:
        row = self._fetchone(
            "SELECT name, from_customer, to_customer, at, frozen FROM transfers WHERE name = ?", (name,)
        )
        return None if row is None else self._transfer_from_row(row)

    def all_transfers(self) -> list[records.TransferRecord]:
        """Every transfer record, ordered by name, in one query."""
        rows = self._fetchall("SELECT name, from_customer, to_customer, at, frozen FROM transfers ORDER BY name")
        return [self._transfer_from_row(r) for r in rows]

    def set_transfer(self, rec: records.TransferRecord) -> None:
        self._execute(
            "INSERT INTO transfers (name, from_customer, to_customer, at, frozen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET from_customer = excluded.from_customer, "
            "to_customer = excluded.to_customer, at = excluded.at, frozen = excluded.frozen",
            (rec.name, rec.from_customer, rec.to_customer, codec.dt_to_text(rec.at), codec.dumps(rec.frozen)),
        )

    def drop_transfer(self, name: str) -> None:
        self._execute("DELETE FROM transfers WHERE name = ?", (name,))

    # -- fingerprints -----------------------------------------------------------------

    def get_fingerprints(self, name: str) -> dict[str, str]:
        """Resource -> fingerprint last applied (``"*"``: the whole subscription)."""
        rows = self._fetchall("SELECT resource, fingerprint FROM fingerprints WHERE name = ?", (name,))
        return dict(rows)

    def all_fingerprints(self) -> dict[str, dict[str, str]]:
        """Every subscription's fingerprints, in one query (the fast no-op pass)."""
        result: dict[str, dict[str, str]] = {}
        for name, resource, fingerprint in self._fetchall("SELECT name, resource, fingerprint FROM fingerprints"):
            per = result.get(name)
            if per is None:
                per = result[name] = {}
            per[resource] = fingerprint
        return result

    def set_fingerprints(self, name: str, fps: dict[str, str]) -> None:
        """Replace the subscription's whole set of fingerprints with ``fps``."""
        with self.transaction():
            self._execute("DELETE FROM fingerprints WHERE name = ?", (name,))
            self._executemany(
                "INSERT INTO fingerprints (name, resource, fingerprint) VALUES (?, ?, ?)",
                [(name, resource, fp) for resource, fp in fps.items()],
            )

    def drop_fingerprints(self, name: str, resources: Iterable[str] | None = None) -> None:
        """Forget all of the subscription's fingerprints, or only those of ``resources``."""
        if resources is None:
            self._execute("DELETE FROM fingerprints WHERE name = ?", (name,))
        else:
            self._executemany(
                "DELETE FROM fingerprints WHERE name = ? AND resource = ?", [(name, r) for r in resources]
            )

    # -- conditions -------------------------------------------------------------------

    def get_conditions(self, name: str) -> list[records.Condition]:
        """The subscription's conditions, ordered by type."""
        rows = self._fetchall(
            "SELECT type, status, reason, message, last_transition FROM conditions WHERE name = ? ORDER BY type",
            (name,),
        )
        return [
            records.Condition(type=t, status=s, reason=r, message=m, last_transition=codec.text_to_dt(lt))
            for t, s, r, m, lt in rows
        ]

    def set_condition(self, name: str, cond: records.Condition) -> bool:
        """Record ``cond``; return True if anything changed.

        ``last_transition`` moves only when the status flips (then to
        ``cond.last_transition`` if given, else now); nothing is written when status,
        reason and message are unchanged.
        """
        with self.transaction():
            row = self._fetchone(
                "SELECT status, reason, message FROM conditions WHERE name = ? AND type = ?",
                (name, cond.type),
            )
            if row is not None and tuple(row) == (cond.status, cond.reason, cond.message):
                return False
            if row is not None and row[0] == cond.status:
                self._execute(
                    "UPDATE conditions SET reason = ?, message = ? WHERE name = ? AND type = ?",
                    (cond.reason, cond.message, name, cond.type),
                )
                return True
            transition = cond.last_transition or self._now()
            self._execute(
                "INSERT INTO conditions (name, type, status, reason, message, last_transition) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, type) DO UPDATE SET "
                "status = excluded.status, reason = excluded.reason, message = excluded.message, "
                "last_transition = excluded.last_transition",
                (name, cond.type, cond.status, cond.reason, cond.message, codec.dt_to_text(transition)),
            )
            return True

    def drop_conditions(self, name: str) -> None:
        """Forget every condition of the subscription (after it is purged)."""
        self._execute("DELETE FROM conditions WHERE name = ?", (name,))

    # -- backoff ----------------------------------------------------------------------

    def get_backoff(self, key: str) -> records.BackoffRecord | None:
        row = self._fetchone("SELECT key, failures, next_attempt, last_error FROM backoff WHERE key = ?", (key,))
        if row is None:
            return None
        return records.BackoffRecord(
            key=row[0], failures=row[1], next_attempt=codec.text_to_dt(row[2]), last_error=row[3]
        )

    def record_failure(self, key: str, error: str, delay: float) -> records.BackoffRecord:
        """Count one more failure of ``key``; next attempt ``delay`` seconds from now."""
        with self.transaction():
            previous = self.get_backoff(key)
            rec = records.BackoffRecord(
                key=key,
                failures=(previous.failures if previous else 0) + 1,
                next_attempt=self._now() + timedelta(seconds=delay),
                last_error=error,
            )
            self._execute(
                "INSERT INTO backoff (key, failures, next_attempt, last_error) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                "next_attempt = excluded.next_attempt, last_error = excluded.last_error",
                (rec.key, rec.failures, codec.dt_to_text(rec.next_attempt), rec.last_error),
            )
            return rec

    def clear_backoff(self, key: str) -> None:
        self._execute("DELETE FROM backoff WHERE key = ?", (key,))

    def list_backoff(self) -> list[records.BackoffRecord]:
        """Every key in backoff, soonest retry first (to re-queue them after a restart)."""
        rows = self._fetchall("SELECT key, failures, next_attempt, last_error FROM backoff ORDER BY next_attempt")
        return [
            records.BackoffRecord(key=k, failures=f, next_attempt=codec.text_to_dt(n), last_error=e)
            for k, f, n, e in rows
        ]

    # -- status snapshot ----------------------------------------------------------------

    def put_status(self, name: str, doc: dict[str, Any]) -> bool:
        """Store the subscription's status document; write (and return True) only if it changed."""
        text = codec.dumps(doc)
        with self.transaction():
            row = self._fetchone("SELECT doc FROM status WHERE name = ?", (name,))
            if row is not None and row[0] == text:
                return False
            self._execute(
                "INSERT INTO status (name, doc, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                (name, text, codec.dt_to_text(self._now())),
            )
            return True

    def get_status(self) -> list[dict[str, Any]]:
        """Every status document, ordered by subscription name."""
        return [codec.loads(doc) for (doc,) in self._fetchall("SELECT doc FROM status ORDER BY name")]

    def get_status_raw(self) -> dict[str, str]:
        """Every status document as its stored JSON text, by subscription name."""
        return dict(self._fetchall("SELECT name, doc FROM status ORDER BY name"))

    def drop_status(self, name: str) -> None:
        self._execute("DELETE FROM status WHERE name = ?", (name,))

    # -- measured usage (RES-2) -------------------------------------------------------

    def put_usage(self, name: str, usage: dict[str, float]) -> None:
        """Record measurements (e.g. ``{"diskMB": 812.5}``); metrics not named keep their value."""
        at = codec.dt_to_text(self._now())
        self._executemany(
            "INSERT INTO usage (name, metric, value, measured_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name, metric) DO UPDATE SET value = excluded.value, "
            "measured_at = excluded.measured_at",
            [(name, metric, float(value), at) for metric, value in usage.items()],
        )

    def all_usage(self) -> dict[str, dict[str, float]]:
        """Every subscription's measured usage, in one query (name -> metric -> value)."""
        result: dict[str, dict[str, float]] = {}
        for name, metric, value in self._fetchall("SELECT name, metric, value FROM usage ORDER BY name, metric"):
            result.setdefault(name, {})[metric] = float(value)
        return result

    def get_usage(self, name: str) -> dict[str, float]:
        rows = self._fetchall("SELECT metric, value FROM usage WHERE name = ? ORDER BY metric", (name,))
        return {metric: float(value) for metric, value in rows}
