"""The operator's leader does the background work of ``tenantctl run``
(``controller.reconcile.background``), against kmock, a MOCK Kubernetes API server: the
backup schedule, the usage collection and the demos' resets on threads that run while
it leads and end with its lead; the moves that are due on its resync timer's pass.
Without real drivers (the harness's fakes; ``TENANTCTL_DRIVERS=none``) none of it runs.

What reaches the servers cannot run here (SSH, restic, the access logs): the backup
schedule's and the usage collection's ticks are replaced by recorders of what they were
given, on which thread. The rest is real and seen in the state store: the demos'
scheduler drops the row of a subscription that is no demo any more (the examples have
no demo: no server reached), and ``move.run_due`` settles a removed move whose document
names the target's region (row dropped, event ``moved``; no server reached).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import pytest
from operator_harness import NS, T0, example_resources, seed, until

from controller import model
from controller.drivers.usage import schedule as usage_schedule
from controller.model.desired import DesiredState
from controller.reconcile import background, backups, demo, move
from controller.reconcile import engine as engine_mod
from controller.state import demos, events, moves
from controller.state import store as state_store

pytestmark = pytest.mark.asyncio

GONE_DEMO = "was-a-demo.example.org"
#: a move inside the subscription's region (eu-west), its source removed already
SUB, SOURCE, TARGET = "mermoz.example.org", "eu-west-2", "eu-west-1"


class Ticks:
    """Stand-ins for the ticks that reach servers: each records its scheduler's getter
    of the desired state, what that gave, and the thread it ran on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, list[tuple[Any, DesiredState | None, threading.Thread]]] = {"backups": [], "usage": []}

    def recorder(self, what: str) -> Any:
        def tick(scheduler: Any) -> None:
            with self.lock:
                self.seen[what].append((scheduler.desired, scheduler.desired(), threading.current_thread()))
        return tick

    def loaded(self, what: str) -> list[DesiredState]:
        with self.lock:
            return [ds for _get, ds, _t in self.seen[what] if ds is not None]

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.seen.values())


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> Ticks:
    t = Ticks()
    monkeypatch.setattr(backups.Scheduler, "tick", t.recorder("backups"))
    monkeypatch.setattr(usage_schedule.Scheduler, "tick", t.recorder("usage"))
    monkeypatch.setattr(backups, "TICK", 0.1)  # read when a scheduler is made
    monkeypatch.setattr(demo, "TICK", 0.1)
    monkeypatch.setattr(usage_schedule, "FIRST", 0.1)
    return t


def micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state_db(tmp_path: Path) -> state_store.Store:
    """The replicas' state store (the ``replicas`` fixture's state directory), before they start."""
    (tmp_path / "state").mkdir(exist_ok=True)
    return state_store.Store(tmp_path / "state" / "state.db", now=lambda: T0)


def removed_move(tmp_path: Path) -> None:
    store = state_db(tmp_path)
    try:
        moves.start(store, SUB, SOURCE, TARGET, "test", T0 - dt.timedelta(days=9))
        moves.advance(store, SUB, "removed", T0 - dt.timedelta(days=1))
    finally:
        store.close()


