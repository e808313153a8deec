"""``tenantctl move SUB --abort`` (issue 13 item 2: "a failure leaves the source serving
and the target cleaned"): the step machine of ``reconcile.move`` undoes a move stopped at
any step before its switch, the subscription placed back on the source by the real
engine (in-memory drivers), the undo's work (``Ops.abort``) a fake that records it and
can die like a SIGKILL; from ``switching`` on it is refused; a re-run converges."""

from __future__ import annotations

import pytest

from controller import model
from controller.drivers import base
from controller.model.desired import DesiredState
from controller.reconcile import engine, move_live
from controller.reconcile import move as move_mod
from controller.reconcile import status as status_mod
from controller.state import events, moves, regions
from controller.state import store as state_store

from .conftest import Clock
from .memdriver import MemDriver
from .test_move import EXAMPLES, SOURCE, SUB, TARGET, WORKED, FakeOpsThatDies, Killed


@pytest.fixture
def ds() -> DesiredState:
    return model.load_desired([EXAMPLES])


@pytest.fixture
def eng(store: state_store.Store, clock: Clock, ds: DesiredState) -> engine.Engine:
    drivers: dict[str, base.Driver] = {**engine.default_drivers(), "web": MemDriver("web"), "db": MemDriver("db")}
    e = engine.Engine(store, drivers, clock=clock)
    assert e.reconcile(ds).ok
    return e


BEFORE_SWITCH = ["started", "frozen", "backed-up", "placing", "placed", "restored", "verified"]


def _stopped_at(store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine,
                step: str) -> FakeOpsThatDies:
    """A move stopped with ``step`` done (the next step's work failed, or the process
    died), journaled by the mover, placed on the target by the engine from ``placed`` on."""
    ops = FakeOpsThatDies(eng, ds)
    mover = move_mod.Mover(store, ops, clock=clock)
    mv = moves.start(store, SUB, SOURCE, TARGET, "test", clock.now, data={"sourceIp": "127.0.12.1"})
    for s in moves.STEPS[1:moves.STEPS.index(step) + 1]:
        if s == "placed":
            assert eng.reconcile(ds, only=[SUB], force=[SUB], command="move").ok
        mv = mover._mark(mv, s)
    return ops


def _journal(store: state_store.Store) -> list[tuple[str, str]]:
    return [(e.action, str((e.data or {}).get("step"))) for e in
            events.list_events(store, subject=SUB, concern="move", limit=None)]


@pytest.mark.parametrize("step", [pytest.param(s, id=s) for s in BEFORE_SWITCH])
def test_an_abort_before_the_switch_places_back_on_the_source_and_cleans_the_target(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine, step: str) -> None:
    ops = _stopped_at(store, clock, ds, eng, step)
    placed = moves.STEPS.index(step) >= moves.STEPS.index("placing")
    gen = regions.generation(store, SUB)
    assert store.get_subscription(SUB).server == (TARGET if step not in ("started", "frozen", "backed-up", "placing")
                                                  else SOURCE)
    out = move_mod.Mover(store, ops, clock=clock, actor="test").abort(ds, SUB)
    assert out.ok and out.step == "aborted" and out.done == ["aborting", "aborted"], out
    assert ops.calls[-1] == "aborted"
    assert moves.all_moves(store) == {}
    rec = store.get_subscription(SUB)
    assert rec.server == SOURCE and set(rec.db_servers.values()) == {SOURCE}
    if placed:  # the undo's pass placed it back, fenced by a new generation
        assert ops.servers["aborted"] == SOURCE
        assert regions.generation(store, SUB) == gen + 1
    assert _journal(store)[-2:] == [("move", "aborting"), ("aborted", "aborted")]
    last = events.list_events(store, subject=SUB, action="aborted", concern="move")[-1]
    assert last.data is not None and last.data["from"] == step
    assert ("removed without a backup taken for it" in last.message) is placed, last.message
    shown = next(i for i in status_mod.items(store) if i["name"] == SUB)
    assert shown["server"] == SOURCE and not [c for c in shown["conditions"] if c["type"] == "Moving"]
    # a second abort reports it, changes nothing; a new move starts from scratch
    n = len(_journal(store))
    again = move_mod.Mover(store, ops, clock=clock).abort(ds, SUB)
    assert again.ok and again.step == "aborted" and again.done == [] and len(_journal(store)) == n
    fresh = FakeOpsThatDies(eng, ds)
    done = move_mod.Mover(store, fresh, clock=clock).move(ds, SUB, TARGET)
    assert done.ok and fresh.calls == WORKED and store.get_subscription(SUB).server == TARGET


