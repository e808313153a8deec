"""`tenantctl status` reads through `Store.open_readonly` while a controller writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from controller.state import errors, store

from .conftest import side_files


def raw_journal_mode(path: Path) -> str:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()

WRITER = textwrap.dedent(
    """
    import sys, pathlib
    from controller.state import events, store
    path, n = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    with store.Store(path) as st:
        print("ready", flush=True)
        for i in range(n):
            with st.transaction():  # six resources per subscription, all or nothing
                st.set_fingerprints(f"s{i:04d}.example", {r: str(i) for r in ("*", "web", "php", "db", "dns", "tls")})
                st.put_status(f"s{i:04d}.example", {"name": f"s{i:04d}.example", "i": i})
                events.record(st, actor="controller", action="apply", subject=f"s{i:04d}.example", message="")
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, pathlib, time
    from controller.state import store
    with store.Store(pathlib.Path(sys.argv[1])) as st:
        with st.transaction():
            st.set_fingerprints("held.example", {"*": "uncommitted"})
            print("holding", flush=True)
            sys.stdin.readline()
    """
)


def test_reads_consistent_snapshots_while_another_process_writes(db_path: Path) -> None:
    store.Store(db_path).close()
    n = 400
    reads = 0
    last = -1
    with (
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as writer,
        store.Store.open_readonly(db_path) as ro,
    ):
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        while writer.poll() is None or reads == 0:
            with ro.snapshot():
                fps = ro.all_fingerprints()
                statuses = ro.get_status()
            assert all(len(v) == 6 for v in fps.values()), "a reader saw half a transaction"
            assert len(fps) >= last, "a reader went back in time"
            assert len(statuses) == len(fps), "two reads in one snapshot disagree"
            last = len(fps)
            reads += 1
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err.decode()
        assert len(ro.all_fingerprints()) == n
    assert reads > 1


def test_reads_while_another_process_holds_the_write_lock(db_path: Path) -> None:
    with store.Store(db_path) as st:
        st.set_fingerprints("a.example", {"*": "committed"})
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
        started = time.monotonic()
        with store.Store.open_readonly(db_path) as ro:
            assert ro.all_fingerprints() == {"a.example": {"*": "committed"}}
        assert time.monotonic() - started < 2.5, "a reader waited for the writer (busy_timeout is 5 s)"
        assert holder.stdin is not None
        holder.stdin.write(b"\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
    with store.Store.open_readonly(db_path) as ro:
        assert ro.get_fingerprints("held.example") == {"*": "uncommitted"}


def test_opens_a_closed_file_with_no_wal_left(db_path: Path) -> None:
    with store.Store(db_path) as st:
        st.put_status("a.example", {"name": "a.example"})
    assert not db_path.with_name("state.db-wal").exists()  # checkpointed on close
    assert side_files(db_path) == {"state.db.lock"}
    with store.Store.open_readonly(db_path) as ro:
        assert ro.get_status() == [{"name": "a.example"}]
        with ro.snapshot():
            assert ro.all_fingerprints() == {}
        assert side_files(db_path) == {"state.db.lock"}, "a reader created -wal/-shm"
    assert side_files(db_path) == {"state.db.lock"}


def test_last_writer_leaves_the_file_in_rollback_mode(db_path: Path) -> None:
    with store.Store(db_path) as st, store.Store(db_path) as other:
        assert st._fetchone("PRAGMA journal_mode") == ("wal",)
        other.put_status("a.example", {"name": "a.example"})
    assert raw_journal_mode(db_path) == "delete"


def wal_left_without_wal_file(db_path: Path) -> None:
    """A store closed by an older tenantctl: WAL mode in the header, no -wal file."""
    store.Store(db_path).close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    conn.close()
    assert side_files(db_path) == {"state.db.lock"}


def test_a_file_left_in_wal_mode_is_read_without_creating_files(db_path: Path) -> None:
    with store.Store(db_path) as st:
        st.put_status("a.example", {"name": "a.example"})
    wal_left_without_wal_file(db_path)
    with store.Store.open_readonly(db_path) as ro:
        assert ro.get_status() == [{"name": "a.example"}]
        assert side_files(db_path) == {"state.db.lock"}


def test_an_immutable_reader_sees_a_writer_that_came_later(db_path: Path) -> None:
    """The file left in WAL mode is read ``immutable=1``; once a writer opens it the
    reader notices (the file's signature changed) and reads through the WAL again."""
    wal_left_without_wal_file(db_path)
    with store.Store.open_readonly(db_path) as ro:
        assert ro.get_status() == []
        with store.Store(db_path) as st:
            st.put_status("a.example", {"name": "a.example"})
            assert ro.get_status() == [{"name": "a.example"}]
            with ro.snapshot():
                assert ro.get_status() == [{"name": "a.example"}]
            st.put_status("b.example", {"name": "b.example"})
            with ro.snapshot():
                assert len(ro.get_status()) == 2
        assert len(ro.get_status()) == 2


def test_a_killed_writer_is_read_through_its_wal(db_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
        holder.kill()
    assert {"state.db-wal", "state.db-shm"} <= side_files(db_path)
    with store.Store.open_readonly(db_path) as ro:
        assert ro.get_fingerprints("held.example") == {}, "an uncommitted write became visible"
        assert ro.counts()["runs"] == 0


def test_refuses_writes(db_path: Path) -> None:
    store.Store(db_path).close()
    with store.Store.open_readonly(db_path) as ro, pytest.raises(errors.ReadOnlyStore):
        ro.put_status("a.example", {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has the controller run"):
        store.Store.open_readonly(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()
