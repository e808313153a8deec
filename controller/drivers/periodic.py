"""A thread of ``tenantctl run`` that does one thing on a period (the backup schedule,
the usage collection): what belongs here is the loop every such thread shares, nothing
of what a tick does.

The loop: wait ``first`` seconds (0: tick at once), then tick every ``period`` seconds
until ``stop`` is set (a tick is never cut short: ``stop`` is seen between ticks).
Nothing raises out of the thread: a tick's exception is logged with its traceback and
handed to ``on_error`` (to record an event, say); should ``on_error`` fail too, that is
logged as well and the next tick comes all the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("tenantctl")


class Periodic:
    def __init__(self, name: str, tick: Callable[[], object], stop: threading.Event, period: float, *,
                 first: float = 0.0, what: str = "", on_error: Callable[[Exception], object] | None = None) -> None:
        """``name``: the thread's name; ``tick``: one round (its result is ignored);
        ``first``: seconds before the first tick; ``what``: what log lines call it
        (default: ``name``)."""
        if period <= 0 or first < 0:
            raise ValueError(f"{name}: period must be > 0 and first >= 0, got {period} and {first}")
        self.name = name
        self.what = what or name
        self.tick = tick
        self.stop = stop
        self.period = period
        self.first = first
        self.on_error = on_error
        self.thread = threading.Thread(target=self.loop, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def loop(self) -> None:
        wait = self.first
        while not self.stop.wait(wait):  # wait(0) answers at once whether stop is set
            wait = self.period
            self.once()

    def once(self) -> None:
        """One tick; what it raises is logged and handed to ``on_error``, never raised."""
        try:
            self.tick()
        except Exception as exc:  # the thread survives everything
            log.exception("%s: %s", self.what, exc)
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception as again:
                    log.exception("%s: handling %s: %s", self.what, type(exc).__name__, again)
