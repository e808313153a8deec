"""Usage collection inside ``tenantctl run``: a thread of its own every ``PERIOD``
seconds (level-triggered: each tick reads what the logs gained since the cursors, so a
quiet cluster costs one agent run per web server that reads nothing). The thread is
``drivers.periodic``'s: nothing raises out of it, a failure is a log line and the next
tick tries again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from controller import errors
from controller.drivers import context, periodic
from controller.drivers.usage import collect
from controller.model.desired import DesiredState
from controller.state import store as state_store

log = logging.getLogger("tenantctl")

PERIOD = 300.0
#: seconds from the start of ``run`` to the first collection
FIRST = 60.0


class Scheduler:
    def __init__(self, store: state_store.Store, desired: Callable[[], DesiredState | None],
                 clock: Callable[[], dt.datetime], stop: threading.Event, period: float = PERIOD) -> None:
        self.store = store
        self.desired = desired
        self.clock = clock
        self.periodic = periodic.Periodic("tenantctl-usage", self.tick, stop, period, first=min(FIRST, period),
                                          what="usage collection")
        self.thread = self.periodic.thread

    def start(self) -> None:
        self.periodic.start()

    def tick(self) -> collect.Report | None:
        ds = self.desired()
        if ds is None:
            return None
        collector = collect.Collector(context.Context.of(ds, self.store.path.parent), self.store)
        try:
            report = collector.run(self.clock())
        except errors.TenantctlError as exc:
            log.warning("usage collection: %s", exc)
            return None
        finally:
            collector.close()
        for server, err in sorted(report.failed.items()):
            log.warning("usage on %s: %s", server, err)
        log.info("usage collected: %d subscription(s), %d line(s), %d byte(s) of log, %.2f s",
                 report.subscriptions, report.lines, report.read, report.seconds)
        return report
