"""Demo platforms (PLAT-3) without servers: when a demo is due on a fake clock (its cron
in its region's time zone, default minute 44), what a reset records (row, event,
status condition) with a FAKE cloner, and which snapshots a clone chooses (pure)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from effective.builder import World

from controller import model
from controller.drivers import context, naming
from controller.drivers.backup import restore, topology
from controller.reconcile import clone, demo
from controller.reconcile import status as status_mod
from controller.state import backups as ledger
from controller.state import demos
from controller.state import store as state_store

from .conftest import Clock

REF, DEMO = "ref.example.org", "demo.example.org"
PARIS = "Europe/Paris"
#: 2026-12-01 10:30 in Paris (UTC+1)
AT_1030 = dt.datetime(2026, 12, 1, 9, 30, tzinfo=dt.UTC)


def paris(hh: int, mm: int, ss: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 1, hh - 1, mm, ss, tzinfo=dt.UTC)


def _reset(at: dt.datetime, ok: bool = True) -> demos.Reset:
    return demos.Reset(DEMO, at, 3.0, ok, REF, ("abc",), None if ok else "boom", "run")


WANTED = {DEMO: demo.Wanted(DEMO, REF, "44 * * * *", PARIS)}


@pytest.mark.parametrize(("last", "now", "due"), [
    pytest.param(None, paris(10, 0), True, id="never-reset-is-due-at-once"),
    pytest.param(_reset(AT_1030), paris(10, 43, 59), False, id="10:43:59-not-yet"),
    pytest.param(_reset(AT_1030), paris(10, 44), True, id="10:44-due"),
    pytest.param(_reset(paris(10, 44, 1)), paris(11, 43), False, id="reset-at-10:44-not-again-before-11:44"),
    pytest.param(_reset(paris(10, 44, 1)), paris(13, 50), True, id="missed-hours-once"),
    pytest.param(_reset(paris(10, 50), ok=False), paris(10, 59), False, id="failed-retried-later"),
    pytest.param(_reset(paris(10, 50), ok=False), paris(11, 0), True, id="failed-retried-after-10-min"),
])
def test_a_demo_is_due_at_minute_44_in_its_regions_time_zone(last: demos.Reset | None, now: dt.datetime,
                                                             due: bool) -> None:
    assert demo.due(WANTED, {DEMO: last} if last else {}, now) == ([DEMO] if due else [])


def test_the_schedule_is_the_documents_in_the_regions_time_zone() -> None:
    w = World()
    w.regions["eu-west"] = {"timezone": "America/New_York"}
    w.sub(REF)
    w.sub(DEMO, demo={"resetFrom": REF, "schedule": "0 9 * * *"})
    wanted = demo.wanted(w.load())
    assert wanted == {DEMO: demo.Wanted(DEMO, REF, "0 9 * * *", "America/New_York")}
    last = {DEMO: _reset(dt.datetime(2026, 12, 1, 13, 0, tzinfo=dt.UTC))}  # 08:00 in New York
    assert demo.due(wanted, last, dt.datetime(2026, 12, 1, 13, 59, tzinfo=dt.UTC)) == []
    assert demo.due(wanted, last, dt.datetime(2026, 12, 1, 14, 0, tzinfo=dt.UTC)) == [DEMO]


@pytest.mark.parametrize(("item", "ready"), [
    pytest.param({"state": "active", "server": "s1", "concerns": {"web": "provisioned"}}, True, id="provisioned"),
    pytest.param({"state": "active", "server": None, "concerns": {}}, False, id="not-placed"),
    pytest.param({"state": "active", "server": "s1", "concerns": {"web": "failed"}}, False, id="web-failed"),
    pytest.param({"state": "deleted", "server": "s1", "concerns": {"web": "provisioned"}}, False, id="deleted"),
    pytest.param(None, False, id="no-status"),
])
def test_only_a_placed_and_provisioned_demo_is_reset(item: dict[str, Any] | None, ready: bool) -> None:
    assert demo.ready(item) is ready


def _item(name: str, **eff: Any) -> dict[str, Any]:
    return {"name": name, "customer": "c", "plan": "p", "addons": [], "region": "eu-west", "server": "s1",
            "ip": "127.0.0.1", "state": "active", "stateReason": None, "sync": "synced", "conflicts": [],
            "conditions": [], "concerns": {"web": "provisioned"}, "effective": eff}


class FakeCloner:
    """A FAKE clone: answers what it is told, or fails, and counts its calls."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    def __call__(self, target: str, ref: clone.Reference) -> clone.Cloned:
        self.calls.append((target, str(ref)))
        if self.fail:
            raise clone.CloneFailed(self.fail)
        return clone.Cloned(target, REF, "eu-west", ("snapfiles", "snapdb"), ("db:app", "files:webspace"), (), 2.5)


