"""The engine's contract with drivers: one batch per server and concern, fingerprints of
what was applied, backoff kept in the store, conditions, crash safety."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller import model
from controller.drivers import base
from controller.reconcile import engine
from controller.state import events
from controller.state import store as state_store

from .conftest import T0, Clock
from .memdriver import MemDriver

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"




@pytest.fixture
def ds() -> model.DesiredState:
    return model.load_desired([EXAMPLES])






def drivers_with(web: MemDriver) -> dict[str, base.Driver]:
    d = engine.default_drivers()
    d["web"] = web
    return d


def test_one_batch_per_server_and_a_noop_second_pass(
    ds: model.DesiredState, store: state_store.Store, clock: Clock
) -> None:
    web = MemDriver("web")
    eng = engine.Engine(store, drivers_with(web), clock=clock)
    report = eng.reconcile(ds)
    assert report.ok
    servers = [s for s, _ in web.batches]
    assert len(servers) == len(set(servers)), "a server got more than one web batch in a pass"
    placed = {n for n, s in report.planned.subscriptions.items() if s.placement.server}
    assert {n for _, names in web.batches for n in names} == placed
    status = {d["name"]: d for d in store.get_status()}
    assert status["hangar.example.com"]["concerns"]["web"] == "provisioned"
    assert status["hangar.example.com"]["concerns"]["php"] == "not provisioned"
    web.batches.clear()
    again = eng.reconcile(ds)
    assert web.batches == [] and not again.planned.has_changes


def test_failure_backs_off_in_the_store_and_recovers(
    ds: model.DesiredState, store: state_store.Store, clock: Clock
) -> None:
    web = MemDriver("web")
    web.fail["hangar.example.com"] = "nginx -t: unexpected ';'"
    report = engine.Engine(store, drivers_with(web), clock=clock).reconcile(ds)
    assert report.failed == {"hangar.example.com": ["web: nginx -t: unexpected ';'"]}
    cond = {c.type: c for c in store.get_conditions("hangar.example.com")}["WebReady"]
    assert (cond.status, cond.reason) == ("False", "Failed") and "unexpected" in cond.message
    # a new engine (a restart) still backs off: the backoff lives in the store
    web.batches.clear()
    deferred = engine.Engine(store, drivers_with(web), clock=clock).reconcile(ds)
    assert "hangar.example.com/web" in deferred.deferred and web.batches == []
    assert deferred.retry_at["hangar.example.com"] > clock.now
    clock.now += dt.timedelta(minutes=10)
    del web.fail["hangar.example.com"]
    recovered = engine.Engine(store, drivers_with(web), clock=clock).reconcile(ds)
    assert recovered.ok and web.batches == [("eu-west-2", ["hangar.example.com"])]
    assert store.get_backoff("hangar.example.com/web") is None
    cond = {c.type: c for c in store.get_conditions("hangar.example.com")}["WebReady"]
    assert cond.status == "True" and cond.last_transition == clock.now


def test_driver_errors_are_mapped_to_failed_results(
    ds: model.DesiredState, store: state_store.Store, clock: Clock
) -> None:
    from controller import errors

    class Broken(MemDriver):
        def apply(self, server, changes):  # type: ignore[no-untyped-def]
            raise errors.TemporaryError("ssh: connection refused", delay=5)

    report = engine.Engine(store, drivers_with(Broken("web")), clock=clock).reconcile(ds)
    assert report.failed and all(m == ["web: ssh: connection refused"] for m in report.failed.values())
    rec = store.get_backoff("hangar.example.com/web")
    assert rec is not None and rec.next_attempt - clock.now >= dt.timedelta(seconds=5), "the delay hint was lost"


CRASHER = """
import sys, datetime as dt
from pathlib import Path
sys.path.insert(0, {tests!r})
from controller import model
from controller.reconcile import engine
from controller.state import store as state_store
from reconcile.memdriver import MemDriver
web = MemDriver("web", Path({log!r}))
web.kill_after_batches = 2
d = engine.default_drivers(); d["web"] = web
st = state_store.Store(Path({db!r}))
engine.Engine(st, d, clock=lambda: dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)).reconcile(
    model.load_desired([{examples!r}]))
"""


def test_sigkill_mid_apply_then_rerun_converges_without_duplicates(ds: model.DesiredState, tmp_path: Path) -> None:
    db, log = tmp_path / "crash.db", tmp_path / "web.log"
    code = CRASHER.format(tests=str(ROOT / "tests"), log=str(log), db=str(db), examples=str(EXAMPLES))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == -9, proc.stderr  # killed in the middle of the web batches
    assert len(log.read_text().splitlines()) == 2
    with state_store.Store(db) as st:
        # the killed pass is visible as a run that never finished (OPS-5)
        unfinished = st.list_runs(unfinished_only=True)
        assert len(unfinished) == 1 and unfinished[0].finished_at is None
        web = MemDriver("web")
        report = engine.Engine(st, drivers_with(web), clock=lambda: T0).reconcile(ds)
        assert report.ok
        assert not engine.Engine(st, drivers_with(web), clock=lambda: T0).plan(ds).has_changes
        creates = [e.subject for e in events.list_events(st, limit=10_000)
                   if e.action == "create" and e.concern is None]
        assert sorted(creates) == sorted(set(creates)) and len(creates) == 14
        assert len(st.list_subscriptions()) == 14
        placements = {r.name: (r.server, r.ip) for r in st.list_subscriptions()}
    # the re-run kept every placement decided before the crash
    first = engine.plan(ds, T0, None)
    assert placements == {n: (s.placement.server, s.placement.ip) for n, s in first.subscriptions.items()}
