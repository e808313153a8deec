"""The audit log (OPS-5): appended, listed, never changed."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from controller.state import events, store

from .conftest import T0, FakeNow


def test_record_and_list(st: store.Store) -> None:
    first = events.record(st, actor="operator", action="suspend", subject="a.example", message="manual")
    second = events.record(
        st, actor="controller", action="apply", subject="b.example", message="web", data={"changed": ["vhost"]}
    )
    assert second > first
    listed = events.list_events(st)
    assert [(e.id, e.actor, e.action, e.subject, e.data) for e in listed] == [
        (first, "operator", "suspend", "a.example", None),
        (second, "controller", "apply", "b.example", {"changed": ["vhost"]}),
    ]
    assert listed[0].at == st.now()


def test_filters_and_paging(st: store.Store) -> None:
    ids = [events.record(st, actor="controller", action="apply", subject=f"s{i % 2}", message=str(i)) for i in range(7)]
    assert [e.id for e in events.list_events(st, subject="s1")] == ids[1::2]
    assert [e.id for e in events.list_events(st, since_id=ids[4])] == ids[5:]
    assert [e.id for e in events.list_events(st, limit=2)] == ids[:2]
    assert [e.id for e in events.list_events(st, subject="s0", since_id=ids[2], limit=1)] == [ids[4]]


def test_rejects_empty_actor(st: store.Store) -> None:
    with pytest.raises(ValueError):
        events.record(st, actor="", action="apply", subject="x", message="")


def test_rolled_back_with_the_change_it_describes(st: store.Store) -> None:
    with pytest.raises(RuntimeError), st.transaction():
        st.set_fingerprints("a.example", {"*": "f"})
        events.record(st, actor="controller", action="apply", subject="a.example", message="")
        raise RuntimeError("apply failed")
    assert events.list_events(st) == []


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("UPDATE events SET message = 'rewritten'", id="update"),
        pytest.param("DELETE FROM events", id="delete"),
    ],
)
def test_append_only_even_behind_the_store(st: store.Store, db_path: Path, sql: str) -> None:
    events.record(st, actor="operator", action="delete", subject="a.example", message="original")
    conn = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    finally:
        conn.close()
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        st._execute(sql)
    assert [e.message for e in events.list_events(st)] == ["original"]


def test_concern_and_run_are_recorded(st: store.Store) -> None:
    run = st.begin_run("operator", "apply")
    events.record(st, actor="operator", action="create", subject="a.example", message="web: created",
                  concern="web", run_id=run)
    events.record(st, actor="operator", action="sync", subject="a.example", message="")
    listed = events.list_events(st)
    assert [(e.concern, e.run_id) for e in listed] == [("web", run), (None, None)]


def test_filters_combine(st: store.Store, clock: FakeNow) -> None:
    run = st.begin_run("run", "run")
    ids = {}
    for i, (action, concern) in enumerate(
        [("create", "web"), ("create", "dns"), ("update", "web"), ("suspend", None), ("update", "web")]
    ):
        ids[i] = events.record(st, actor="run", action=action, subject=f"s{i % 2}", message=str(i), concern=concern,
                               run_id=run if i >= 2 else None)
        clock.advance(600)

    def got(**kw: object) -> list[int]:
        return [e.id for e in events.list_events(st, limit=None, **kw)]  # type: ignore[arg-type]

    assert got(action="update") == [ids[2], ids[4]]
    assert got(concern="web") == [ids[0], ids[2], ids[4]]
    assert got(concern="web", subject="s0") == [ids[0], ids[2], ids[4]]
    assert got(run_id=run) == [ids[2], ids[3], ids[4]]
    assert got(since=T0 + timedelta(minutes=20)) == [ids[2], ids[3], ids[4]]
    assert got(since=T0 + timedelta(minutes=19), action="update", concern="web") == [ids[2], ids[4]]
    assert [e.id for e in events.list_events(st, limit=2, last=True)] == [ids[3], ids[4]]
    assert [e.id for e in events.list_events(st, limit=2)] == [ids[0], ids[1]]
