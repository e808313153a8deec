"""Demo platforms (PLAT-3): reset from their reference on a schedule, and on demand.

A demo (``spec.demo: {resetFrom, schedule}``) is due when its schedule (cron, in its
region's time zone; default every hour at minute 44) fired since its last reset
started (``prev_fire > last``); a demo never reset is due at once (it starts as a copy
of its reference); one whose last reset failed is due again ``RETRY`` after it. Only a
demo placed on a server and whose web space is provisioned is reset. A reset is the
clone primitive (``controller.reconcile.clone``): the demo's web space and databases
become exactly its reference's newest backup (or the pinned snapshot's).

Each reset is measured and recorded: the demo's row in the state store
(``controller.state.demos``: last reset, duration, outcome, reference, snapshots) and
an event (``demo-reset``, or ``failed`` with concern ``demo``) carrying the duration and
the snapshots. ``tenantctl run`` runs ``Scheduler`` (a thread of its own, ``TICK``) and
``tenantctl demo reset SUB`` resets one now (``Resetter.reset``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller import errors
from controller.drivers import periodic
from controller.drivers.backup import schedule
from controller.model.desired import DesiredState
from controller.reconcile import clone
from controller.state import demos, events
from controller.state import store as state_store

log = logging.getLogger("tenantctl")

#: seconds between two looks at the demos' schedules
TICK = 20.0
#: a failed reset is tried again this long after it (its schedule may fire sooner)
RETRY = dt.timedelta(minutes=10)
#: the event's concern
CONCERN = "demo"


@dataclass(frozen=True)
class Wanted:
    """One demo of the desired state."""

    subscription: str
    reference: str
    schedule: str
    timezone: str


def wanted(ds: DesiredState) -> dict[str, Wanted]:
    """Every demo of ``ds``, by name."""
    out: dict[str, Wanted] = {}
    for name, spec in sorted(ds.subscriptions.items()):
        if spec.demo is None:
            continue
        region = ds.regions.get(spec.region)
        out[name] = Wanted(name, spec.demo.resetFrom, spec.demo.schedule, region.timezone if region else "UTC")
    return out


def due(demos_: Mapping[str, Wanted], resets: Mapping[str, demos.Reset], now: dt.datetime) -> list[str]:
    """The demos whose reset is due at ``now``, sorted. Pure."""
    out = []
    for name, d in sorted(demos_.items()):
        last = resets.get(name)
        if last is None or last.at < schedule.prev_fire(d.schedule, d.timezone, now) \
                or (not last.ok and now - last.at >= RETRY):
            out.append(name)
    return out


def ready(item: Mapping[str, object] | None) -> bool:
    """Whether a demo's status says it can be reset: placed, its web space provisioned."""
    if not item or item.get("state") not in ("active", "suspended") or not item.get("server"):
        return False
    concerns = item.get("concerns")
    return isinstance(concerns, Mapping) and concerns.get("web") == "provisioned"


class Resetter:
    """Resets demos and records each reset (row and event)."""

    def __init__(self, store: state_store.Store, pool: object, *, clock: Callable[[], dt.datetime],
                 actor: str = "run", cloner: Callable[[str, clone.Reference], clone.Cloned] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.actor = actor
        self.cloner = cloner or (lambda target, ref: clone.clone(store, pool, target, ref))

    def reset(self, name: str, reference: str) -> demos.Reset:
        """Reset demo ``name`` from ``reference`` now: the recorded row (``ok`` False: it failed)."""
        ref = clone.Reference.parse(reference)
        started_at = self.clock()
        started = time.monotonic()
        error: str | None = None
        cloned: clone.Cloned | None = None
        try:
            cloned = self.cloner(name, ref)
        except clone.Busy:
            raise  # another process resets it now: its reset is the one recorded
        except errors.TenantctlError as exc:
            error = str(exc)
        except Exception as exc:  # recorded like any failure: else the demo would be due again every tick
            log.exception("demo %s: reset from %s", name, ref)
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started
        source = cloned.source if cloned is not None else str(ref)
        snaps = cloned.snapshots if cloned is not None else ()
        row = demos.record(self.store, name, started_at, seconds=seconds, error=error, source=source,
                           snapshots=snaps, actor=self.actor)
        data = {"seconds": round(seconds, 3), "source": source, "reference": str(ref), "snapshots": list(snaps)}
        if cloned is not None:
            data.update(restored=list(cloned.restored), missing=list(cloned.missing), region=cloned.region)
            message = (f"reset from {source} in {seconds:.1f} s ({', '.join(cloned.restored)}"
                       + (f"; nothing in the backup for {', '.join(cloned.missing)}" if cloned.missing else "")
                       + ")")
        else:
            message = f"reset from {ref} failed after {seconds:.1f} s: {error}"
        with self.store.transaction():
            events.record(self.store, actor=self.actor, action="demo-reset" if error is None else "failed",
                          subject=name, concern=CONCERN, message=message, data=data)
        return row

    def due(self, ds: DesiredState) -> list[demos.Reset]:
        """Reset every due demo that is ready (one after the other): their rows. A demo
        another process resets now (``clone.Busy``) is left to it."""
        all_ = wanted(ds)
        out = []
        for name in due(all_, demos.all_resets(self.store), self.clock()):
            if ready(self.store.get_status_of(name)):
                try:
                    out.append(self.reset(name, all_[name].reference))
                except clone.Busy as exc:
                    log.info("demo %s: %s", name, exc)
        return out


class Scheduler:
    """The demos' thread of ``tenantctl run`` and of the operator's leader
    (``reconcile.background``): every ``TICK`` seconds, the due demos reset."""

    def __init__(self, store: state_store.Store, desired: Callable[[], DesiredState | None],
                 clock: Callable[[], dt.datetime], stop: threading.Event, actor: str = "run") -> None:
        self.store = store
        #: who its resets and events name (``run`` or ``operator``)
        self.actor = actor
        self.desired = desired
        self.clock = clock
        self.periodic = periodic.Periodic("tenantctl-demos", self.tick, stop, TICK, what="demo scheduler",
                                          on_error=self._failed)
        self.thread = self.periodic.thread

    def start(self) -> None:
        self.periodic.start()

    def _failed(self, exc: Exception) -> None:
        with self.store.transaction():
            events.record(self.store, actor=self.actor, action="failed", subject="*", concern=CONCERN,
                          message=f"demo scheduler: {type(exc).__name__}: {exc}")

    def tick(self) -> list[demos.Reset]:
        ds = self.desired()
        if ds is None:
            return []
        all_ = wanted(ds)
        resets = demos.all_resets(self.store)
        gone = sorted(set(resets) - set(all_))
        if gone:  # no demos any more: their rows go (the events stay)
            demos.forget(self.store, gone)
        if not any(ready(self.store.get_status_of(n)) for n in due(all_, resets, self.clock())):
            return []  # nothing due, or only demos not placed yet: no connection to any server
        from controller.drivers import context, transport

        pool = transport.Pool(context.Context.of(ds, self.store.path.parent))
        try:
            done = Resetter(self.store, pool, clock=self.clock, actor=self.actor).due(ds)
        finally:
            pool.close()
        for r in done:
            log.info("demo %s reset from %s in %.1f s%s", r.subscription, r.source, r.seconds,
                     "" if r.ok else f": FAILED: {r.error}")
        return done
