"""Region loss (issue 10 item 4, DR-1): ``tenantctl region evacuate R --to R2``.

1. The evacuation is recorded in the state store (``state.regions``): from now on the
   planner places every subscription whose document names region R in R2 (capacity and
   SYNC-3 conflicts as usual), the documents stay as written. Each moving subscription's
   generation grows by one (fencing: what was written for an older generation is stale).
2. One engine pass over those subscriptions creates them on R2's servers: system user,
   web space, vhost, PHP pool, databases (re-created empty: ``db`` driver), DNS zones
   with their primary on R2's dns servers and the new addresses, certificates.
3. Each is restored from R2's backup repository (BKP-5 overwrite: web space, databases),
   the newest snapshot of each part; its recovery time (from the evacuation's start to
   its restore's end) and recovery point (the evacuation's start minus its oldest
   restored snapshot's time) are measured, recorded as events and answered.

The evacuated region's servers are never written to: when they come back, the
subscriptions stay in R2 (their recorded servers are there) and R's stale copies are
never read as the truth (the next nightly backups come from R2's servers; R's dns
servers are told to be secondaries of the new primaries when they answer again).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.drivers import transport
from controller.drivers.backup import restore, topology
from controller.model.desired import DesiredState
from controller.reconcile import engine as engine_mod
from controller.reconcile import status as status_mod
from controller.state import backups as ledger
from controller.state import events, regions
from controller.state import store as state_store


class CannotEvacuate(errors.PermanentError):
    """The evacuation asked for cannot start (unknown region, no servers to go to)."""


@dataclass
class Moved:
    subscription: str
    server: str | None = None
    generation: int = 1
    ok: bool = False
    error: str | None = None
    #: seconds from the evacuation's start until this subscription was restored
    rto: float | None = None
    #: seconds between its oldest restored snapshot and the evacuation's start
    rpo: float | None = None
    snapshots: list[str] = field(default_factory=list)


@dataclass
class Evacuated:
    region: str
    target: str
    started_at: dt.datetime
    moved: list[Moved] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.moved)


def check(ds: DesiredState, region: str, target: str) -> list[str]:
    """The subscriptions that would move; ``CannotEvacuate`` when it cannot start."""
    known = sorted(ds.regions)
    for r in (region, target):
        if r not in ds.regions:
            raise CannotEvacuate(f"unknown region {r!r} (regions: {', '.join(known)})")
    if region == target:
        raise CannotEvacuate(f"region {region} cannot be evacuated to itself")
    if not any(s.region == target and "web" in s.roles for s in ds.servers.values()):
        raise CannotEvacuate(f"region {target} has no server with the web role to take {region}'s subscriptions")
    return sorted(n for n, s in ds.subscriptions.items() if s.region == region)


def evacuate(
    ds: DesiredState,
    store: state_store.Store,
    eng: engine_mod.Engine,
    topo: topology.Topology,
    pool: transport.Pool,
    region: str,
    target: str,
    *,
    actor: str,
    progress: Callable[[str], None] = lambda _what: None,
) -> Evacuated:
    subs = check(ds, region, target)
    started = time.monotonic()
    now = eng.clock()
    regions.start(store, region, target, now)
    gens = regions.bump(store, subs)
    events.record(store, actor=actor, action="evacuate", subject="*",
                  message=f"region {region} evacuated to {target}: {len(subs)} subscription(s) move",
                  data={"region": region, "target": target, "subscriptions": subs})
    out = Evacuated(region, target, now, [Moved(s, generation=gens.get(s, 1)) for s in subs])
    progress(f"placing {len(subs)} subscription(s) in {target}")
    report = eng.reconcile(ds, only=subs, check_servers=False, command="evacuate")
    items = {i["name"]: i for i in status_mod.items(store)}
    for m in out.moved:
        item = items.get(m.subscription)
        m.server = item.get("server") if item else None
        problems = [f"{m.subscription} placed in {topo.region_of(m.server)}, not {target}"] \
            if m.server and topo.region_of(m.server) != target else []
        # A degraded failure (a zone's secondary in the lost region, set right when it
        # answers again) is not a failure of the evacuation: the concern says so and is retried.
        degraded = {k.split("/", 1)[1] for k in report.degraded if k.split("/", 1)[0] == m.subscription}
        problems += [f for f in report.failed.get(m.subscription, []) if f.split(":", 1)[0] not in degraded]
        if item is None or m.server is None:
            problems.append("not placed (see its conflicts in status)")
        else:
            progress(f"restoring {m.subscription} from {target}")
            problems += _restore(topo, store, pool, item, target, now, m)
        m.rto = round(time.monotonic() - started, 2)
        m.ok = not problems
        m.error = "; ".join(problems) or None
        events.record(store, actor=actor, action="evacuated" if m.ok else "failed", subject=m.subscription,
                      message=(f"evacuated from {region} to {m.server} (generation {m.generation}): "
                               f"RTO {m.rto} s, RPO {m.rpo} s" if m.ok else f"evacuation failed: {m.error}"),
                      data={"region": region, "target": target, "server": m.server, "generation": m.generation,
                            "rto": m.rto, "rpo": m.rpo, "snapshots": m.snapshots})
    out.seconds = round(time.monotonic() - started, 2)
    return out


def _restore(topo: topology.Topology, store: state_store.Store, pool: transport.Pool, item: Mapping[str, Any],
             target: str, now: dt.datetime, m: Moved) -> list[str]:
    """Its web space and databases from ``target``'s repository (settings are the
    documents': nothing to load). A subscription without backups has nothing to restore."""
    if (item.get("effective") or {}).get("backup", {}).get("content", "settingsAndData") != "settingsAndData":
        return []
    snaps = [s for s in ledger.snapshots(store, m.subscription) if s.kind != "settings"]
    if not snaps:
        return []
    try:
        choice = restore.choose(topo, snaps, item, at=None, region=target, only=None)
    except restore.NothingToRestore as exc:
        return [f"nothing to restore in {target}: {exc}"]
    try:
        results = restore.restore(topo, pool, m.subscription, choice)
    except errors.TenantctlError as exc:
        return [f"restore: {exc}"]
    m.snapshots = [s.id for s in choice.snapshots]
    m.rpo = round(max((now - s.taken_at).total_seconds() for s in choice.snapshots), 1)
    return [f"restore {r.kind} {r.name}: {r.error}" for r in results if not r.ok]
