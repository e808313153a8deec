"""The store's bulk reads and writes (issue 15): each says what its one-row counterpart
says, for many rows in a few statements."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from controller.state import codec, records, store

from .conftest import FakeNow


def cond(type_: str, status: records.ConditionStatus, reason: str = "R", message: str = "") -> records.Condition:
    return records.Condition(type=type_, status=status, reason=reason, message=message)


def test_set_conditions_equals_one_by_one(tmp_path: Path, clock: FakeNow) -> None:
    """Same rows, same transition times, same 'changed' count as set_condition calls."""
    one = store.Store(tmp_path / "one" / "state.db", now=clock)
    many = store.Store(tmp_path / "many" / "state.db", now=clock)
    with one, many:
        first = [("a.example", cond("WebReady", "Unknown")), ("b.example", cond("WebReady", "True")),
                 ("a.example", cond("DnsReady", "False", message="x"))]
        for name, c in first:
            one.set_condition(name, c)
        assert many.set_conditions(first) == 3
        clock.advance(60)
        second = [("a.example", cond("WebReady", "Unknown")),  # unchanged: nothing written
                  ("b.example", cond("WebReady", "True", message="now with text")),  # same status: time kept
                  ("a.example", cond("DnsReady", "True")),  # flipped: time moves
                  ("c.example", cond("WebReady", "True"))]  # new
        changed = sum(one.set_condition(name, c) for name, c in second)
        assert many.set_conditions(second) == changed == 3
        for name in ("a.example", "b.example", "c.example"):
            assert many.get_conditions(name) == one.get_conditions(name), name
        assert many.conditions_of(["a.example", "c.example", "zz"]) == {
            "a.example": one.get_conditions("a.example"), "c.example": one.get_conditions("c.example"), "zz": []}
        assert {c.type: c.last_transition for c in many.get_conditions("a.example")} == {
            "DnsReady": clock(), "WebReady": clock() - dt.timedelta(seconds=60)}


def test_fingerprints_and_status_many(st: store.Store) -> None:
    st.set_fingerprints("a.example", {"*": "a0", "web": "a1"})
    names = [f"s{i:04}.example" for i in range(1200)]  # more than one chunk
    st.set_fingerprints_many({n: {"*": n, "dns": "d"} for n in names} | {"a.example": {"web": "a2"}})
    assert st.fingerprints_of(["a.example", names[0], names[-1], "none"]) == {
        "a.example": {"web": "a2"}, names[0]: {"*": names[0], "dns": "d"}, names[-1]: {"*": names[-1], "dns": "d"},
        "none": {}}
    assert st.all_fingerprints(("*",))[names[7]] == {"*": names[7]}
    assert "a.example" not in st.all_fingerprints(("*",))
    st.put_status("a.example", {"name": "a.example", "v": 1})
    changed = st.put_status_many({"a.example": {"name": "a.example", "v": 1}, "b.example": {"name": "b.example"}})
    assert changed == ["b.example"]
    assert st.put_status_many({"a.example": {"name": "a.example", "v": 2}}) == ["a.example"]
    assert [d["name"] for d in st.get_status()] == ["a.example", "b.example"]
    assert st.get_status()[0]["v"] == 2


def test_status_rows_and_raw_stream(st: store.Store, clock: FakeNow) -> None:
    st.upsert_subscription(records.SubscriptionRecord(name="a.example", customer="c", created_at=clock()))
    doc = {"name": "a.example", "customer": "c", "plan": "p", "server": "s1", "ip": "10.0.0.1", "state": "active",
           "stateReason": None, "sync": "unsynced", "concerns": {"web": "provisioned", "dns": "failed"},
           "conflicts": [{"property": "php", "planValue": "7.4", "availableValue": "8.2"}], "access": {"x": 1},
           "effective": {"big": list(range(50))}}
    st.put_status("a.example", doc)
    st.put_status("b.example", {**doc, "name": "b.example", "conflicts": [], "concerns": {}})
    rows = st.status_rows()
    assert [r.name for r in rows] == ["a.example", "b.example"]
    a = rows[0]
    assert (a.customer, a.plan, a.server, a.ip, a.state, a.state_reason, a.sync) == (
        "c", "p", "s1", "10.0.0.1", "active", None, "unsynced")
    assert a.concerns == doc["concerns"] and a.conflicts == doc["conflicts"] and a.created_at == clock()
    assert rows[1].created_at is None and rows[1].conflicts == [] and rows[1].concerns == {}
    extras: tuple[tuple[str, dict[str, object]], ...] = (("a.example", {}), ("b.example", {"conflicts": [], "concerns": {}}))
    streamed = list(st.iter_status_raw(drop=("access", "effective"), extract=("server", "sync"), batch=1))
    assert [(n, json.loads(t), *rest) for n, t, *rest in streamed] == [
        (n, {k: v for k, v in {**doc, "name": n, **extra}.items() if k not in ("access", "effective")},
         "s1", "unsynced")
        for n, extra in extras]
    assert [codec.loads(t) for _, t in st.iter_status_raw()] == st.get_status()
    with pytest.raises(ValueError, match="plain JSON key"):
        list(st.iter_status_raw(drop=("a') --",)))


def test_count_live_and_list_deleted(st: store.Store, clock: FakeNow) -> None:
    for name, gone in (("a.example", False), ("b.example", True), ("c.example", False)):
        st.upsert_subscription(records.SubscriptionRecord(
            name=name, customer="c", created_at=clock(), deleted_at=clock() if gone else None,
            purge_after=clock() if gone else None))
    assert st.count_live() == 2
    assert [r.name for r in st.list_deleted()] == ["b.example"]


def test_one_write_inside_a_transaction_needs_no_savepoint(st: store.Store) -> None:
    """A failed single-statement write inside a transaction leaves the rest of it alone."""
    with st.transaction():
        st.put_status("a.example", {"name": "a.example"})
        with pytest.raises(sqlite3.IntegrityError):
            st._execute("INSERT INTO status (name, doc, updated_at) VALUES (?, NULL, 'x')", ("b.example",))
        st.put_status("c.example", {"name": "c.example"})
    assert [d["name"] for d in st.get_status()] == ["a.example", "c.example"]
