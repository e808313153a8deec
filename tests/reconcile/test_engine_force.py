"""A forced pass (``apply --force``, issue 15): every concern handed to the drivers again,
and nothing written for what the drivers found in place (no audit event, no status or
condition rewrite); a driver that acts on servers of its own (dns) gets one batch per
pass, each change still fenced by its subscription's server (DR-1)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from controller import model
from controller.drivers import base
from controller.reconcile import engine
from controller.state import events
from controller.state import store as state_store

from .conftest import Clock
from .memdriver import MemDriver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HANGAR = "hangar.example.com"


class InPlace(MemDriver):
    """Finds every change already in place once it has applied it (what the dns driver
    answers for a zone its listing proves current)."""

    def __init__(self, concern: str) -> None:
        super().__init__(concern)
        self.applied: set[str] = set()

    def apply(self, server: str | None, changes: Sequence[base.Change[Any]]) -> list[base.Result]:
        results = super().apply(server, changes)
        out = [base.Result(r.name, r.outcome, base.UP_TO_DATE if r.name in self.applied else "created")
               if r.outcome == "provisioned" else r for r in results]
        self.applied |= {r.name for r in out if r.outcome == "provisioned"}
        return out


class OneBatch(InPlace):
    one_batch_per_pass = True


@pytest.fixture
def ds() -> model.DesiredState:
    return model.load_desired([EXAMPLES])


def wired(store: state_store.Store, clock: Clock) -> tuple[engine.Engine, InPlace, OneBatch]:
    web, dns = InPlace("web"), OneBatch("dns")
    drivers: dict[str, base.Driver] = {**engine.default_drivers(), "web": web, "dns": dns}
    return engine.Engine(store, drivers, clock=clock), web, dns


def snapshot(store: state_store.Store) -> tuple[Any, ...]:
    status = sorted(store.get_status(), key=lambda d: str(d["name"]))
    conds = store.conditions_of(sorted(d["name"] for d in status))
    return status, conds, store.all_fingerprints()


def test_a_forced_pass_hands_everything_over_and_writes_nothing_for_what_is_in_place(
    ds: model.DesiredState, store: state_store.Store, clock: Clock
) -> None:
    eng, web, dns = wired(store, clock)
    assert eng.reconcile(ds).ok
    placed = {n for n, s in eng.plan(ds).subscriptions.items() if s.placement.server}
    assert eng.reconcile(ds).planned.has_changes is False
    web.batches.clear()
    dns.batches.clear()
    before = snapshot(store)
    seen = {e.id for e in events.list_events(store, limit=10_000)}
    report = eng.reconcile(ds, force=True)
    assert report.ok and report.converged
    assert {n for _, names in web.batches for n in names} == placed
    assert [s for s, _ in dns.batches] == [None], "the dns driver got more than one batch"
    assert set(dns.batches[0][1]) == set(ds.subscriptions)
    assert snapshot(store) == before, "a forced pass of unchanged subscriptions rewrote state"
    assert [e.action for e in events.list_events(store, limit=10_000) if e.id not in seen] == []


def test_only_the_named_subscriptions_are_forced(
    ds: model.DesiredState, store: state_store.Store, clock: Clock
) -> None:
    eng, web, dns = wired(store, clock)
    assert eng.reconcile(ds).ok
    web.batches.clear()
    dns.batches.clear()
    report = eng.reconcile(ds, force=[HANGAR])
    assert [n for _, names in web.batches for n in names] == [HANGAR]
    assert dns.batches == [(None, [HANGAR])]
    assert {n for n, acts in report.planned.actions.items() if acts} == {HANGAR}


def test_a_ready_condition_comes_back_after_a_failure_even_when_nothing_was_sent(
    ds: model.DesiredState, store: state_store.Store, clock: Clock
) -> None:
    eng, _web, dns = wired(store, clock)
    dns.fail[HANGAR] = "PowerDNS API: connection refused"
    assert HANGAR in eng.reconcile(ds).failed
    del dns.fail[HANGAR]
    dns.applied.add(HANGAR)  # the zone was there all along: the driver sends nothing
    clock.now += dt.timedelta(hours=7)  # past its backoff
    assert eng.reconcile(ds, force=[HANGAR]).ok
    ready = {c.type: c for c in store.get_conditions(HANGAR)}["DnsReady"]
    assert (ready.status, ready.message) == ("True", base.UP_TO_DATE)


def test_a_change_the_driver_made_is_still_audited(
    ds: model.DesiredState, store: state_store.Store, clock: Clock
) -> None:
    eng, _web, dns = wired(store, clock)
    assert eng.reconcile(ds).ok
    dns.applied.discard(HANGAR)  # e.g. its zone was deleted by hand: the driver re-creates it
    seen = {e.id for e in events.list_events(store, limit=10_000)}
    assert eng.reconcile(ds, force=True).ok
    new = [e for e in events.list_events(store, limit=10_000) if e.id not in seen]
    assert [(e.subject, e.concern) for e in new] == [(HANGAR, "dns")]
    assert "re-applied unchanged" in new[0].message


def test_a_one_batch_driver_still_fences_each_change_by_its_subscriptions_server(
    store: state_store.Store, clock: Clock
) -> None:
    eng, _web, dns = wired(store, clock)
    eng._fenced = {"us-east-1": "us-east"}  # what a pass sets while us-east is evacuated
    changes: list[base.Change[Any]] = [base.Change("a.example", "ensure", {}), base.Change("b.example", "ensure", {})]
    results = eng._run_driver("dns", None, changes, {"a.example": "us-east-1", "b.example": "eu-west-1"})
    assert [r.outcome for r in results] == ["failed", "provisioned"]
    assert "fenced: region us-east is evacuated" in results[0].message
    assert dns.batches == [(None, ["b.example"])]
