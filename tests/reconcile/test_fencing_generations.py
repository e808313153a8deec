"""Fencing on the agents' side, the engine's part (issue 10 item 4, DR-1): the
subscriptions' generations are read once per pass and handed to every driver whose
agent jobs carry them (``transport.UsesGenerations``); a job the agent refused
(``transport.Fenced``: the server has seen a newer generation) is a permanent failure,
never a success, recorded with an event by the engine's failure path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller import model
from controller.agent import jobs
from controller.drivers import base, transport
from controller.reconcile import engine
from controller.state import events, regions
from controller.state import store as state_store

from .conftest import Clock
from .memdriver import MemDriver
from .test_evacuation import EXAMPLES


class FencingWeb(MemDriver):
    """The engine's contract with a driver whose jobs carry generations: it remembers
    each view the engine hands it and answers like an agent that has seen
    ``seen[sub]``: a batch whose every subscription is below is refused whole
    (``transport.Fenced``, as ``transport.Agent.run`` raises it)."""

    def __init__(self) -> None:
        super().__init__("web")
        self.views: list[dict[str, int]] = []
        self.seen: dict[str, int] = {}

    def use_generations(self, gens: Mapping[str, int]) -> None:
        self.views.append(dict(gens))

    def apply(self, server: str | None, changes: Sequence[base.Change[Any]]) -> list[base.Result]:
        view = self.views[-1]
        refused = {c.name: jobs.Fenced(self.seen[c.name], view.get(c.name, 1)) for c in changes
                   if view.get(c.name, 1) < self.seen.get(c.name, 0)}
        if refused and len(refused) == len(changes):
            raise transport.Fenced(f"server {server}: hosting agent", refused)
        return super().apply(server, changes)


def test_the_generations_are_read_once_a_pass_and_handed_to_the_drivers(store: state_store.Store,
                                                                       clock: Clock) -> None:
    ds = model.load_desired([EXAMPLES])
    web = FencingWeb()
    assert isinstance(web, transport.UsesGenerations)
    eng = engine.Engine(store, {**engine.default_drivers(), "web": web}, clock=clock)
    assert eng.reconcile(ds).ok
    assert web.views == [{}]  # one pass, one view: nothing moved yet (every subscription at 1)
    sub = sorted(ds.subscriptions)[0]
    regions.bump(store, [sub])
    eng.reconcile(ds, force=[sub])
    assert web.views == [{}, {sub: 2}]


def test_a_refused_job_is_a_permanent_failure_naming_both_generations(store: state_store.Store,
                                                                      clock: Clock) -> None:
    ds = model.load_desired([EXAMPLES])
    web = FencingWeb()
    eng = engine.Engine(store, {**engine.default_drivers(), "web": web}, clock=clock)
    assert eng.reconcile(ds).ok
    sub = sorted(ds.subscriptions)[0]
    web.seen[sub] = 2  # a newer controller moved it; this store still says 1: stale
    report = eng.reconcile(ds, force=[sub])
    [message] = report.failed[sub]
    assert "fenced" in message and "generation 2 on this server, the job carries generation 1" in message
    assert report.outcomes[sub]["web"] == "failed"
    [backoff] = [b for b in store.list_backoff() if b.key == f"{sub}/web"]
    assert backoff.permanent
    [event] = events.list_events(store, subject=sub, action="failed", concern="web")
    assert "the job carries generation 1" in event.message and event.data is not None and event.data["permanent"]
    conds = {c.type: c for c in store.conditions_of([sub])[sub]}
    assert conds["WebReady"].status == "False"
