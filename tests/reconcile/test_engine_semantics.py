"""The engine tells the truth (issue 8 points 1-2, issue 7 points 3-4, 6): a driver's
retry hint is honoured, a permanent failure waits for new inputs, drift is repaired
through the one reconcile path (status, conditions, metrics and plan agree), tls waits
for a failed dns of the same pass, mass deletions are held, replaced servers are
re-ensured, every change is in the audit log with its run."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller import errors, metrics, model
from controller.drivers import base, identity
from controller.reconcile import engine, guard
from controller.state import events
from controller.state import store as state_store

from .conftest import T0, Clock
from .memdriver import MemDriver

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HANGAR = "hangar.example.com"








@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of examples/ that a test may edit."""
    dest = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dest)
    return dest


def load(path: Path) -> model.DesiredState:
    return model.load_desired([path])


def drivers(**overrides: base.Driver) -> dict[str, base.Driver]:
    d = engine.default_drivers()
    d.update(overrides)
    return d


class Raising(MemDriver):
    """Raises the given error for every batch (a driver whose server is down)."""

    def __init__(self, concern: str, exc: Exception) -> None:
        super().__init__(concern)
        self.exc = exc

    def apply(self, server: str | None, changes: Sequence[base.Change]) -> list[base.Result]:
        self.batches.append((server, [c.name for c in changes]))
        raise self.exc


class Permanent(MemDriver):
    def apply(self, server: str | None, changes: Sequence[base.Change]) -> list[base.Result]:
        self.batches.append((server, [c.name for c in changes]))
        return [base.Result(c.name, "failed", "refused: name not allowed", permanent=True)
                if c.name in self.fail else base.Result(c.name, "provisioned") for c in changes]


class Drifting(MemDriver):
    """A drift-aware in-memory driver: ``lost`` names drifted on their server."""

    def __init__(self, concern: str) -> None:
        super().__init__(concern)
        self.lost: dict[str, str] = {}

    def drifted(self, server: str | None, changes: Sequence[base.Change]) -> dict[str, str]:
        return {c.name: self.lost[c.name] for c in changes if c.name in self.lost}


class FakeProbe(identity.Probe):
    """A FAKE identity probe (no SSH): the markers are what the test says."""

    def __init__(self, generations: Mapping[str, str]) -> None:
        self.generations = dict(generations)

    def probe(self, servers: Any) -> identity.Probed:
        return identity.Probed(generations={s: g for s, g in self.generations.items() if s in servers})

    def close(self) -> None:
        pass


def test_a_temporary_errors_delay_hint_is_honoured(store: state_store.Store, clock: Clock) -> None:
    ds = load(EXAMPLES)
    web = Raising("web", errors.TemporaryError("ssh: connection refused", delay=5.0))
    report = engine.Engine(store, drivers(web=web), clock=clock).reconcile(ds)
    assert report.failed
    rec = store.get_backoff(f"{HANGAR}/web")
    assert rec is not None and not rec.permanent
    assert rec.next_attempt - store.now() == pytest.approx(dt.timedelta(seconds=5.0), abs=dt.timedelta(seconds=1))
    # the next attempt is the later of the hint and the formula: the 4th failure waits 4 s
    # by the formula (0.5 * 2**3) but the hint says 5 s
    assert report.retry_at[HANGAR] == rec.next_attempt


def test_a_result_retry_after_is_a_floor_not_a_ceiling(store: state_store.Store, clock: Clock) -> None:
    ds = load(EXAMPLES)
    web = Raising("web", errors.TemporaryError("busy", delay=None))
    eng = engine.Engine(store, drivers(web=web), clock=clock)
    eng.reconcile(ds)
    first = store.get_backoff(f"{HANGAR}/web")
    assert first is not None and first.failures == 1
    clock.now = first.next_attempt + dt.timedelta(seconds=1)
    eng.reconcile(ds)
    second = store.get_backoff(f"{HANGAR}/web")
    assert second is not None and second.failures == 2
    # exponential: the second wait is twice the first
    assert (second.next_attempt - clock.now) == 2 * (first.next_attempt - T0)


