"""Schema versions: fresh files, upgrades, files from a newer tenantctl, failed migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controller.state import errors, migrations, records, store

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
    with pytest.raises(errors.SchemaTooNew, match=r"schema version 2 is newer than this tenantctl supports \(1\)"):
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
    assert version_of(db_path) == 1
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
