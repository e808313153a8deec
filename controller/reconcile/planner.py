"""Planning: gather (state store -> History), decide (effective.compute), diff
(fingerprints) -> the actions an apply would take. No writes.

A subscription whose whole-item fingerprint matches the last applied one costs one
hash and one compare: that is the no-op path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import effective
from controller.drivers import base
from controller.effective.history import History
from controller.model.desired import DesiredState
from controller.placement import Recorded
from controller.reconcile import fingerprint
from controller.state import store as state_store

WHOLE = state_store.WHOLE_SUBSCRIPTION


def observe(store: state_store.Store | None) -> History:
    """Everything the computation needs from past runs, one query per table."""
    if store is None:
        return History()
    subs = store.list_subscriptions()
    status = {doc["name"]: doc for doc in store.get_status()}
    return History(
        placements={s.name: Recorded(s.server, s.ip, dict(s.db_servers)) for s in subs},
        created={s.name: s.created_at.date() for s in subs},
        customers={s.name: s.customer for s in subs},
        sticky=store.all_sticky(),
        transfers={t.name: t.frozen for t in store.all_transfers()},
        last_effective={n: d["effective"] for n, d in status.items() if "effective" in d},
        usage=store.all_usage(),
    )


def driver_id(driver: base.Driver) -> str:
    return f"{type(driver).__module__}.{type(driver).__qualname__}"


@dataclass
class Planned:
    subscriptions: dict[str, effective.Subscription]
    #: desired fingerprints: name -> {WHOLE: .., concern: ..}
    fingerprints: dict[str, dict[str, str]]
    #: concerns whose slice changed, per subscription
    changed: dict[str, list[str]]
    actions: dict[str, list[str]]
    deletions: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.deletions) or any(self.actions.values())


def concern_fingerprints(item: Mapping[str, Any], drivers: Mapping[str, base.Driver]) -> dict[str, str]:
    return {c: fingerprint.of([driver_id(d), d.slice(item)]) for c, d in drivers.items()}


def plan(
    ds: DesiredState,
    now: dt.datetime,
    drivers: Mapping[str, base.Driver],
    store: state_store.Store | None = None,
    history: History | None = None,
) -> Planned:
    hist = history if history is not None else observe(store)
    subs = effective.compute(ds, now, hist)
    applied = store.all_fingerprints() if store is not None else {}
    known = set(hist.placements)
    fps: dict[str, dict[str, str]] = {}
    changed: dict[str, list[str]] = {}
    actions: dict[str, list[str]] = {}
    for name, sub in subs.items():
        whole = fingerprint.of(sub.item)
        old = applied.get(name, {})
        acts: list[str] = []
        if old.get(WHOLE) == whole and not sub.changes:
            fps[name] = {WHOLE: whole}
            changed[name] = []
            actions[name] = acts
            continue
        per = concern_fingerprints(sub.item, drivers)
        fps[name] = {WHOLE: whole, **per}
        rec = hist.placements.get(name)
        if name not in known:
            acts.append("create")
        if sub.placement.server is not None and (rec is None or rec.server != sub.placement.server):
            acts.append(f"place:{sub.placement.server}" if rec is None or rec.server is None
                        else f"move:{rec.server}->{sub.placement.server}")
        diff = [c for c, fp in per.items() if old.get(c) != fp]
        changed[name] = diff
        acts.extend(f"update:{c}" for c in diff)
        if sub.changes.transfer is not None:
            acts.append("record:transfer")
        acts.extend(f"record:{g}" for g in sorted(sub.changes.sticky_set))
        acts.extend(f"forget:{g}" for g in sorted(sub.changes.sticky_drop))
        if not acts and old.get(WHOLE) != whole:
            acts.append("update:status")
        actions[name] = acts
    deletions = sorted(known - set(subs))
    return Planned(subs, fps, changed, actions, deletions)