def test_a_permanent_failure_waits_for_new_inputs(store: state_store.Store, clock: Clock, examples: Path) -> None:
    web = Permanent("web")
    web.fail[HANGAR] = "x"
    eng = engine.Engine(store, drivers(web=web), clock=clock)
    eng.reconcile(load(examples))
    assert store.get_backoff(f"{HANGAR}/web").permanent  # type: ignore[union-attr]
    web.batches.clear()
    clock.now += dt.timedelta(days=3)  # no timer retries it
    report = eng.reconcile(load(examples))
    assert f"{HANGAR}/web" in report.held and not any(HANGAR in names for _, names in web.batches)
    # an edit of its document (new inputs for web: one more site) is tried at once
    subs = examples / "subscriptions.yaml"
    text = subs.read_text()
    anchor = "  expires: 2099-12-31\n  databases:\n    - {name: hangar, engine: mariadb}"
    assert anchor in text
    subs.write_text(text.replace(anchor, anchor.replace("  databases:", "  sites: [{name: blog}]\n  databases:")))
    web.batches.clear()
    del web.fail[HANGAR]
    report = eng.reconcile(load(examples))
    assert any(HANGAR in names for _, names in web.batches), "new inputs were not tried"
    assert store.get_backoff(f"{HANGAR}/web") is None


def test_a_failed_repair_shows_in_status_conditions_metrics_and_plan_alike(
    store: state_store.Store, clock: Clock
) -> None:
    ds = load(EXAMPLES)
    web = Drifting("web")
    eng = engine.Engine(store, drivers(web=web), clock=clock)
    assert eng.reconcile(ds).ok
    web.lost[HANGAR] = "vhost missing"
    found = eng.resync(ds)
    assert found == {HANGAR: {"web": "vhost missing"}}
    # marked, not repaired behind the engine's back: plan shows the repair to come
    assert "update:web" in eng.plan(ds).actions[HANGAR]
    web.fail[HANGAR] = "nginx -t failed"
    report = eng.reconcile(ds)
    assert report.failed == {HANGAR: ["web: nginx -t failed"]}
    doc = {d["name"]: d for d in store.get_status()}[HANGAR]
    cond = {c.type: c for c in store.get_conditions(HANGAR)}["WebReady"]
    summary = metrics.summarise(store.get_status())
    assert doc["concerns"]["web"] == "failed"
    assert cond.status == "False"
    assert summary.concerns[("web", "failed")] == 1
    assert "update:web" in eng.plan(ds).actions[HANGAR], "a failed repair must stay planned"
    drift_events = [e for e in events.list_events(store, limit=10_000) if e.action == "drift"]
    assert [(e.subject, e.concern) for e in drift_events] == [(HANGAR, "web")]


def test_drift_is_repaired_even_while_another_concern_keeps_failing(store: state_store.Store, clock: Clock) -> None:
    ds = load(EXAMPLES)
    web, tls = Drifting("web"), MemDriver("tls")
    tls.fail[HANGAR] = "CA says no"
    eng = engine.Engine(store, drivers(web=web, tls=tls), clock=clock)
    eng.reconcile(ds)
    assert eng.plan(ds).actions[HANGAR], "tls keeps failing: the subscription has pending work"
    web.lost[HANGAR] = "web space missing"
    eng.resync(ds)
    web.batches.clear()
    eng.reconcile(ds)
    assert any(HANGAR in names for _, names in web.batches), "the web space was not re-created"


def test_tls_is_not_tried_when_dns_failed_in_the_same_pass(store: state_store.Store, clock: Clock) -> None:
    ds = load(EXAMPLES)
    dns, tls = MemDriver("dns"), MemDriver("tls")
    dns.fail[HANGAR] = "PowerDNS API: connection refused"
    report = engine.Engine(store, drivers(dns=dns, tls=tls), clock=clock).reconcile(ds)
    assert not any(HANGAR in names for _, names in tls.batches), "an ACME order was wasted"
    assert f"{HANGAR}/tls" in report.deferred
    assert store.get_backoff(f"{HANGAR}/tls") is None, "tls was not at fault"
    assert any(HANGAR in names for _, names in dns.batches)


def _truncate(examples: Path, keep: int) -> None:
    subs = examples / "subscriptions.yaml"
    docs = subs.read_text().split("\n---\n")
    subs.write_text("\n---\n".join(docs[:keep]) + "\n")


