"""Copies of the state store: consistent while a writer runs, kept 14, restored whole."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from controller.state import backup, errors, events, integrity, migrations, store

from .conftest import T0, populate, side_files

WRITER = textwrap.dedent(
    """
    import sys, pathlib
    from controller.state import events, store
    with store.Store(pathlib.Path(sys.argv[1])) as st:
        print("ready", flush=True)
        for i in range(int(sys.argv[2])):
            with st.transaction():  # six fingerprints and a status per subscription, all or nothing
                name = f"w{i:04d}.example"
                st.set_fingerprints(name, {r: str(i) * 40 for r in ("*", "web", "php", "db", "dns", "tls")})
                st.put_status(name, {"name": name, "pad": "x" * 200})
                events.record(st, actor="controller", action="apply", subject=name, message="")
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, pathlib
    from controller.state import store
    with store.Store(pathlib.Path(sys.argv[1])) as st:
        print("open", flush=True)
        sys.stdin.readline()
    """
)


def read_copy(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


class TestBackupTo:
    def test_copies_are_consistent_while_another_process_writes(self, db_path: Path, tmp_path: Path) -> None:
        store.Store(db_path).close()
        copies: list[Path] = []
        with (
            subprocess.Popen([sys.executable, "-c", WRITER, str(db_path), "600"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) as writer,
            store.Store.open_readonly(db_path) as ro,
        ):
            assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
            while writer.poll() is None or not copies:
                copies.append(ro.backup_to(tmp_path / "copies" / f"c{len(copies)}.db"))
            _, err = writer.communicate(timeout=60)
            assert writer.returncode == 0, err.decode()
        sizes = []
        for copy in copies:
            per_sub = read_copy(copy, "SELECT name, count(*) FROM fingerprints GROUP BY name")
            assert all(n == 6 for _, n in per_sub), f"{copy.name} holds half a transaction"
            statuses = read_copy(copy, "SELECT count(*) FROM status")[0][0]
            assert statuses == len(per_sub) == read_copy(copy, "SELECT count(*) FROM events")[0][0]
            assert read_copy(copy, "PRAGMA journal_mode") == [("delete",)]
            assert stat.S_IMODE(copy.stat().st_mode) == 0o600
            sizes.append(len(per_sub))
        assert sizes == sorted(sizes) and len(copies) > 1
        assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == sorted(c.name for c in copies), "temp files left"

    def test_a_copy_opens_as_a_store_with_the_same_content(self, db_path: Path, tmp_path: Path) -> None:
        populate(db_path, 30)
        with store.Store(db_path) as st:
            copy = st.backup_to(tmp_path / "copy.db")
            expected = (st.list_subscriptions(), st.all_fingerprints(), events.list_events(st, limit=None))
        with store.Store.open_readonly(copy) as ro:
            assert (ro.list_subscriptions(), ro.all_fingerprints(), events.list_events(ro, limit=None)) == expected
        assert side_files(copy) == set()


class TestNightly:
    def test_one_copy_a_day(self, st: store.Store, tmp_path: Path) -> None:
        folder = tmp_path / "backups"
        first = backup.nightly(st, folder, T0)
        assert first == folder / "state-20250301T120000Z.db" and first.exists()
        assert backup.nightly(st, folder, T0 + timedelta(hours=11, minutes=59)) is None
        second = backup.nightly(st, folder, T0 + timedelta(hours=12))
        assert second == folder / "state-20250302T000000Z.db"
        assert backup.copies(folder) == [first, second]
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    def test_keeps_the_last_fourteen(self, st: store.Store, tmp_path: Path) -> None:
        folder = tmp_path / "backups"
        made = [backup.nightly(st, folder, T0 + timedelta(days=d)) for d in range(20)]
        assert backup.copies(folder) == made[-14:]
        (folder / "notes.txt").write_text("kept: not a copy")
        assert backup.prune(folder, 3) == made[-14:-3]
        assert (folder / "notes.txt").exists()


class TestInspect:
    def test_counts_what_a_copy_holds(self, db_path: Path, tmp_path: Path) -> None:
        populate(db_path, 7)
        with store.Store(db_path) as st:
            st.finish_run(st.begin_run("operator", "apply"), {})
            copy = st.backup_to(tmp_path / "copy.db")
        got = backup.inspect(copy)
        assert (got.subscriptions, got.deleted, got.events, got.runs, got.version) == (7, 0, 7, 1, migrations.latest())
        assert "7 subscriptions (0 deleted), 7 events, 1 runs" in got.describe()
        assert side_files(copy) == set()

    @pytest.mark.parametrize(
        ("content", "kind"),
        [
            pytest.param(b"not a database\n" * 100, errors.NotAStore, id="text"),
            pytest.param(b"", errors.CorruptStore, id="empty"),
        ],
    )
    def test_refuses_what_is_not_a_store(self, tmp_path: Path, content: bytes, kind: type[Exception]) -> None:
        bad = tmp_path / "bad.db"
        bad.write_bytes(content)
        with pytest.raises(kind):
            backup.inspect(bad)

    def test_refuses_an_empty_sqlite_file_and_a_truncated_copy(self, db_path: Path, tmp_path: Path) -> None:
        blank = tmp_path / "blank.db"
        sqlite3.connect(blank).execute("CREATE TABLE x (a)").connection.close()
        with pytest.raises(errors.NotAStore):
            backup.inspect(blank)
        populate(db_path, 40)
        with store.Store(db_path) as st:
            copy = st.backup_to(tmp_path / "copy.db")
        os.truncate(copy, os.path.getsize(copy) - 4096)
        with pytest.raises(errors.CorruptStore, match="truncated"):
            backup.inspect(copy)


class TestRestore:
    def test_replaces_the_store_and_keeps_the_old_one(self, db_path: Path, tmp_path: Path) -> None:
        populate(db_path, 5)
        with store.Store(db_path) as st:
            copy = st.backup_to(tmp_path / "copy.db")
        populate(db_path, 9)  # more since the copy
        done = backup.restore(copy, db_path, T0)
        assert done.kept == db_path.with_name("state.db.before-restore-20250301T120000Z")
        assert done.source.subscriptions == 5
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
        with store.Store(db_path) as st:
            assert len(st.list_subscriptions()) == 5
        with store.Store.open_readonly(done.kept) as old:
            assert len(old.list_subscriptions()) == 9

    def test_refused_while_a_store_is_open_in_this_process(self, st: store.Store, db_path: Path, tmp_path: Path) -> None:
        copy = st.backup_to(tmp_path / "copy.db")
        with pytest.raises(errors.StoreInUse, match="another process holds the state store"):
            backup.restore(copy, db_path, T0)
        st.put_status("still.example", {})  # the open store is untouched and usable

    def test_refused_while_another_process_holds_the_store(self, db_path: Path, tmp_path: Path) -> None:
        populate(db_path, 3)
        with store.Store.open_readonly(db_path) as ro:
            copy = ro.backup_to(tmp_path / "copy.db")
        with subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) as holder:
            assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
            with pytest.raises(errors.StoreInUse):
                backup.restore(copy, db_path, T0)
            assert holder.stdin is not None
            holder.stdin.write(b"\n")
            holder.stdin.flush()
            assert holder.wait(30) == 0
        assert backup.restore(copy, db_path, T0).source.subscriptions == 3

    def test_replaces_a_store_left_by_a_killed_writer(self, db_path: Path, tmp_path: Path) -> None:
        populate(db_path, 4)
        with store.Store(db_path) as st:
            copy = st.backup_to(tmp_path / "copy.db")
        with subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) as holder:
            assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
            holder.kill()
        assert integrity.wal_path(db_path).exists()
        done = backup.restore(copy, db_path, T0)
        assert side_files(db_path) >= {"state.db.before-restore-20250301T120000Z"}
        assert not integrity.wal_path(db_path).exists() and not integrity.shm_path(db_path).exists()
        with store.Store(db_path) as st:
            assert len(st.list_subscriptions()) == 4
        assert done.kept is not None and backup.inspect(done.kept).subscriptions == 4

    def test_refuses_a_damaged_copy_and_changes_nothing(self, db_path: Path, tmp_path: Path) -> None:
        populate(db_path, 3)
        before = db_path.read_bytes()
        bad = tmp_path / "bad.db"
        bad.write_text("hello")
        with pytest.raises(errors.NotAStore):
            backup.restore(bad, db_path, T0)
        assert db_path.read_bytes() == before
        assert side_files(db_path) == {"state.db.lock"}
