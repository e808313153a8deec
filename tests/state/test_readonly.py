"""`tenantctl status` reads through `Store.open_readonly` while a controller writes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from controller.state import errors, store

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
    with store.Store.open_readonly(db_path) as ro:
        assert ro.get_status() == [{"name": "a.example"}]


def test_refuses_writes(db_path: Path) -> None:
    store.Store(db_path).close()
    with store.Store.open_readonly(db_path) as ro, pytest.raises(errors.ReadOnlyStore):
        ro.put_status("a.example", {})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has the controller run"):
        store.Store.open_readonly(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()