def test_a_mass_deletion_is_held_until_confirmed(store: state_store.Store, clock: Clock, examples: Path) -> None:
    eng = engine.Engine(store, drivers(web=MemDriver("web")), clock=clock)
    assert eng.reconcile(load(examples)).ok
    _truncate(examples, 3)
    ds = load(examples)
    report = eng.reconcile(ds)
    assert report.deletions_held and report.deletion is not None
    assert len(report.deletion.deletions) >= 8
    assert all(r.deleted_at is None for r in store.list_subscriptions(include_deleted=True)), "something was deleted"
    held = report.deletion.deletions[0]
    cond = {c.type: c for c in store.get_conditions(held)}["DeletionHeld"]
    assert cond.status == "True" and "--allow-mass-delete" in cond.message
    eng.reconcile(ds)  # a second pass holds again, without a second event
    assert len([e for e in events.list_events(store, limit=10_000) if e.action == "deletion-held"]) == 1
    confirmed = eng.reconcile(ds, allow_mass_delete=True)
    assert not confirmed.deletions_held
    assert sum(1 for r in store.list_subscriptions(include_deleted=True) if r.deleted_at) == len(
        report.deletion.deletions)


def test_one_deletion_is_never_held(store: state_store.Store, clock: Clock, examples: Path) -> None:
    eng = engine.Engine(store, drivers(), clock=clock)
    eng.reconcile(load(examples))
    subs = examples / "subscriptions.yaml"
    docs = subs.read_text().split("\n---\n")
    subs.write_text("\n---\n".join(docs[:-1]) + "\n")
    report = eng.reconcile(load(examples))
    assert not report.deletions_held
    assert sum(1 for r in store.list_subscriptions(include_deleted=True) if r.deleted_at) == 1


@pytest.mark.parametrize(("live", "count", "held"), [
    pytest.param(12, 1, False, id="one-of-12"),
    pytest.param(12, 2, True, id="two-of-12-is-over-10pc"),
    pytest.param(100, 5, False, id="five-of-100"),
    pytest.param(100, 6, True, id="six-of-100"),
    pytest.param(10_000, 6, True, id="six-of-10000"),
])
def test_the_guard_threshold(live: int, count: int, held: bool) -> None:
    names = [f"s{i}" for i in range(count)]
    assert guard.decide(names, live, guard.Threshold(), allowed=False).held is held
    assert not guard.decide(names, live, guard.Threshold(), allowed=True).held


def test_a_replaced_server_gets_everything_placed_on_it_again(store: state_store.Store, clock: Clock) -> None:
    ds = load(EXAMPLES)
    web = MemDriver("web")
    probe = FakeProbe({s: "gen-1" for s in ds.servers})
    eng = engine.Engine(store, drivers(web=web), clock=clock, probe=probe)
    eng.reconcile(ds)
    server = next(s for s, names in web.batches if HANGAR in names)
    on_it = {n for s, names in web.batches if s == server for n in names}
    web.batches.clear()
    assert not eng.reconcile(ds).outcomes and web.batches == []  # nothing changed, nothing done
    probe.generations[server] = "gen-2"  # a fresh machine answers at that address
    report = eng.reconcile(ds)
    assert set(report.replaced) == {server} and report.replaced[server] >= len(on_it)
    assert {n for _, names in web.batches for n in names} == on_it
    ev = [e for e in events.list_events(store, limit=10_000) if e.action == "server-replaced"]
    assert len(ev) == 1 and ev[0].subject == server
    web.batches.clear()
    assert not eng.reconcile(ds).outcomes, "the new marker is recorded: no second re-ensure"


def test_every_change_is_audited_with_its_concern_action_and_run(
    store: state_store.Store, clock: Clock, examples: Path
) -> None:
    eng = engine.Engine(store, drivers(web=MemDriver("web"), php=MemDriver("php")), clock=clock, actor="cli:test")
    first = eng.reconcile(load(examples))
    creates = [e for e in events.list_events(store, limit=10_000) if e.action == "create" and e.concern == "web"]
    assert HANGAR in {e.subject for e in creates} and all(e.run_id == first.run_id for e in creates)
    plans = examples / "plans.yaml"
    text = plans.read_text()
    assert "memory_limit: 256M" in text
    plans.write_text(text.replace("memory_limit: 256M", "memory_limit: 320M", 1))
    second = eng.reconcile(load(examples))
    updates = [e for e in events.list_events(store, limit=10_000)
               if e.action == "update" and e.concern == "php" and e.run_id == second.run_id]
    assert updates and all("memory_limit" in e.message and "320M" in e.message for e in updates)
    assert all(e.actor == "cli:test" for e in updates)
    runs = store.list_runs()
    assert [r.id for r in runs][-2:] == [first.run_id, second.run_id]
    assert all(r.finished_at is not None for r in runs)
