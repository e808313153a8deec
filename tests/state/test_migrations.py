"""Schema versions: fresh files, upgrades, files from a newer tenantctl, failed migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controller.state import errors, events, integrity, locks, migrations, records, store

V_NEXT = """
-- a plausible next migration: remember where each subscription's backups go (BKP-3)
ALTER TABLE subscriptions ADD COLUMN backup_targets TEXT NOT NULL DEFAULT '[]';
CREATE INDEX subscriptions_by_customer ON subscriptions (customer);
"""


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def tables_of(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def test_fresh_file_is_at_latest_version(db_path: Path) -> None:
    store.Store(db_path).close()
    assert version_of(db_path) == migrations.latest() == len(migrations.MIGRATIONS)
    assert {"subscriptions", "fingerprints", "events", "status", "usage"} <= tables_of(db_path)


def test_reopening_is_a_no_op(db_path: Path) -> None:
    with store.Store(db_path) as st:
        st.set_fingerprints("a.example", {"*": "f"})
    with store.Store(db_path) as st:
        assert st.get_fingerprints("a.example") == {"*": "f"}


def test_old_file_is_migrated_keeping_its_data(db_path: Path, clock: object, monkeypatch: pytest.MonkeyPatch) -> None:
    with store.Store(db_path) as st:  # written by "the previous release"
        st.upsert_subscription(records.SubscriptionRecord("a.example", "c1", st.now(), server="eu1"))
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, V_NEXT))
    with store.Store(db_path) as st:
        rec = st.get_subscription("a.example")
        assert rec is not None and rec.server == "eu1"
        assert st._fetchone("SELECT backup_targets FROM subscriptions") == ("[]",)
    assert version_of(db_path) == len(migrations.MIGRATIONS)


def test_version_zero_file_with_no_tables_is_migrated(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    sqlite3.connect(db_path).close()
    assert version_of(db_path) == 0
    store.Store(db_path).close()
    assert version_of(db_path) == migrations.latest()


def test_newer_file_is_refused(db_path: Path) -> None:
    store.Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {migrations.latest() + 1}")
    conn.close()
    newer, supported = migrations.latest() + 1, migrations.latest()
    with pytest.raises(errors.SchemaTooNew, match=rf"schema version {newer} is newer than this tenantctl supports \({supported}\)"):
        store.Store(db_path)
    with pytest.raises(errors.SchemaTooNew):
        store.Store.open_readonly(db_path)
    assert version_of(db_path) == migrations.latest() + 1  # untouched


def test_failed_migration_leaves_previous_version(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.Store(db_path).close()
    broken = "CREATE TABLE half_done (a INTEGER);\nINSERT INTO no_such_table VALUES (1);\n"
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        store.Store(db_path)
    assert version_of(db_path) == migrations.latest() - 1
    assert "half_done" not in tables_of(db_path)


def test_readonly_refuses_an_unmigrated_file(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store.Store(db_path).close()
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, V_NEXT))
    with pytest.raises(errors.SchemaTooOld, match="run the controller once"):
        store.Store.open_readonly(db_path)


def test_statements_keep_trigger_bodies_whole() -> None:
    stmts = list(migrations.statements(migrations.V1_BASE))
    triggers = [s for s in stmts if s.startswith("CREATE TRIGGER")]
    assert len(triggers) == 2 and all(s.endswith("END;") for s in triggers)
    with pytest.raises(ValueError, match="incomplete"):
        list(migrations.statements("CREATE TABLE t (a INTEGER)"))


def test_processes_opening_a_fresh_file_at_once_all_succeed(db_path: Path) -> None:
    """The version is re-read under the write lock, so no migration runs twice."""
    script = "import sys, pathlib; from controller.state import store; store.Store(pathlib.Path(sys.argv[1])).close()"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(db_path)], stderr=subprocess.PIPE) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
    assert version_of(db_path) == migrations.latest()


def v1_file(path: Path) -> None:
    """A store as the first release wrote it: schema 1, WAL mode, no application id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrations.migrate(conn, str(path), migrations.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO events (at, actor, action, subject, message) VALUES "
        "('2025-03-01T12:00:00.000000Z', 'controller', 'apply', 'a.example', 'old')"
    )
    conn.execute("INSERT INTO backoff VALUES ('a.example/dns', 2, '2025-03-01T12:00:00.000000Z', 'pdns 500')")
    conn.close()


def test_a_first_release_file_is_migrated_keeping_events_and_backoff(db_path: Path) -> None:
    v1_file(db_path)
    with store.Store(db_path) as st:
        [old] = events.list_events(st)
        assert (old.message, old.concern, old.run_id) == ("old", None, None)
        rec = st.get_backoff("a.example/dns")
        assert rec is not None and (rec.failures, rec.permanent, rec.fingerprint) == (2, False, None)
        assert st._fetchone("PRAGMA application_id") == (integrity.APPLICATION_ID,)
    assert version_of(db_path) == migrations.latest()


def _open_all_at_once(db_path: Path, n: int) -> None:
    script = (
        "import sys, pathlib; from controller.state import events, store\n"
        "with store.Store(pathlib.Path(sys.argv[1])) as st:\n"
        "    events.record(st, actor='t', action='open', subject=sys.argv[2], message='')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db_path), str(i)], stderr=subprocess.PIPE)
        for i in range(n)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with store.Store.open_readonly(db_path) as ro:
        assert sorted(int(e.subject) for e in events.list_events(ro, action="open", limit=None)) == list(range(n))


def test_sixteen_processes_create_one_store(db_path: Path) -> None:
    _open_all_at_once(db_path, 16)
    assert version_of(db_path) == migrations.latest()


def test_processes_opening_an_old_file_at_once_migrate_it_once(db_path: Path) -> None:
    v1_file(db_path)
    _open_all_at_once(db_path, 12)
    assert version_of(db_path) == migrations.latest()
    with store.Store.open_readonly(db_path) as ro:
        assert [e.message for e in events.list_events(ro, action="apply")] == ["old"]


def test_opening_waits_for_the_directory_lock(db_path: Path) -> None:
    """Openers queue on ``locks.opening`` (not on SQLite, whose journal-mode switch can
    fail at once with ``database is locked``): held here, a second process waits."""
    db_path.parent.mkdir(parents=True)
    script = "import sys, pathlib; from controller.state import store; store.Store(pathlib.Path(sys.argv[1])).close()"
    with locks.opening(db_path.parent):
        proc = subprocess.Popen([sys.executable, "-c", script, str(db_path)], stderr=subprocess.PIPE)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
        assert not db_path.exists(), "the store was created while another process held the opening lock"
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert version_of(db_path) == migrations.latest()


def test_the_journal_mode_switch_is_retried_while_sqlite_says_locked(db_path: Path) -> None:
    """Another connection in a write transaction on a rollback-mode file makes the switch
    fail with SQLITE_BUSY; the store retries until it is released."""
    store.Store(db_path).close()  # closed: rollback-journal mode
    blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    timer.start()
    try:
        with store.Store(db_path) as st:
            assert st._fetchone("PRAGMA journal_mode") == ("wal",)
    finally:
        timer.join()
        blocker.close()