def test_a_reset_is_recorded_measured_and_shown_in_status(store: state_store.Store, clock: Clock) -> None:
    store.put_status(DEMO, _item(DEMO, sandbox={"kind": "demo", "source": REF, "schedule": "44 * * * *"}))
    assert status_mod.items(store)[0]["conditions"][-1]["reason"] == "NotResetYet"
    ok = FakeCloner()
    row = demo.Resetter(store, None, clock=clock, actor="cli:ops", cloner=ok).reset(DEMO, REF)
    assert (row.ok, row.source, row.snapshots, row.at, row.last_ok_at) == (True, REF, ("snapfiles", "snapdb"),
                                                                           clock.now, clock.now)
    assert ok.calls == [(DEMO, REF)] and row.seconds >= 0
    item = status_mod.items(store)[0]
    assert item["conditions"][-1]["type"] == "DemoReset" and item["conditions"][-1]["status"] == "True"
    assert item["demo"]["ok"] and item["demo"]["snapshots"] == ["snapfiles", "snapdb"]

    first = clock.now
    clock.now += dt.timedelta(hours=1)
    bad = demo.Resetter(store, None, clock=clock, cloner=FakeCloner("no snapshot latest in eu-west")).reset(
        DEMO, "snapshot:0123abcd")
    assert not bad.ok and bad.error == "no snapshot latest in eu-west" and bad.source == "snapshot:0123abcd"
    assert bad.last_ok_at == first  # the last success is kept
    item = next(status_mod.stream(store))
    cond = item["conditions"][-1]
    assert (cond["type"], cond["status"], cond["reason"]) == ("DemoReset", "False", "ResetFailed")
    assert "no snapshot latest" in cond["message"] and item["demo"]["lastSuccess"] == first.isoformat()


def test_every_reset_is_an_event_with_its_duration_and_snapshots(store: state_store.Store, clock: Clock) -> None:
    demo.Resetter(store, None, clock=clock, cloner=FakeCloner()).reset(DEMO, REF)
    demo.Resetter(store, None, clock=clock, cloner=FakeCloner("boom")).reset(DEMO, REF)
    rows = store._fetchall("SELECT action, subject, concern, data FROM events WHERE concern = 'demo' ORDER BY id")
    assert [(a, s, c) for a, s, c, _ in rows] == [("demo-reset", DEMO, "demo"), ("failed", DEMO, "demo")]
    data = json.loads(rows[0][3])
    assert data["snapshots"] == ["snapfiles", "snapdb"] and data["source"] == REF and "seconds" in data


def test_due_demos_are_reset_once_when_ready(store: state_store.Store, clock: Clock) -> None:
    w = World()
    w.sub(REF)
    w.sub(DEMO, demo={"resetFrom": REF})
    ds = w.load()
    fake = FakeCloner()
    r = demo.Resetter(store, None, clock=clock, cloner=fake)
    assert r.due(ds) == [] and fake.calls == []  # no status yet: not placed
    store.put_status(DEMO, _item(DEMO))
    assert [x.subscription for x in r.due(ds)] == [DEMO]
    assert r.due(ds) == [] and len(fake.calls) == 1  # reset now: not due again before the next :44


