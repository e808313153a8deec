"""The periodic thread of ``tenantctl run`` (``drivers.periodic``, the usage collection's
and the backup schedule's loop): ticks on its period until stopped, waits before the
first tick when asked, survives what a tick (and what handling its failure) raises."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.drivers import periodic
from controller.drivers.usage import schedule
from controller.state import store as state_store

WAIT = 10.0  # seconds a test waits for the thread at most (it takes milliseconds)


class Ticks:
    """A tick that counts, raises on the calls it is told to, and stops the loop at ``last``."""

    def __init__(self, stop: threading.Event, last: int, failing: tuple[int, ...] = ()) -> None:
        self.stop, self.last, self.failing, self.n = stop, last, failing, 0

    def __call__(self) -> None:
        self.n += 1
        if self.n >= self.last:
            self.stop.set()
        if self.n in self.failing:
            raise RuntimeError(f"tick {self.n} failed")


def run(p: periodic.Periodic) -> None:
    p.start()
    p.thread.join(WAIT)
    assert not p.thread.is_alive(), "the loop did not stop"


def test_ticks_on_its_period_until_stopped() -> None:
    stop = threading.Event()
    ticks = Ticks(stop, last=3)
    run(periodic.Periodic("t", ticks, stop, 0.01))
    assert ticks.n == 3


def test_a_failing_tick_is_logged_handed_on_and_the_next_tick_comes(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    ticks = Ticks(stop, last=4, failing=(1, 2))
    seen: list[str] = []

    def on_error(exc: Exception) -> None:
        seen.append(str(exc))
        if len(seen) == 2:
            raise OSError("the event store is locked")  # failing to record the failure

    with caplog.at_level(logging.ERROR, logger="tenantctl"):
        run(periodic.Periodic("t", ticks, stop, 0.01, what="the thing", on_error=on_error))
    assert ticks.n == 4 and seen == ["tick 1 failed", "tick 2 failed"]
    assert [r.getMessage() for r in caplog.records] == [
        "the thing: tick 1 failed", "the thing: tick 2 failed",
        "the thing: handling RuntimeError: the event store is locked"]


def test_first_delays_the_first_tick_and_stop_before_it_means_none() -> None:
    stop = threading.Event()
    ticks = Ticks(stop, last=1)
    p = periodic.Periodic("t", ticks, stop, 0.01, first=WAIT)
    p.start()
    stop.set()
    p.thread.join(WAIT)
    assert not p.thread.is_alive() and ticks.n == 0


@pytest.mark.parametrize(("period", "first"), [pytest.param(0.0, 0.0, id="no-period"),
                                               pytest.param(1.0, -1.0, id="negative-first")])
def test_a_period_that_cannot_loop_is_refused(period: float, first: float) -> None:
    with pytest.raises(ValueError, match="period must be > 0"):
        periodic.Periodic("t", lambda: None, threading.Event(), period, first=first)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[state_store.Store]:
    s = state_store.Store(tmp_path / "state.db")
    try:
        yield s
    finally:
        s.close()


def test_the_usage_thread_survives_a_failing_collection(store: state_store.Store,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    calls = Ticks(stop, last=2, failing=(1, 2))
    sched = schedule.Scheduler(store, calls, lambda: dt.datetime.now(dt.UTC), stop, period=0.01)
    assert sched.periodic.first == 0.01  # never later than one period
    with caplog.at_level(logging.ERROR, logger="tenantctl"):
        sched.start()
        sched.thread.join(WAIT)
    assert not sched.thread.is_alive() and calls.n == 2
    assert [r.getMessage() for r in caplog.records] == ["usage collection: tick 1 failed",
                                                        "usage collection: tick 2 failed"]
