"""Fixtures for the queue and rate limiters (a fake monotonic clock, so no test sleeps)
and for the engine (a settable wall clock and a state store that uses it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller import clock as clock_mod
from controller.state import store as state_store

T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def fake_clock() -> clock_mod.FakeClock:
    return clock_mod.FakeClock()


class Clock:
    """The engine's wall clock, set by the test (``clock.now += ...``)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[state_store.Store]:
    with state_store.Store(tmp_path / "state.db", now=clock) as st:
        yield st


class RecordingMetrics:
    """A ``queue.QueueMetrics`` that remembers every call."""

    def __init__(self) -> None:
        self.adds = 0
        self.retries = 0
        self.gets: list[float] = []
        self.depths: list[int] = []

    def on_add(self) -> None:
        self.adds += 1

    def on_get(self, queue_seconds: float) -> None:
        self.gets.append(queue_seconds)

    def on_retry(self) -> None:
        self.retries += 1

    def depth(self, n: int) -> None:
        self.depths.append(n)


@pytest.fixture
def recording_metrics() -> RecordingMetrics:
    return RecordingMetrics()
