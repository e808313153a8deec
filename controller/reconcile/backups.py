"""The backup schedule inside ``tenantctl run`` (and the operator): a thread of its own,
so that a night's backups never hold up reconcile passes; and ``suspended``, the
site's suspension around a restore.

Every ``TICK`` seconds: the subscriptions whose schedule fired since their last attempt
are backed up (one run for all of them: servers in parallel, a bounded number of
tenants at once on each; ``drivers.backup.runner``), then rotated; once a day, after
that, every region's repositories are checked and tonight's share of subscriptions is
restore-drilled (``drivers.backup.nightly``), then tonight's sample of the
disaster-recovery drill runs on the spare servers of other regions (DR-1,
``drivers.backup.drdrill``, ``dr_per_night`` subscriptions). The Prometheus figures are refreshed from
the ledger after each step. Nothing here raises out of the thread: a failure is an
event and the next tick tries again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from controller import errors, metrics
from controller.drivers import backup_settings, base, context, hosting, periodic, transport
from controller.drivers.backup import drdrill, nightly, pitr, runner, schedule, topology, units, view
from controller.effective import spec
from controller.model.desired import DesiredState
from controller.reconcile import planner
from controller.reconcile import status as status_mod
from controller.state import backups as ledger
from controller.state import events
from controller.state import store as state_store

log = logging.getLogger("tenantctl")

TICK = 60.0
#: the nightly care runs at most once in this window
CARE_EVERY = dt.timedelta(hours=20)


class Scheduler:
    def __init__(self, store: state_store.Store, m: metrics.Metrics, desired: Callable[[], DesiredState | None],
                 clock: Callable[[], dt.datetime], stop: threading.Event,
                 dr_per_night: int = drdrill.DEFAULT_PER_NIGHT, actor: str = "run") -> None:
        self.store = store
        #: who its events name (``run`` or ``operator``)
        self.actor = actor
        self.dr_per_night = dr_per_night
        self.spares: list[str] = []
        self.metrics = m
        self.desired = desired
        self.clock = clock
        self.stop = stop
        self.periodic = periodic.Periodic("tenantctl-backups", self.tick, stop, TICK, what="backup scheduler",
                                          on_error=self._failed)
        self.thread = self.periodic.thread

    def start(self) -> None:
        self.periodic.start()

    def _failed(self, exc: Exception) -> None:
        events.record(self.store, actor=self.actor, action="failed", subject="*", concern="backup",
                      message=f"backup scheduler: {type(exc).__name__}: {exc}")

    def tick(self) -> None:
        ds = self.desired()
        if ds is None:
            return
        ctx = context.Context.of(ds, self.store.path.parent)
        topo = topology.Topology.of(ctx)
        self.spares = sorted(n for n, s in ds.servers.items() if s.spare)
        if not topo.repositories:
            return
        now = self.clock()
        items = [i for i in status_mod.items(self.store) if i.get("state") != "deleted"]
        pool = transport.Pool(ctx)
        try:
            wanted = units.wanted(items)
            due = schedule.due(wanted, ledger.attempts(self.store), topo.timezones, now)
            if due:
                settings_of = backup_settings.builder(ctx, lambda s: [d.model_dump(mode="json", warnings=False) for n, d in
                                                                      ds.subscriptions.items() if n == s])
                report = runner.Runner(topo, self.store, pool, settings_of).run(items, now, only=due)
                events.record(self.store, actor=self.actor, action="backup", subject="*", concern="backup",
                              message=(f"{len(due)} subscription(s) backed up" if report.ok else
                                       f"partially failed: {', '.join(sorted(report.failed))}"),
                              data={"failed": report.failed})
                self._figures(topo, items)
            checks = ledger.checks(self.store)
            last = min((c.at for k, c in checks.items() if k.startswith("region:")), default=None)
            if last is None or now - last >= CARE_EVERY:
                out = nightly.Outcome()
                care = nightly.Nightly(topo, self.store, pool)
                care.rotate(items, now, out)
                care.check(now, out)
                care.drill(items, now, out)
                dr = drdrill.DrDrill(topo, self.store, pool, self.spares).run(items, now, count=self.dr_per_night)
                bases = pitr.base_backups(topo, pool, items, now)
                bad = {**{f"check {r}": e for r, e in out.checks.items() if e},
                       **{f"drill {s}": e for s, e in out.drills.items() if e},
                       **{f"DR drill {s}": d.error or "failed" for s, d in dr.items() if not d.ok},
                       **{f"base backup {s}": e for s, e in bases.items() if e}}
                events.record(self.store, actor=self.actor, action="backup-verify" if not bad else "failed", subject="*",
                              concern="backup", message="repositories checked, drill passed" if not bad else
                              "; ".join(f"{k}: {v}" for k, v in sorted(bad.items()))[:2000])
        except errors.TenantctlError as exc:
            events.record(self.store, actor=self.actor, action="failed", subject="*", concern="backup",
                          message=f"backups: {exc}")
            self._pitr(topo, pool, items)
        finally:
            pool.close()
            self._figures(topo, items)

    def _pitr(self, topo: topology.Topology, pool: transport.Pool, items: list[dict[str, Any]]) -> None:
        """Archive lag of every PITR database server (BKP-4), each tick; archiving that
        cannot be measured counts as lagging since its newest archived write."""
        try:
            self.metrics.set_pitr(pitr.lags(topo, pool, items, self.clock()))
        except errors.TenantctlError as exc:
            log.warning("PITR archive lag: %s", exc)

    def _figures(self, topo: topology.Topology, items: list[dict[str, object]]) -> None:
        self.metrics.set_backup(view.figures(view.Facts.read(self.store), topo, items, self.clock(), self.spares))


@contextlib.contextmanager
def suspended(ds: DesiredState, state_dir: Path, item: Mapping[str, Any]) -> Iterator[None]:
    """``restore --suspend-during`` (BKP-5): the site serves the suspended page while its
    data is restored, and is served again afterwards (a subscription that was suspended
    already stays so). The web driver's own suspend and ensure, nothing else."""
    if item.get("state") == "suspended" or not item.get("server"):
        yield
        return
    web = hosting.WebDriver(context.Context.of(ds, state_dir))
    sl = web.slice(spec.of(planner.recorded_item(item)))
    try:
        (res,) = web.apply(item["server"], [base.Change(item["name"], "suspend", sl)])
        if res.outcome == "failed":
            raise errors.DriverError(f"{item['name']}: could not suspend the site: {res.message}")
        try:
            yield
        finally:
            (res,) = web.apply(item["server"], [base.Change(item["name"], "ensure", sl)])
            if res.outcome == "failed":
                raise errors.DriverError(f"{item['name']}: restored, but the site is still suspended: {res.message}")
    finally:
        web.close()