async def test_the_leader_runs_the_background_work_on_its_desired_state_until_it_stops(
        api: kmock_lib.KubernetesEmulator, replicas: Any, ticks: Ticks, tmp_path: Path) -> None:
    removed_move(tmp_path)
    store = state_db(tmp_path)
    demos.record(store, GONE_DEMO, T0 - dt.timedelta(hours=1), seconds=1.0, error=None, source="ref.example.org",
                 snapshots=[], actor="test")
    store.close()
    seed(api, example_resources())
    a = replicas("replica-a", background=True)
    await until(lambda: a.passes, what="a's first pass")
    rec = a.control.reconciler
    # the backups tick every 0.1 s here: one comes after the first pass loaded the desired
    # state; the usage collection ticks once (0.1 s after the start, then every 300 s)
    await until(lambda: ticks.loaded("backups") and ticks.seen["usage"], what="ticks, one with a desired state")
    assert all(get == rec.desired for seen in ticks.seen.values() for get, _ds, _t in seen)  # the worker's
    assert sorted(ticks.loaded("backups")[-1].subscriptions) == list(a.passes[0].subscriptions)
    # the timer's pass (the first) did the moves that are due
    assert moves.get(rec.store, SUB) is None
    (moved,) = events.list_events(rec.store, subject=SUB, action="moved", concern="move")
    assert moved.actor == "operator" and "substitute period" in moved.message
    await until(lambda: GONE_DEMO not in demos.all_resets(rec.store), what="the gone demo's row dropped")
    threads = a.control.background
    assert threads is not None
    assert sorted(t.name for t in threads.started() if t.is_alive()) == [
        "tenantctl-backups", "tenantctl-demos", "tenantctl-usage"]
    a.control.stop()
    await a.join()
    assert not threads.alive()
    assert {t.name for seen in ticks.seen.values() for _get, _ds, t in seen} == {"tenantctl-backups", "tenantctl-usage"}
    after = ticks.count()
    await asyncio.sleep(0.3)  # three backup ticks' worth
    assert ticks.count() == after


async def test_a_lost_lease_ends_the_background_work(
        api: kmock_lib.KubernetesEmulator, replicas: Any, ticks: Ticks) -> None:
    seed(api, example_resources())
    a = replicas("replica-a", background=True)
    await until(lambda: a.passes and ticks.count(), what="a's first pass, its schedulers ticking")
    threads = a.control.background
    assert threads is not None and threads.alive()
    # another replica holds the Lease and renews it (again and again: a renewal of a's
    # read before a PATCH could land after it, the MOCK API server taking any write)
    deadline = time.monotonic() + 20.0
    while a.result is None and time.monotonic() < deadline:
        async with api.patch(f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/tenantctl-operator",
                             json={"spec": {"holderIdentity": "replica-z", "renewTime": micro(dt.datetime.now(dt.UTC))}},
                             headers={"Content-Type": "application/merge-patch+json"}) as resp:
            assert resp.status < 300
        await asyncio.sleep(0.2)
    assert await a.returned(timeout=1.0) == 1
    await until(lambda: not threads.alive(), timeout=5.0, what="the background threads ended")


async def test_without_real_drivers_the_leader_does_no_background_work(
        api: kmock_lib.KubernetesEmulator, replicas: Any, ticks: Ticks, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    removed_move(tmp_path)
    seed(api, example_resources())
    a = replicas("replica-a")  # the harness's fake drivers: as ``tenantctl run`` given no wiring
    await until(lambda: a.passes, what="a's first pass (the timer's)")
    assert a.control.background is None
    assert moves.get(a.control.reconciler.store, SUB) is not None
    assert ticks.count() == 0
    # the timer's pass still took the state store's daily copy (it reaches no server)
    assert [p.name for p in (tmp_path / "state" / "backups").iterdir()] == [f"state-{T0:%Y%m%dT%H%M%SZ}.db"]
    # the one place that decides it for both front-ends: real drivers, not switched off
    assert background.wanted(True) and not background.wanted(False)
    monkeypatch.setenv("TENANTCTL_DRIVERS", "none")
    assert not background.wanted(True)


async def test_a_failure_of_the_due_moves_is_recorded_and_never_stops_the_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: Any, **_k: Any) -> None:
        raise OSError("no route to host")

    monkeypatch.setattr(move, "run_due", broken)
    store = state_db(tmp_path)
    try:
        eng = engine_mod.Engine(store, clock=lambda: T0)
        background.on_timer(model.load_desired([Path(__file__).resolve().parents[2] / "examples"]), store, eng, actor="operator", real_drivers=True)
        (failed,) = events.list_events(store, subject="*", action="failed", concern="move")
        assert failed.actor == "operator" and "OSError: no route to host" in failed.message
        assert len(list((tmp_path / "state" / "backups").glob("state-*.db"))) == 1  # the copy came first
    finally:
        store.close()
