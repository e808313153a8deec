"""The time source of the queue and the rate limiters, and a fake one for tests.

Time here is monotonic seconds (a ``float``), never wall-clock time. A ``Clock`` also
decides how a thread *waits* for time to pass, which is what lets tests drive timers
with ``FakeClock.advance()`` instead of sleeping (kopf's approach with looptime).
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Protocol


class Clock(Protocol):
    """Monotonic time, plus the two ways of waiting for it."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def condition(self) -> threading.Condition:
        """A new condition variable that ``wait`` may be called on."""
        ...

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        """Wait on ``cond`` (held by the caller) until notified or ``timeout`` seconds of
        this clock's time have passed (``None``: no limit). May return early: callers
        re-check their predicate and the time."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of this clock's time pass."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``."""

    def now(self) -> float:
        return time.monotonic()

    def condition(self) -> threading.Condition:
        return threading.Condition()

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        cond.wait(None if timeout is None else max(0.0, timeout))

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


MONOTONIC = MonotonicClock()
"""The shared real clock."""


class FakeClock:
    """A clock that only moves when told to.

    ``advance(dt)`` moves time and wakes every thread waiting on a condition created by
    ``condition()``, so a ``WorkQueue.get()`` blocked until a delayed key is due returns
    as soon as a test advances past the due time. ``sleep(dt)`` advances the clock
    itself: a rate limiter that waits for a token takes no real time.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._conditions: weakref.WeakSet[threading.Condition] = weakref.WeakSet()

    def now(self) -> float:
        with self._lock:
            return self._now

    def condition(self) -> threading.Condition:
        cond = threading.Condition()
        with self._lock:
            self._conditions.add(cond)
        return cond

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        # Real time is irrelevant: wake on notify() or on advance(), whatever the timeout.
        cond.wait()

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every waiter."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        with self._lock:
            self._now += seconds
            conditions = list(self._conditions)
        for cond in conditions:
            with cond:
                cond.notify_all()