class Blocked:
    """What a cloner meets while another process fills the target: the real work lock
    (``state.locks.exclusive``), held here through a second open file."""

    def __call__(self, target: str, ref: clone.Reference) -> clone.Cloned:
        raise clone.Busy(f"a reset or refresh of {target} is under way in another process")


def test_a_demo_another_process_resets_is_left_to_it_and_nothing_is_recorded(store: state_store.Store,
                                                                             clock: Clock) -> None:
    w = World()
    w.sub(REF)
    w.sub(DEMO, demo={"resetFrom": REF})
    store.put_status(DEMO, _item(DEMO))
    r = demo.Resetter(store, None, clock=clock, cloner=Blocked())
    with pytest.raises(clone.Busy):
        r.reset(DEMO, REF)
    assert r.due(w.load()) == []  # the scheduler skips it
    assert demos.all_resets(store) == {}
    assert store._fetchall("SELECT action FROM events WHERE concern = 'demo'") == []


class NoPool:
    """A pool that must not be used: ``clone`` refuses before reaching any server."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the pool was used ({name}) while the target was locked")


def test_one_fill_of_a_target_at_a_time_across_processes(store: state_store.Store) -> None:
    from controller.state import locks

    store.put_status(DEMO, _item(DEMO))
    with (locks.exclusive(clone.lock_path(store, DEMO), "held by the test"),
          pytest.raises(clone.Busy, match=f"a reset or refresh of {DEMO} is under way")):
        clone.clone(store, NoPool(), DEMO, clone.Reference(REF, None))
    # released: the next one gets past the lock (and fails later, on this test's pool)
    with pytest.raises(AssertionError, match="the pool was used"):
        clone.clone(store, NoPool(), DEMO, clone.Reference(REF, None))


def test_a_sandbox_has_no_backup_condition(store: state_store.Store) -> None:
    store.put_status(DEMO, {**_item(DEMO, sandbox={"kind": "copy", "source": REF}),
                            "concerns": {"web": "provisioned", "backup": "provisioned"}})
    store.put_status(REF, {**_item(REF), "concerns": {"web": "provisioned", "backup": "provisioned"}})
    got = {i["name"]: [c["type"] for c in i["conditions"]] for i in status_mod.items(store)}
    assert got == {DEMO: [], REF: ["BackupReady"]}


# --- which snapshots a clone restores (pure) --------------------------------------------------


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> topology.Topology:
    ds = model.load_desired([EXAMPLES])
    return topology.Topology.of(context.Context.of(ds, tmp_path_factory.mktemp("state")))


def _snap(sid: str, at: dt.datetime, kind: str, name: str, sub: str = REF, region: str = "eu-west"
          ) -> ledger.Snapshot:
    return ledger.Snapshot(region=region, id=sid, subscription=sub, server="eu-west-1", kind=kind, name=name,
                           taken_at=at)


def _target(dbs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": DEMO, "server": "eu-west-1", "region": "eu-west", "state": "active",
            "effective": {"hosting": {"enabled": True}, "backup": {"content": "none"}, "databases": dbs}}


T0 = dt.datetime(2026, 12, 1, 9, 44, tzinfo=dt.UTC)
SNAPS = [_snap("files2", T0, "files", "webspace"), _snap("db2", T0, "db", naming.database(REF, "app")),
         _snap("other", T0, "files", "webspace", sub="other.example.org"),
         _snap("files1", T0 - dt.timedelta(days=1), "files", "webspace"),
         _snap("db1", T0 - dt.timedelta(days=1), "db", naming.database(REF, "app")),
         _snap("settings1", T0 - dt.timedelta(days=1), "settings", "settings")]


def test_a_clone_maps_the_sources_parts_onto_the_targets_exactly(topo: topology.Topology) -> None:
    target = _target([{"name": "app", "engine": "mariadb", "server": None},
                      {"name": "extra", "engine": "postgresql", "server": None}])
    pick = restore.clone(topo, SNAPS, REF, target)
    assert [s.id for s in pick.snapshots] == ["files2", "db2"] and pick.missing == ("db:extra",)
    files, db = pick.parts["eu-west-1"]
    assert (files.kind, files.path, files.origin, files.user, files.exact, files.snapshot) == (
        "files", naming.home(DEMO), naming.home(REF), naming.system_user(DEMO), True, "files2")
    assert (db.name, db.origin, db.engine, db.exact) == (naming.database(DEMO, "app"), naming.database(REF, "app"),
                                                         "mariadb", True)
    older = restore.clone(topo, SNAPS, REF, target, at=T0 - dt.timedelta(hours=1))
    assert [s.id for s in older.snapshots] == ["files1", "db1"]


def test_a_pinned_snapshot_names_its_subscription_and_backup_run() -> None:
    assert restore.pinned(SNAPS, "db1").taken_at == T0 - dt.timedelta(days=1)
    assert restore.pinned(SNAPS, "other").subscription == "other.example.org"
    with pytest.raises(restore.NothingToRestore, match="no snapshot 'nosuch'"):
        restore.pinned(SNAPS, "nosuch")
    with pytest.raises(restore.NothingToRestore, match="ambiguous"):
        restore.pinned(SNAPS, "db")


@pytest.mark.parametrize(("snaps", "target", "message"), [
    pytest.param([], _target([]), "has no backup in any region", id="no-backup"),
    pytest.param(SNAPS, {**_target([]), "server": None}, "not placed", id="not-placed"),
])
def test_a_clone_without_anything_to_restore_changes_nothing(topo: topology.Topology, snaps: list[ledger.Snapshot],
                                                              target: dict[str, Any], message: str) -> None:
    with pytest.raises(restore.NothingToRestore, match=message):
        restore.clone(topo, snaps, REF, target)


@pytest.mark.parametrize(("text", "sub", "snap"), [
    pytest.param(REF, REF, None, id="subscription"),
    pytest.param("snapshot:0123abcd", None, "0123abcd", id="snapshot"),
])
def test_a_reference_is_a_subscription_or_a_snapshot(text: str, sub: str | None, snap: str | None) -> None:
    ref = clone.Reference.parse(text)
    assert (ref.subscription, ref.snapshot, str(ref)) == (sub, snap, text)


def test_the_scheduler_forgets_demos_that_are_no_more_and_resets_nothing_not_due(
        store: state_store.Store, clock: Clock) -> None:
    import threading

    w = World()
    w.sub(REF)
    ds = w.load()
    demo.Resetter(store, None, clock=clock, cloner=FakeCloner()).reset(DEMO, REF)
    sched = demo.Scheduler(store, lambda: ds, clock, threading.Event())
    assert sched.tick() == [] and demos.all_resets(store) == {}
    assert demo.Scheduler(store, lambda: None, clock, threading.Event()).tick() == []


def test_an_unexpected_error_is_a_recorded_failure_too(store: state_store.Store, clock: Clock) -> None:
    def broken(target: str, ref: clone.Reference) -> clone.Cloned:
        raise OSError("connection reset")
    row = demo.Resetter(store, None, clock=clock, cloner=broken).reset(DEMO, REF)
    assert not row.ok and row.error == "OSError: connection reset"
    assert demo.due({DEMO: WANTED[DEMO]}, demos.all_resets(store), clock.now + dt.timedelta(minutes=1)) == []


def test_a_due_demo_without_any_backup_of_its_reference_fails_recorded(store: state_store.Store,
                                                                        clock: Clock) -> None:
    import threading

    w = World()
    w.sub(REF)
    w.sub(DEMO, demo={"resetFrom": REF})
    ds = w.load()
    store.put_status(DEMO, _item(DEMO, sandbox={"kind": "demo", "source": REF, "schedule": "44 * * * *"}))
    (done,) = demo.Scheduler(store, lambda: ds, clock, threading.Event()).tick()  # the real cloner, no server
    assert not done.ok and f"{REF} has no backup in any region" in (done.error or "")
    assert status_mod.items(store)[0]["conditions"][-1]["reason"] == "ResetFailed"
