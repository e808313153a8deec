"""Fixtures for the queue and rate limiters: a fake clock, so no test sleeps."""

from __future__ import annotations

import pytest

from controller import clock


@pytest.fixture
def fake_clock() -> clock.FakeClock:
    return clock.FakeClock()


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
