"""Moves that wait for the maintenance window (OPS-2, issue 13 item 5) and the metric of
moves (issue 13 item 2): a move recorded outside the window is ``scheduled`` and started
by ``start_due`` (what ``tenantctl run`` calls) only once the windows open, on a fake
clock; ``tenantctl_subscription_moves{step}`` counts what ``status`` shows. The engine
runs with in-memory drivers; the steps' work is the recording fake of test_move."""

from __future__ import annotations

import collections
import datetime as dt
import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller import metrics, model
from controller.drivers import base
from controller.model.desired import DesiredState
from controller.reconcile import engine
from controller.reconcile import move as move_mod
from controller.reconcile import status as status_mod
from controller.state import events, moves
from controller.state import store as state_store

from .conftest import Clock
from .memdriver import MemDriver
from .test_move import EXAMPLES, SOURCE, SUB, TARGET, WORKED, FakeOpsThatDies

#: eu-west's window: Monday 22:00-23:00 in Paris, 21:00-22:00 UTC in winter
WINDOW_OPENS = dt.datetime(2026, 11, 23, 21, 0, tzinfo=dt.UTC)


@pytest.fixture
def ds(tmp_path: Path) -> DesiredState:
    shutil.copytree(EXAMPLES, tmp_path / "desired")
    path = tmp_path / "desired" / "regions-servers.yaml"
    text = path.read_text()
    old = "metadata: {name: eu-west}\nspec:\n  timezone: Europe/Paris\n"
    assert old in text
    path.write_text(text.replace(old, old + '  maintenance: {window: "MON 22:00-23:00"}\n'))
    return model.load_desired([tmp_path / "desired"])


@pytest.fixture
def eng(store: state_store.Store, clock: Clock, ds: DesiredState) -> engine.Engine:
    drivers: dict[str, base.Driver] = {**engine.default_drivers(), "web": MemDriver("web"), "db": MemDriver("db")}
    e = engine.Engine(store, drivers, clock=clock)
    assert e.reconcile(ds).ok
    return e


def test_a_move_outside_the_window_is_scheduled_then_started_when_it_opens(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    assert clock.now < WINDOW_OPENS - dt.timedelta(days=1)  # Sunday noon UTC
    waits = move_mod.waiting(ds, store, SOURCE, TARGET, clock.now)
    assert waits == ("eu-west: the maintenance window (MON 22:00-23:00, every week, Europe/Paris): next at "
                     "2026-11-23T21:00Z")
    ops = FakeOpsThatDies(eng, ds)
    mover = move_mod.Mover(store, ops, clock=clock, actor="cli:ops")
    out = mover.schedule(ds, SUB, TARGET, waits, substitute_days=3)
    assert out.step == moves.SCHEDULED and out.ok
    assert mover.schedule(ds, SUB, TARGET, waits).step == moves.SCHEDULED  # again: nothing new
    assert [e.message for e in events.list_events(store, subject=SUB, concern="move")] == [
        f"move {SOURCE} -> {TARGET}: scheduled, waits for {waits} (OPS-2)"]
    cond = move_mod.condition(moves.get(store, SUB))  # type: ignore[arg-type]
    assert cond["reason"] == moves.SCHEDULED and "next at 2026-11-23T21:00Z" in cond["message"]
    assert eng.reconcile(ds).ok and store.get_subscription(SUB).server == SOURCE  # type: ignore[union-attr]

    def due(mv: moves.Move) -> str | None:
        return move_mod.waiting(ds, store, mv.source, mv.target, clock.now)

    for at in (WINDOW_OPENS - dt.timedelta(minutes=1), WINDOW_OPENS + dt.timedelta(hours=1)):  # before, after
        clock.now = at
        assert mover.start_due(ds, due) == [] and ops.calls == []
        assert moves.steps(store) == {SUB: moves.SCHEDULED}
    clock.now = WINDOW_OPENS + dt.timedelta(days=7, minutes=5)  # next Monday, inside
    (started,) = mover.start_due(ds, due)
    assert started.ok and started.step == "switched" and ops.calls == WORKED
    assert started.substitute_until == clock.now + dt.timedelta(days=3)
    assert store.get_subscription(SUB).server == TARGET  # type: ignore[union-attr]
    assert [(e.data or {}).get("step") for e in events.list_events(store, subject=SUB, concern="move")][:3] == [
        moves.SCHEDULED, "started", "frozen"]
    assert mover.start_due(ds, due) == []


def test_a_scheduled_move_that_can_no_longer_start_stays_scheduled_and_says_why(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    mover = move_mod.Mover(store, FakeOpsThatDies(eng, ds), clock=clock)
    mover.schedule(ds, SUB, TARGET, "a window")
    del ds.servers[TARGET]  # the target left the desired state meanwhile
    (out,) = mover.start_due(ds, lambda _mv: None)
    assert not out.ok and f"unknown server '{TARGET}'" in (out.error or "")
    assert moves.steps(store) == {SUB: moves.SCHEDULED}
    assert "cannot start" in events.list_events(store, subject=SUB, action="failed", concern="move")[-1].message


def _exposed(m: metrics.Metrics, family: str) -> dict[str, float]:
    fams = {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}
    return {s.labels["step"]: s.value for s in fams[family].samples}


def test_the_moves_metric_counts_what_status_shows(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    """Moves at several steps (and one aborted, gone): the gauge by step equals the
    steps of the ``move`` objects ``status`` shows, and the step age is the oldest's."""
    subs = sorted(ds.subscriptions)
    at = {subs[0]: "scheduled", subs[1]: "frozen", subs[2]: "frozen", subs[3]: "switched", subs[4]: moves.ABORTING}
    for sub, step in at.items():
        moves.start(store, sub, SOURCE, TARGET, "test", clock.now,
                    step=moves.SCHEDULED if step == moves.SCHEDULED else "started")
        if step != moves.SCHEDULED:
            moves.advance(store, sub, step, clock.now)
        clock.now += dt.timedelta(minutes=10)
    m = metrics.Metrics()
    m.set_moves(moves.counts(store), moves.ages(store, clock.now))
    shown = collections.Counter(i["move"]["step"] for i in status_mod.items(store) if "move" in i)
    got = _exposed(m, "tenantctl_subscription_moves")
    assert set(got) == set(moves.ALL_STEPS)
    assert {k: v for k, v in got.items() if v} == dict(shown) == {
        "scheduled": 1, "frozen": 2, "switched": 1, moves.ABORTING: 1}
    ages = _exposed(m, "tenantctl_subscription_move_step_seconds")
    assert ages["frozen"] == 40 * 60 and ages["scheduled"] == 50 * 60 and ages["placed"] == 0
