"""Region loss (issue 10 item 4, DR-1): ``tenantctl region evacuate R --to R2``.

1. The evacuation is recorded in the state store (``state.regions``): from now on the
   planner places every subscription whose document names region R in R2 (capacity and
   SYNC-3 conflicts as usual), the documents stay as written. Each moving subscription's
   generation grows by one (fencing: what was written for an older generation is stale).
2. One engine pass over those subscriptions creates them on R2's servers: system user,
   web space, vhost, PHP pool, databases (re-created empty: ``db`` driver), DNS zones
   with their primary on R2's dns servers and the new addresses, certificates.
3. Each is restored from R2's backup repository (BKP-5 overwrite: web space, databases),
   the newest snapshot of each part. For plans with ``backup.pitr`` (BKP-4) the
   databases come from the archives copied to R2 instead (``pitr.recover_latest``:
   PostgreSQL's newest base backup there replayed to the end of its WAL archive,
   MariaDB's newest nightly dump there plus its binary logs to the newest archived
   event); a database the archive cannot serve falls back to its snapshot (said). Its
   recovery time (from the evacuation's start to its restore's end) and recovery point
   are measured, recorded as events and answered: the point is the evacuation's start
   minus the oldest restored state, the archive's newest write of each database for
   PITR plans (``rpo_basis`` "archive", as the DR drill), else the oldest restored
   snapshot's time ("snapshot").

The evacuated region's servers are never written to: when they come back, the
subscriptions stay in R2 (their recorded servers are there) and R's stale copies are
never read as the truth (the next nightly backups come from R2's servers; R's dns
servers are told to be secondaries of the new primaries when they answer again).
Every agent job of the pass and of the restores carries the moved subscriptions' new
generations; R2's servers record them (``controller.agent.fence``) and refuse any later
job of an older generation: a controller that still believes in R's placement (a
stale process, R's own when it comes back) never overwrites the new primaries.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.drivers import naming, transport
from controller.drivers.backup import pitr, restore, topology
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
    #: seconds between its oldest restored state and the evacuation's start
    rpo: float | None = None
    #: what ``rpo`` measures: "archive" (its databases' newest archived writes) or "snapshot"
    rpo_basis: str = "snapshot"
    snapshots: list[str] = field(default_factory=list)
    #: its databases recovered from the archives: database, engine, base (backup or
    #: dump), stoppedAt (log position), region, point (ISO time recovered to)
    points: list[dict[str, str]] = field(default_factory=list)
    #: what the answer must say that is not a failure (a database from its snapshot)
    notes: list[str] = field(default_factory=list)


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
    # fencing (DR-1): the restores below carry the new generations (the engine's pass
    # hands them to its drivers itself); the new servers record them, so a controller
    # still at the old ones is refused there
    pool.use_generations(regions.generations(store))
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
                               f"RTO {m.rto} s, RPO {m.rpo} s ({m.rpo_basis})" + "".join(
                                   f"; db {p['database']} from {p['base']}, replay stopped at {p['stoppedAt']}"
                                   for p in m.points) + "".join(f"; {n}" for n in m.notes)
                               if m.ok else f"evacuation failed: {m.error}"),
                      data={"region": region, "target": target, "server": m.server, "generation": m.generation,
                            "rto": m.rto, "rpo": m.rpo, "rpoBasis": m.rpo_basis, "snapshots": m.snapshots,
                            "pointInTime": m.points, "notes": m.notes})
    out.seconds = round(time.monotonic() - started, 2)
    return out


def _restore(topo: topology.Topology, store: state_store.Store, pool: transport.Pool, item: Mapping[str, Any],
             target: str, now: dt.datetime, m: Moved) -> list[str]:
    """Its web space and databases from ``target``'s repository (settings are the
    documents': nothing to load), the databases of a PITR plan from the archives there.
    A subscription without backups has nothing to restore."""
    if (item.get("effective") or {}).get("backup", {}).get("content", "settingsAndData") != "settingsAndData":
        return []
    snaps = [s for s in ledger.snapshots(store, m.subscription) if s.kind != "settings"]
    if not snaps:
        return []
    try:
        choice = restore.choose(topo, snaps, item, at=None, region=target, only=None)
    except restore.NothingToRestore as exc:
        return [f"nothing to restore in {target}: {exc}"]
    archived: list[pitr.Recovered] = []
    problems: list[str] = []
    if pitr.wanted(item):
        archived, fallback = _recover_databases(topo, store, pool, item, target, m, problems)
        choice = restore.without_databases(choice, keep=fallback)
    try:
        results = restore.restore(topo, pool, m.subscription, choice) if choice.parts else []
    except errors.TenantctlError as exc:
        return [*problems, f"restore: {exc}"]
    m.snapshots = [s.id for s in choice.snapshots]
    m.points = [{"database": r.database, "engine": r.engine, "base": r.base, "stoppedAt": r.stopped_at,
                 "region": r.region, "point": r.point.isoformat() if r.point else ""} for r in archived]
    m.rpo, m.rpo_basis = rpo(now, choice.snapshots, archived)
    return problems + [f"restore {r.kind} {r.name}: {r.error}" for r in results if not r.ok] + \
        [f"recover db {r.database}: no recovery point known" for r in archived if r.point is None]


def _recover_databases(topo: topology.Topology, store: state_store.Store, pool: transport.Pool,
                       item: Mapping[str, Any], target: str, m: Moved, problems: list[str]
                       ) -> tuple[list[pitr.Recovered], set[str]]:
    """Each placed database recovered from ``target``'s archive; the ones it cannot serve
    (``OutOfRange``: no base backup or dump there yet) come back by name (on the server)
    to be restored from their snapshots instead (a note says so); other failures go to
    ``problems``."""
    done: list[pitr.Recovered] = []
    fallback: set[str] = set()
    for d in (item.get("effective") or {}).get("databases") or []:
        if not d.get("server"):
            continue
        try:
            done.append(pitr.recover_latest(topo, pool, store, item, d["name"], target))
        except pitr.OutOfRange as exc:
            m.notes.append(f"db {d['name']}: not from the archive ({exc}): its nightly snapshot instead")
            fallback.add(naming.database(m.subscription, d["name"]))
        except errors.TenantctlError as exc:
            problems.append(f"recover db {d['name']} from the archive in {target}: {exc}")
    return done, fallback


def rpo(now: dt.datetime, snapshots: Sequence[ledger.Snapshot], archived: Sequence[pitr.Recovered]
        ) -> tuple[float | None, str]:
    """(seconds, basis) of an evacuation's recovery point: ``now`` (its start) minus the
    oldest state restored. When every database came from the archives the basis is
    "archive": their newest archived writes (the worst database), as the DR drill's;
    else (a database from its snapshot, or none archived) "snapshot": the oldest
    restored snapshot or archived point."""
    points = [r.point for r in archived if r.point is not None]
    if points and not any(s.kind == "db" for s in snapshots):
        return round(max(0.0, max((now - p).total_seconds() for p in points)), 1), "archive"
    times = points + [s.taken_at for s in snapshots]
    if not times:
        return None, "snapshot"
    return round(max(0.0, max((now - t).total_seconds() for t in times)), 1), "snapshot"
