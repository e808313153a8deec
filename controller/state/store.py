"""``Store``: the one connection to the state file, and every typed read and write.

Concurrency model:

* One ``Store`` per process is enough; it may be shared by threads
  (``check_same_thread=False``). An ``RLock`` serialises every use of the connection, and
  a transaction holds it from ``BEGIN IMMEDIATE`` to ``COMMIT``, so another thread never
  sees (nor joins) a transaction it did not open.
* Other processes: WAL mode lets readers (``Store.open_readonly``, e.g. ``tenantctl
  status``) read the last committed state while a controller writes; writers of several
  processes queue on SQLite's lock for up to ``busy_timeout`` (5 s). Opening a store
  read-write (journal-mode switch, migrations) is serialised across processes by
  ``locks.opening``; the last read-write store to close puts the file back in
  rollback-journal mode, so that a read-only open of a closed store creates no
  ``-wal``/``-shm`` file (see ``open_readonly``).
* A file that is not a whole tenantctl store (truncated, foreign, newer) is refused
  with one line naming it and what to do (``integrity``: ``NotAStore``,
  ``CorruptStore``, ``SchemaTooNew``, all ``controller.errors.StateError``); damage met
  later by a query raises ``CorruptStore`` too.
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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from controller.state import codec, errors, integrity, locks, migrations, records

_T = TypeVar("_T")

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


#: names per ``IN (...)`` query of the bulk methods (well under SQLite's variable limit)
CHUNK = 500


def _chunks(names: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(names), CHUNK):
        yield names[start:start + CHUNK]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _set_journal_mode(conn: sqlite3.Connection, mode: str) -> None:
    row = conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()  # our own constant, not user text
    if str(row[0]).lower() != mode:
        raise sqlite3.OperationalError(f"database is locked (journal mode stayed {row[0]})")


def _translated(path: Path, exc: BaseException) -> BaseException:
    """What opening a store raises for ``exc``: damage and lasting locks as ``StateError``."""
    if isinstance(exc, sqlite3.DatabaseError) and integrity.is_damage(exc):
        return integrity.corrupt(path, exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return errors.StoreBusy(f"{path}: {exc} (another process kept it locked for {BUSY_TIMEOUT_MS // 1000} s)")
    return exc


def _until_unlocked(step: Callable[[], object], path: Path, *, timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
    """Run ``step``, again while SQLite says the file is locked, up to ``timeout``.

    SQLite answers some lock conflicts (a journal-mode switch, two readers upgrading at
    once) with SQLITE_BUSY at once, without the busy handler; processes are already
    serialised by ``locks.opening``, this covers threads of one process and other
    writers.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" not in text and "busy" not in text:
                raise
            if time.monotonic() >= deadline:
                raise errors.StoreBusy(f"{path}: {text} for {timeout:.0f} s (another process holds it)") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class Store:
    """The state store. Use as a context manager, or call ``close()``."""

    def __init__(self, path: Path, *, now: Callable[[], datetime] = codec.utcnow) -> None:
        """Open (creating it and its directory if needed) and migrate the state file.

        Any number of processes may do this at once: they queue on the state directory's
        lock (``locks.opening``) for the journal-mode switch and the migrations. Raises
        ``NotAStore``/``CorruptStore``/``SchemaTooNew`` (all ``StateError``) for a file
        this code must not touch.
        """
        self.path = Path(path)
        self.readonly = False
        self._now = now
        self._signature: integrity.Signature | None = None
        self._holder: locks.Holder | None = None
        self._conn: sqlite3.Connection | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._opened = False
        with locks.opening(self.path.parent):
            self._holder = locks.Holder(self.path)
            try:
                if self.path.exists():
                    integrity.inspect_file(self.path, check_size=not integrity.wal_path(self.path).exists())
                self._conn = conn = self._connect(str(self.path), uri=False)
                self._setup()
                # Refuse a foreign or newer file before the journal-mode switch writes to it.
                integrity.check_identity(conn, self.path)
                migrations.check_version(conn, str(self.path))
                _until_unlocked(lambda: _set_journal_mode(conn, "wal"), self.path)
                conn.execute("PRAGMA synchronous = NORMAL")  # durable in WAL up to the last checkpoint
                _until_unlocked(lambda: migrations.migrate(conn, str(self.path)), self.path)
                self._opened = True
            except BaseException as exc:
                self.close()
                mapped = _translated(self.path, exc)
                if mapped is exc:
                    raise
                raise mapped from exc

    @classmethod
    def open_readonly(cls, path: Path, *, require_latest: bool = True) -> Store:
        """Open an existing state file for reading only, creating no file next to it.

        Safe while a controller in another process writes: readers see the last
        committed transaction. Raises ``FileNotFoundError`` if there is no state yet,
        ``NotAStore``/``CorruptStore`` for a damaged or foreign file, ``SchemaTooNew``,
        and ``SchemaTooOld`` if the file is older than this code (unless
        ``require_latest=False``, e.g. to back it up). Writes raise ``ReadOnlyStore``.

        How: a file left in rollback-journal mode (a writer that closed last switches it
        back, see ``close``) is read with ``mode=ro`` and SQLite's ordinary locking; a
        file in WAL mode whose ``-wal`` exists (a writer has it open, or was killed) is
        read through that WAL; only a file left in WAL mode without ``-wal`` (stores of
        older tenantctl versions) is read ``immutable=1``, re-opened whenever its
        ``signature`` shows that a writer came along.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no state store (has the controller run?)")
        store = cls.__new__(cls)
        store.path = path
        store.readonly = True
        store._now = codec.utcnow
        store._holder = None
        store._opened = False
        store._signature = None
        store._conn = None
        try:
            store._conn = conn = store._connect_reader()
            store._setup()
            integrity.check_identity(conn, path)
            found = migrations.check_version(conn, str(path))
            if require_latest and found < migrations.latest():
                raise errors.SchemaTooOld(str(path), found, migrations.latest())
        except BaseException as exc:
            store.close()
            mapped = _translated(path, exc)
            if mapped is exc:
                raise
            raise mapped from exc
        return store

    def _connect_reader(self) -> sqlite3.Connection:
        """A read-only connection that will not create ``-wal``/``-shm`` (see ``open_readonly``)."""
        has_wal = integrity.wal_path(self.path).exists()
        header = integrity.inspect_file(self.path, check_size=not has_wal)
        if header is None:
            raise errors.CorruptStore(f"{self.path}: the state store is empty (0 bytes); {integrity.advice(self.path)}")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        self._signature = None
        if header.wal and not has_wal:
            self._signature = integrity.signature(self.path)
            uri += "&immutable=1"
        return self._connect(uri, uri=True)

    def _reconnect_reader(self) -> None:
        """The file changed under an ``immutable=1`` reader: open it again."""
        old = self._connection()
        self._conn = self._connect_reader()
        old.close()
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _stale(self) -> bool:
        """An ``immutable=1`` reader whose file another process has since written."""
        if self._signature is None:
            return False
        try:
            return integrity.signature(self.path) != self._signature
        except FileNotFoundError:
            return True

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
        """Close the connection; further use raises ``StoreClosed``. Idempotent.

        A read-write store that is the file's last user switches it back to the
        rollback journal (checkpointing and removing ``-wal``/``-shm``), so that readers
        of a closed store need no such files; if anyone else has it open the switch
        fails at once and the file simply stays in WAL mode.
        """
        lock = getattr(self, "_lock", None)
        with lock if lock is not None else contextlib.nullcontext():
            if self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    if not self.readonly and self._opened and not conn.in_transaction:
                        conn.execute("PRAGMA busy_timeout = 0")
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("PRAGMA journal_mode = DELETE")
                finally:
                    conn.close()
            if self._holder is not None:
                self._holder.release()
                self._holder = None

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
            if self._stale():
                self._reconnect_reader()
                conn = self._connection()
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
            if self._stale():
                raise errors.StoreBusy(f"{self.path}: changed by another process while being read; read again")

    @contextlib.contextmanager
    def _one_write(self) -> Iterator[None]:
        """For a block whose only write is one statement (after reads): joins an open
        transaction without a savepoint (SQLite undoes a failed statement by itself, and
        a pass that writes 10,000 rows in one transaction paid two more statements a
        row for savepoints), else is a transaction of its own."""
        with self._lock:
            if self._depth > 0 and not self._in_snapshot:
                yield
                return
            with self.transaction():
                yield

    def _execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        """Run one write statement in a (possibly joined) transaction. For this package."""
        with self._one_write(), self._damage_is_corruption():
            return self._connection().execute(sql, params)

    def _executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self.transaction(), self._damage_is_corruption():
            self._connection().executemany(sql, rows)

    @contextlib.contextmanager
    def _damage_is_corruption(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if integrity.is_damage(exc):
                raise integrity.corrupt(self.path, exc) from exc
            raise

    def _fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Run one query under the lock. For this package."""
        with self._lock:
            return self._read(lambda conn: conn.execute(sql, params).fetchall())

    def _fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._read(lambda conn: conn.execute(sql, params).fetchone())
            return row

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``query``; damage becomes ``CorruptStore``; a stale immutable reader re-reads."""
        with self._damage_is_corruption():
            result = query(self._connection())
            if self._depth == 0 and self._stale():
                self._reconnect_reader()
                result = query(self._connection())
            return result

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
            db_servers={} if db_servers == "{}" else codec.loads(db_servers),
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

    def live_rows(self) -> list[records.LiveRow]:
        """What planning needs of every live subscription, ordered by name (plain rows:
        10,000 records with their datetimes cost the no-op plan 50 ms)."""
        rows = self._fetchall(
            "SELECT name, customer, created_at, server, ip, db_servers FROM subscriptions "
            "WHERE deleted_at IS NULL ORDER BY name")
        return [records.LiveRow(name, customer, codec.text_to_dt(created).date(), server, ip,
                                {} if dbs == "{}" else codec.loads(dbs))
                for name, customer, created, server, ip, dbs in rows]

    def list_deleted(self) -> list[records.SubscriptionRecord]:
        """The deleted subscriptions still remembered (LIFE-6), ordered by name."""
        rows = self._fetchall(f"SELECT {self._SUB_COLUMNS} FROM subscriptions WHERE deleted_at IS NOT NULL ORDER BY name")
        return [self._sub_from_row(r) for r in rows]

    _UPSERT_SUB = (
        f"INSERT INTO subscriptions ({_SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET customer = excluded.customer, "
        "created_at = excluded.created_at, server = excluded.server, ip = excluded.ip, "
        "db_servers = excluded.db_servers, deleted_at = excluded.deleted_at, "
        "purge_after = excluded.purge_after"
    )

    @staticmethod
    def _sub_to_row(rec: records.SubscriptionRecord) -> tuple[Any, ...]:
        return (rec.name, rec.customer, codec.dt_to_text(rec.created_at), rec.server, rec.ip,
                codec.dumps(rec.db_servers), codec.opt_dt_to_text(rec.deleted_at),
                codec.opt_dt_to_text(rec.purge_after))

    def upsert_subscription(self, rec: records.SubscriptionRecord) -> None:
        """Insert or replace every field of ``rec.name``'s row."""
        self._execute(self._UPSERT_SUB, self._sub_to_row(rec))

    def upsert_subscriptions(self, recs: Sequence[records.SubscriptionRecord]) -> None:
        """``upsert_subscription`` of many, in one statement."""
        if recs:
            self._executemany(self._UPSERT_SUB, [self._sub_to_row(r) for r in recs])

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

    def set_fingerprints(self, name: str, fps: dict[str, str]) -> None:
        """Replace the subscription's whole set of fingerprints with ``fps``."""
        with self.transaction():
            self._execute("DELETE FROM fingerprints WHERE name = ?", (name,))
            self._executemany(
                "INSERT INTO fingerprints (name, resource, fingerprint) VALUES (?, ?, ?)",
                [(name, resource, fp) for resource, fp in fps.items()],
            )

    def fingerprints_of(self, names: Sequence[str]) -> dict[str, dict[str, str]]:
        """``get_fingerprints`` of many subscriptions, one query per ``CHUNK`` names."""
        out: dict[str, dict[str, str]] = {n: {} for n in names}
        for chunk in _chunks(names):
            for n, resource, fp in self._fetchall(
                    f"SELECT name, resource, fingerprint FROM fingerprints WHERE name IN ({_marks(chunk)})", chunk):
                out[n][resource] = fp
        return out

    def set_fingerprints_many(self, fps: Mapping[str, Mapping[str, str]]) -> None:
        """``set_fingerprints`` of many subscriptions in one transaction."""
        names = sorted(fps)
        with self.transaction():
            for chunk in _chunks(names):
                self._execute(f"DELETE FROM fingerprints WHERE name IN ({_marks(chunk)})", chunk)
            self._executemany(
                "INSERT INTO fingerprints (name, resource, fingerprint) VALUES (?, ?, ?)",
                [(name, resource, fp) for name in names for resource, fp in fps[name].items()],
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
        with self._one_write():
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

    def conditions_of(self, names: Sequence[str]) -> dict[str, list[records.Condition]]:
        """``get_conditions`` of many subscriptions, one query per ``CHUNK`` names."""
        out: dict[str, list[records.Condition]] = {n: [] for n in names}
        for chunk in _chunks(names):
            rows = self._fetchall(
                "SELECT name, type, status, reason, message, last_transition FROM conditions "
                f"WHERE name IN ({_marks(chunk)}) ORDER BY name, type", chunk)
            for n, t, st, r, m, lt in rows:
                out[n].append(records.Condition(type=t, status=st, reason=r, message=m,
                                                last_transition=codec.text_to_dt(lt)))
        return out

    def set_conditions(self, items: Sequence[tuple[str, records.Condition]]) -> int:
        """``set_condition`` of many (name, condition) pairs in one transaction, with one
        read per ``CHUNK`` names and one statement per kind of write; returns how many
        changed. A name given twice with the same type: the last one wins."""
        last: dict[tuple[str, str], records.Condition] = {(n, c.type): c for n, c in items}
        names = sorted({n for n, _ in last})
        types = sorted({t for _, t in last})
        now = codec.dt_to_text(self._now())
        updates: list[tuple[str, str, str, str]] = []
        upserts: list[tuple[str, str, str, str, str, str]] = []
        with self.transaction():
            old: dict[tuple[str, str], tuple[str, str, str]] = {}
            for chunk in _chunks(names):
                for n, t, st, r, m in self._fetchall(
                        "SELECT name, type, status, reason, message FROM conditions "
                        f"WHERE name IN ({_marks(chunk)}) AND type IN ({_marks(types)})", (*chunk, *types)):
                    old[(n, t)] = (st, r, m)
            for (name, typ), cond in last.items():
                row = old.get((name, typ))
                if row == (cond.status, cond.reason, cond.message):
                    continue
                if row is not None and row[0] == cond.status:
                    updates.append((cond.reason, cond.message, name, typ))
                else:
                    when = codec.dt_to_text(cond.last_transition) if cond.last_transition else now
                    upserts.append((name, typ, cond.status, cond.reason, cond.message, when))
            if updates:
                self._executemany("UPDATE conditions SET reason = ?, message = ? WHERE name = ? AND type = ?", updates)
            if upserts:
                self._executemany(
                    "INSERT INTO conditions (name, type, status, reason, message, last_transition) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, type) DO UPDATE SET "
                    "status = excluded.status, reason = excluded.reason, message = excluded.message, "
                    "last_transition = excluded.last_transition", upserts)
        return len(updates) + len(upserts)

    def drop_conditions(self, name: str) -> None:
        """Forget every condition of the subscription (after it is purged)."""
        self._execute("DELETE FROM conditions WHERE name = ?", (name,))

    # -- backoff ----------------------------------------------------------------------

    _BACKOFF_COLUMNS = "key, failures, next_attempt, last_error, fingerprint, permanent"

    @staticmethod
    def _backoff_from_row(row: tuple[Any, ...]) -> records.BackoffRecord:
        return records.BackoffRecord(
            key=row[0], failures=row[1], next_attempt=codec.text_to_dt(row[2]), last_error=row[3],
            fingerprint=row[4], permanent=bool(row[5]),
        )

    def get_backoff(self, key: str) -> records.BackoffRecord | None:
        row = self._fetchone(f"SELECT {self._BACKOFF_COLUMNS} FROM backoff WHERE key = ?", (key,))
        return None if row is None else self._backoff_from_row(row)

    def record_failure(
        self, key: str, error: str, delay: float, *, fingerprint: str | None = None, permanent: bool = False
    ) -> records.BackoffRecord:
        """Count one more failure of ``key``; next attempt ``delay`` seconds from now.

        ``fingerprint``: the inputs that failed (a caller retries new inputs at once);
        ``permanent``: do not retry on a timer at all, only once the inputs change.
        """
        with self.transaction():
            previous = self.get_backoff(key)
            rec = records.BackoffRecord(
                key=key,
                failures=(previous.failures if previous else 0) + 1,
                next_attempt=self._now() + timedelta(seconds=delay),
                last_error=error,
                fingerprint=fingerprint,
                permanent=permanent,
            )
            self._execute(
                f"INSERT INTO backoff ({self._BACKOFF_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, "
                "next_attempt = excluded.next_attempt, last_error = excluded.last_error, "
                "fingerprint = excluded.fingerprint, permanent = excluded.permanent",
                (rec.key, rec.failures, codec.dt_to_text(rec.next_attempt), rec.last_error, rec.fingerprint,
                 int(rec.permanent)),
            )
            return rec

    def clear_backoff(self, key: str) -> None:
        self._execute("DELETE FROM backoff WHERE key = ?", (key,))

    def list_backoff(self) -> list[records.BackoffRecord]:
        """Every key in backoff, soonest retry first (to re-queue them after a restart)."""
        rows = self._fetchall(f"SELECT {self._BACKOFF_COLUMNS} FROM backoff ORDER BY next_attempt, key")
        return [self._backoff_from_row(r) for r in rows]

    # -- server identity markers --------------------------------------------------------

    def get_server_generations(self) -> dict[str, str]:
        """Server -> the identity marker (generation id) last seen on it."""
        return dict(self._fetchall("SELECT name, generation FROM servers ORDER BY name"))

    def set_server_generation(self, server: str, generation: str) -> None:
        """Remember the marker just read from ``server``."""
        self._execute(
            "INSERT INTO servers (name, generation, seen_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET generation = excluded.generation, seen_at = excluded.seen_at",
            (server, generation, codec.dt_to_text(self._now())),
        )

    # -- status snapshot ----------------------------------------------------------------

    def put_status(self, name: str, doc: dict[str, Any]) -> bool:
        """Store the subscription's status document; write (and return True) only if it changed."""
        text = codec.dumps(doc)
        with self._one_write():
            row = self._fetchone("SELECT doc FROM status WHERE name = ?", (name,))
            if row is not None and row[0] == text:
                return False
            self._execute(
                "INSERT INTO status (name, doc, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                (name, text, codec.dt_to_text(self._now())),
            )
            return True

    def put_status_many(self, docs: Mapping[str, dict[str, Any]]) -> list[str]:
        """``put_status`` of many subscriptions in one transaction; returns the names
        whose document changed (only those are written)."""
        texts = {name: codec.dumps(doc) for name, doc in docs.items()}
        names = sorted(texts)
        at = codec.dt_to_text(self._now())
        with self.transaction():
            old: dict[str, str] = {}
            for chunk in _chunks(names):
                old.update(self._fetchall(f"SELECT name, doc FROM status WHERE name IN ({_marks(chunk)})", chunk))
            changed = [n for n in names if old.get(n) != texts[n]]
            self._executemany(
                "INSERT INTO status (name, doc, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                [(n, texts[n], at) for n in changed],
            )
        return changed

    def get_status(self) -> list[dict[str, Any]]:
        """Every status document, ordered by subscription name."""
        return [codec.loads(doc) for (doc,) in self._fetchall("SELECT doc FROM status ORDER BY name")]

    def get_status_of(self, name: str) -> dict[str, Any] | None:
        """One subscription's status document (None if it has none)."""
        row = self._fetchone("SELECT doc FROM status WHERE name = ?", (name,))
        return None if row is None else dict(codec.loads(row[0]))

    def status_names(self) -> frozenset[str]:
        """The names that have a status document."""
        return frozenset(n for (n,) in self._fetchall("SELECT name FROM status"))

    def status_texts(self, names: Sequence[str]) -> dict[str, str]:
        """The status documents of ``names`` (those that have one) as their JSON text."""
        if len(names) > len(self.status_names()) // 2:  # most of them: one pass over the table
            wanted = set(names)
            return {n: t for n, t in self.get_status_raw().items() if n in wanted}
        out: dict[str, str] = {}
        for chunk in _chunks(names):
            out.update(self._fetchall(f"SELECT name, doc FROM status WHERE name IN ({_marks(chunk)})", chunk))
        return out

    def get_status_raw(self) -> dict[str, str]:
        """Every status document as its stored JSON text, by subscription name."""
        return dict(self._fetchall("SELECT name, doc FROM status ORDER BY name"))

    #: the fields of a status document a table shows, read by SQLite (no JSON decoding)
    _ROW_FIELDS = ("customer", "plan", "server", "ip", "state", "stateReason", "sync", "concerns", "conflicts")

    def status_rows(self) -> list[records.StatusRow]:
        """What a table shows of every status document, ordered by name: a few fields
        extracted by SQLite (one parse of each document, none in Python)."""
        paths = ", ".join(f"'$.{f}'" for f in self._ROW_FIELDS)
        rows = self._fetchall(
            f"SELECT st.name, json_extract(st.doc, {paths}), s.created_at "
            "FROM status st LEFT JOIN subscriptions s ON s.name = st.name ORDER BY st.name")
        out: list[records.StatusRow] = []
        for name, fields, created in rows:
            customer, plan, server, ip, state, reason, sync, concerns, conflicts = codec.loads(fields)
            out.append(records.StatusRow(name, customer, plan, server, ip, state, reason, sync, concerns or {},
                                         conflicts or [], codec.opt_text_to_dt(created)))
        return out

    def iter_status_raw(self, *, drop: Sequence[str] = (), extract: Sequence[str] = (),
                        batch: int = 500) -> Iterator[tuple[Any, ...]]:
        """Every status document as JSON text, in name order, one batch of rows at a time
        under one snapshot: ``(name, text, *extracted)``. ``drop``: top-level keys removed
        and ``extract``: top-level values returned beside it, both by SQLite (the text is
        never decoded in Python)."""
        for key in [*drop, *extract]:
            if not key.isidentifier():
                raise ValueError(f"not a plain JSON key: {key!r}")
        expr = "doc"
        if drop:
            paths = ", ".join("'$." + k + "'" for k in drop)
            expr = f"json_remove(doc, {paths})"
        columns = "".join(f", json_extract(doc, '$.{k}')" for k in extract)
        sql = f"SELECT name, {expr}{columns} FROM status ORDER BY name"
        with self.snapshot():
            cursor = self._read(lambda conn: conn.execute(sql))
            while rows := cursor.fetchmany(batch):
                yield from rows

    def all_fingerprints(self, resources: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
        """Every subscription's fingerprints (of ``resources`` only, if given), in one
        query (the fast no-op pass reads the whole and inputs ones first)."""
        result: dict[str, dict[str, str]] = {}
        sql = "SELECT name, resource, fingerprint FROM fingerprints"
        if resources is not None:
            sql += f" WHERE resource IN ({', '.join('?' for _ in resources)})"
        for name, resource, fingerprint in self._fetchall(sql, tuple(resources or ())):
            per = result.get(name)
            if per is None:
                per = result[name] = {}
            per[resource] = fingerprint
        return result

    def count_live(self) -> int:
        """How many subscriptions exist (not deleted)."""
        row = self._fetchone("SELECT count(*) FROM subscriptions WHERE deleted_at IS NULL")
        assert row is not None
        return int(row[0])

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

    # -- runs (OPS-5) -----------------------------------------------------------------

    _RUN_COLUMNS = "id, actor, command, started_at, finished_at, summary"

    @staticmethod
    def _run_from_row(row: tuple[Any, ...]) -> records.Run:
        return records.Run(
            id=row[0],
            actor=row[1],
            command=row[2],
            started_at=codec.text_to_dt(row[3]),
            finished_at=codec.opt_text_to_dt(row[4]),
            summary=None if row[5] is None else codec.loads(row[5]),
        )

    def begin_run(self, actor: str, command: str) -> int:
        """Record that a pass starts now; return its run id.

        Call it outside any transaction (or in one of its own) so that the run is
        committed at once: a pass that is then killed stays visible as unfinished.
        """
        if not actor:
            raise ValueError("a run needs an actor")
        cursor = self._execute(
            "INSERT INTO runs (actor, command, started_at) VALUES (?, ?, ?)",
            (actor, command, codec.dt_to_text(self._now())),
        )
        run_id = cursor.lastrowid
        assert run_id is not None
        return run_id

    def finish_run(self, run_id: int, summary: dict[str, Any] | None = None) -> None:
        """Record the end of run ``run_id`` with a JSON summary of what it did.

        Raises ``KeyError`` for an unknown run and ``ValueError`` for one already
        finished (the schema refuses to change a finished run, OPS-5).
        """
        with self.transaction():
            row = self._fetchone("SELECT finished_at FROM runs WHERE id = ?", (run_id,))
            if row is None:
                raise KeyError(f"no run {run_id}")
            if row[0] is not None:
                raise ValueError(f"run {run_id} already finished at {row[0]}")
            self._execute(
                "UPDATE runs SET finished_at = ?, summary = ? WHERE id = ?",
                (codec.dt_to_text(self._now()), None if summary is None else codec.dumps(summary), run_id),
            )

    def get_run(self, run_id: int) -> records.Run | None:
        row = self._fetchone(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
        return None if row is None else self._run_from_row(row)

    def list_runs(
        self, *, unfinished_only: bool = False, since: datetime | None = None, limit: int | None = None
    ) -> list[records.Run]:
        """Runs oldest first: all, or only those that never finished; ``since`` keeps
        runs started at or after it; ``limit`` keeps the most recent ones."""
        clauses: list[str] = []
        params: list[Any] = []
        if unfinished_only:
            clauses.append("finished_at IS NULL")
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(codec.dt_to_text(since))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {self._RUN_COLUMNS} FROM runs{where} ORDER BY id DESC"
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            sql += " LIMIT ?"
            params.append(limit)
        return [self._run_from_row(r) for r in reversed(self._fetchall(sql, params))]

    # -- counts and backups -------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per kind: subscriptions (live and deleted), events and runs."""
        with self.snapshot():
            row = self._fetchone(
                "SELECT (SELECT count(*) FROM subscriptions WHERE deleted_at IS NULL), "
                "(SELECT count(*) FROM subscriptions WHERE deleted_at IS NOT NULL), "
                "(SELECT count(*) FROM events)"
            )
            has_runs = self._fetchone("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'")
            runs = self._fetchone("SELECT count(*) FROM runs") if has_runs else (0,)  # schema 1 had none
        assert row is not None and runs is not None
        return {"subscriptions": row[0], "deleted": row[1], "events": row[2], "runs": runs[0]}

    def backup_to(self, path: Path) -> Path:
        """Copy the whole store to ``path`` (a new file, mode 0600) and return it.

        SQLite's online backup API in one step, under one read transaction: a
        consistent copy of the last committed state, even while another process writes
        (WAL readers do not block writers). The copy is left in rollback-journal mode,
        checked (``quick_check``) and only then moved into place, so ``path`` is either
        absent or a whole store.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            dest = sqlite3.connect(tmp, isolation_level=None)
            try:
                with self._lock, self._damage_is_corruption():
                    if self._stale():
                        self._reconnect_reader()
                    self._connection().backup(dest)
                dest.execute("PRAGMA journal_mode = DELETE")
                problem = integrity.quick_check(dest)
                if problem is not None:
                    raise errors.CorruptStore(f"{self.path}: the copy fails SQLite's check ({problem}); {integrity.advice(self.path)}")
            finally:
                dest.close()
            os.chmod(tmp, 0o600)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path