def test_an_abort_killed_during_its_undo_converges_when_run_again(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    _stopped_at(store, clock, ds, eng, "restored")
    with pytest.raises(Killed):
        move_mod.Mover(store, FakeOpsThatDies(eng, ds, ("aborted", "after")), clock=clock).abort(ds, SUB)
    mv = moves.get(store, SUB)
    assert mv is not None and mv.step == moves.ABORTING and mv.data["abortFrom"] == "restored"
    assert move_mod.condition(mv)["reason"] == moves.ABORTING
    with pytest.raises(move_mod.CannotMove, match="is being aborted"):  # no resuming the move meanwhile
        move_mod.check(ds, store, SUB, TARGET)
    gen = regions.generation(store, SUB)
    ops = FakeOpsThatDies(eng, ds)
    out = move_mod.Mover(store, ops, clock=clock).abort(ds, SUB)
    assert out.ok and out.done == ["aborted"] and ops.calls == ["aborted"]  # the undo again, idempotent
    assert regions.generation(store, SUB) == gen  # fenced once
    assert [s for a, s in _journal(store) if a in ("move", "aborted")].count("aborting") == 1
    assert store.get_subscription(SUB).server == SOURCE and moves.all_moves(store) == {}


def test_a_failed_undo_keeps_the_move_aborting_and_says_how_to_resume(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    class FakeOpsUndoFails(FakeOpsThatDies):
        def abort(self, mv: moves.Move) -> dict[str, object]:
            raise move_live.StepFailed("tx-13 unreachable")

    _stopped_at(store, clock, ds, eng, "placed")
    out = move_mod.Mover(store, FakeOpsUndoFails(eng, ds), clock=clock).abort(ds, SUB)
    assert not out.ok and out.step == moves.ABORTING and out.error == "abort: tx-13 unreachable"
    failed = events.list_events(store, subject=SUB, action="failed", concern="move")[-1]
    assert "--abort again resumes" in failed.message
    assert move_mod.Mover(store, FakeOpsThatDies(eng, ds), clock=clock).abort(ds, SUB).ok


@pytest.mark.parametrize("step", [pytest.param(s, id=s) for s in ("switching", "switched", "removed")])
def test_an_abort_once_the_switch_began_is_refused_with_the_way_back(
        store: state_store.Store, clock: Clock, step: str) -> None:
    moves.start(store, SUB, SOURCE, TARGET, "test", clock.now)
    moves.advance(store, SUB, step, clock.now)
    before = store._fetchall("SELECT COUNT(*) FROM events")
    with pytest.raises(move_mod.CannotMove, match=f"the way back is a move back \\(tenantctl move {SUB} --to "
                                                  f"{SOURCE}, once this one is over\\)"):
        move_mod.Mover(store, FakeOpsThatDies(None, None), clock=clock).abort(None, SUB)  # type: ignore[arg-type]
    assert moves.steps(store) == {SUB: step}
    assert store._fetchall("SELECT COUNT(*) FROM events") == before


def test_target_copies_are_the_databases_placed_on_the_target_by_the_move() -> None:
    mv = moves.Move(SUB, SOURCE, TARGET, moves.ABORTING, None, None, "t", data={  # type: ignore[arg-type]
        "abortDbServers": {"crm": TARGET, "wiki": "db-1"},
        "sourceDatabases": [
            {"subscription": SUB, "db": "crm", "engine": "mariadb", "server": SOURCE, "host": "h", "port": 3306,
             "database": "saint_crm", "user": "saint_crm"},
            {"subscription": SUB, "db": "wiki", "engine": "postgresql", "server": "db-1", "host": "h", "port": 5432,
             "database": "saint_wiki", "user": "saint_wiki"}]})
    copies = move_live.target_copies(mv)
    assert [(c.db, c.server, c.database, c.password) for c in copies] == [("crm", TARGET, "saint_crm", "")]


def test_an_aborting_move_places_on_the_source_and_keeps_its_address_in_dns(
        store: state_store.Store, clock: Clock) -> None:
    moves.start(store, SUB, SOURCE, TARGET, "test", clock.now, data={"sourceIp": "127.0.12.1"})
    moves.advance(store, SUB, "restored", clock.now)
    assert moves.targets(store) == {SUB: TARGET}
    mv = moves.advance(store, SUB, moves.ABORTING, clock.now, data={"abortFrom": "restored"})
    assert moves.targets(store) == {SUB: SOURCE}
    assert moves.substitutes(store) == {SUB: "127.0.12.1"} and moves.frozen(store) == frozenset()
    cond = move_mod.condition(mv)
    assert (cond["type"], cond["reason"]) == (status_mod.MOVE_CONDITION, moves.ABORTING)
    assert f"tenantctl move {SUB} --abort` resumes" in cond["message"]
