"""Runs (OPS-5): every pass has a start and an end; an interrupted one stays visible."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.state import events, records, store

from .conftest import T0, FakeNow


def test_begin_finish_list(st: store.Store, clock: FakeNow) -> None:
    first = st.begin_run("operator", "apply")
    clock.advance(3)
    st.finish_run(first, {"changed": 2, "failed": 0})
    second = st.begin_run("run", "run")
    assert second > first
    runs = st.list_runs()
    assert runs == [
        records.Run(first, "operator", "apply", T0, T0.replace(second=3), {"changed": 2, "failed": 0}),
        records.Run(second, "run", "run", T0.replace(second=3), None, None),
    ]
    assert [r.id for r in st.list_runs(unfinished_only=True)] == [second]
    assert not runs[1].finished and runs[0].finished
    assert st.get_run(first) == runs[0] and st.get_run(999) is None


def test_list_filters_since_and_keeps_the_most_recent(st: store.Store, clock: FakeNow) -> None:
    ids = []
    for _ in range(5):
        ids.append(st.begin_run("run", "run"))
        clock.advance(60)
    assert [r.id for r in st.list_runs(limit=2)] == ids[-2:]
    assert [r.id for r in st.list_runs(since=T0.replace(minute=3))] == ids[3:]


def test_a_run_finishes_once(st: store.Store) -> None:
    run = st.begin_run("operator", "apply")
    st.finish_run(run, {})
    with pytest.raises(ValueError, match="already finished"):
        st.finish_run(run, {"changed": 1})
    with pytest.raises(KeyError):
        st.finish_run(run + 1)
    with pytest.raises(ValueError, match="actor"):
        st.begin_run("", "apply")


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("DELETE FROM runs", id="delete"),
        pytest.param("UPDATE runs SET summary = '{}'", id="rewrite-finished"),
        pytest.param("UPDATE runs SET actor = 'someone-else' WHERE finished_at IS NULL", id="rewrite-actor"),
    ],
)
def test_runs_are_append_only_behind_the_store(st: store.Store, db_path: Path, sql: str) -> None:
    st.finish_run(st.begin_run("operator", "apply"), {"changed": 1})
    st.begin_run("run", "run")
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    finally:
        conn.close()
    assert len(st.list_runs()) == 2


def test_events_name_their_run_which_must_exist(st: store.Store) -> None:
    run = st.begin_run("operator", "apply")
    events.record(st, actor="operator", action="create", subject="a.example", message="", concern="web", run_id=run)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        events.record(st, actor="operator", action="create", subject="a.example", message="", run_id=run + 7)
    assert [e.run_id for e in events.list_events(st)] == [run]


KILLED = textwrap.dedent(
    """
    import os, signal, sys, pathlib
    from controller.state import events, store
    with store.Store(pathlib.Path(sys.argv[1])) as st:
        run = st.begin_run("operator", "apply")
        with st.transaction():
            events.record(st, actor="operator", action="create", subject="a.example", message="", run_id=run)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_pass_leaves_an_unfinished_run(db_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED, str(db_path)], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with store.Store.open_readonly(db_path) as ro:
        [run] = ro.list_runs(unfinished_only=True)
        assert (run.actor, run.command, run.finished_at) == ("operator", "apply", None)
        assert [e.run_id for e in events.list_events(ro)] == [run.id]
