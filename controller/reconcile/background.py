"""The work a controller does beside its reconcile passes, one place for both front-ends
(``tenantctl run``: ``reconcile.loop``; the operator's leader: ``operator.main`` and
``operator.worker``).

Threads of their own (``start``): the backup schedule (``reconcile.backups``), the usage
collection (``drivers.usage.schedule``: traffic from the access logs every few minutes,
web spaces measured hourly; OPS-4, RES-2) and the demo platforms' resets
(``reconcile.demo``, PLAT-3). Each reads the desired state the caller last loaded and
ends when the caller's ``stop`` is set. On the resync timer, after the drift pass
(``on_timer``): the state store's daily copy, the moves that are due (``move.run_due``: scheduled moves started once
the maintenance windows open, OPS-2; sources removed after their substitute period,
DNS-4).

All of it but the state store's copy runs only with real drivers (``wanted``): a controller run without drivers
(``TENANTCTL_DRIVERS=none``, or a front-end given none, as tests do) reaches no server.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from controller import metrics, settings
from controller.drivers.usage import schedule as usage_schedule
from controller.model.desired import DesiredState
from controller.reconcile import backups, demo, move
from controller.reconcile import engine as engine_mod
from controller.state import backup as state_backup
from controller.state import events
from controller.state import store as state_store

log = logging.getLogger("tenantctl")

Desired = Callable[[], DesiredState | None]


def wanted(real_drivers: bool) -> bool:
    """Whether the background work runs: with real drivers, unless they are off
    (``TENANTCTL_DRIVERS=none``)."""
    return real_drivers and not settings.current().core.drivers_off


@dataclass(frozen=True)
class Threads:
    """The schedulers ``start`` made (the usage collection and the demos' thread are not
    started with ``once``)."""

    backups: backups.Scheduler
    demos: demo.Scheduler
    usage: usage_schedule.Scheduler | None

    def demos_once(self) -> None:
        """One round of the demos' resets in the calling thread (``run --once``, after
        the pass that placed them)."""
        self.demos.periodic.once()

    def started(self) -> list[threading.Thread]:
        """The threads started (they end once ``stop`` is set and their tick is done)."""
        usage = [self.usage.thread] if self.usage is not None else []
        return [t for t in (self.backups.thread, self.demos.thread, *usage) if t.ident is not None]

    def alive(self) -> bool:
        return any(t.is_alive() for t in self.started())

    def join(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the threads to end (``stop`` set); True
        if they all did."""
        deadline = time.monotonic() + timeout
        for t in self.started():
            t.join(max(deadline - time.monotonic(), 0.0))
        return not self.alive()


def start(store: state_store.Store, m: metrics.Metrics, desired: Desired, clock: Callable[[], dt.datetime],
          stop: threading.Event, *, once: bool = False, actor: str = "run") -> Threads:
    """Start the schedulers, each on a thread of its own that ends once ``stop`` is set;
    their events name ``actor``. With ``once`` only the backup schedule's thread starts
    (the demos are the caller's to run once: ``Threads.demos_once``)."""
    b = backups.Scheduler(store, m, desired, clock, stop, actor=actor)
    b.start()
    demos = demo.Scheduler(store, desired, clock, stop, actor=actor)
    usage = None
    if not once:  # OPS-4/RES-2: traffic from the access logs every few minutes, disk hourly
        usage = usage_schedule.Scheduler(store, desired, clock, stop)
        usage.start()
        demos.start()  # PLAT-3
    return Threads(b, demos, usage)


def on_timer(ds: DesiredState, store: state_store.Store, eng: engine_mod.Engine, *, actor: str,
             real_drivers: bool) -> None:
    """The resync timer's work after the drift pass: the state store's daily copy (one a
    UTC day, under ``<state>/backups``: ``state.backup.nightly``; always, it reaches no
    server), then with real drivers (``wanted``) the moves that are due (issue 13). A
    failure there is logged and recorded (event ``failed``, concern ``move``) and tried
    again at the next timer: the passes go on."""
    path = state_backup.nightly(store, store.path.parent / "backups", eng.clock())
    if path is not None:
        log.info("state store backed up to %s", path)
    if not wanted(real_drivers):
        return
    try:
        move.run_due(ds, store, eng, actor=actor)
    except Exception as exc:  # a move's trouble never stops the passes: an event, tried next timer
        log.exception("due moves: %s", exc)
        with store.transaction():
            events.record(store, actor=actor, action="failed", subject="*", concern="move",
                          message=f"due moves: {type(exc).__name__}: {exc}")
