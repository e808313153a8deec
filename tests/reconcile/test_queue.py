"""WorkQueue behaviours, one class each; the properties are in test_queue_properties.py."""

from __future__ import annotations

import threading

import pytest

from controller import clock
from controller.reconcile import queue

from .conftest import RecordingMetrics

Q = queue.WorkQueue[str]


def make(fake_clock: clock.FakeClock, **kw: object) -> Q:
    return queue.WorkQueue[str](clock=fake_clock, **kw)  # type: ignore[arg-type]


def in_thread(fn: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()))  # type: ignore[operator]
    t.start()
    return t, out


def wait_blocked(q: Q, t: threading.Thread) -> None:
    """Give a thread the time to block in get(); real time, but bounded and tiny."""
    t.join(0.05)
    assert t.is_alive()


class TestDeduplication:
    def test_waiting_key_is_not_added_twice(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        for _ in range(3):
            q.add("a.example")
        q.add("b.example")
        assert q.len() == len(q) == 2
        assert [q.get(0), q.get(0), q.get(0)] == ["a.example", "b.example", None]

    def test_fifo(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        for k in "cab":
            q.add(k)
        assert [q.get(0) for _ in range(3)] == ["c", "a", "b"]


class TestProcessing:
    def test_key_added_while_processing_is_requeued_once_on_done(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        q.add("a")
        assert q.get(0) == "a"
        q.add("a")
        q.add("a")
        assert q.get(0) is None, "handed out while still being processed"
        assert q.processing() == {"a"}
        q.done("a")
        assert q.get(0) == "a"
        q.done("a")
        assert q.get(0) is None

    def test_done_without_add_does_not_requeue(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        q.add("a")
        q.get(0)
        q.done("a")
        q.done("a")  # a second done is ignored
        q.done("never-handed-out")
        assert q.len() == 0

    def test_blocked_get_wakes_on_add(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        t, out = in_thread(q.get)
        wait_blocked(q, t)
        q.add("a")
        t.join(5)
        assert out == ["a"]


class TestDelays:
    def test_add_after_is_due_only_after_the_delay(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        q.add_after("a", 10)
        assert q.get(0) is None and q.pending_timers() == 1
        fake_clock.advance(9.9)
        assert q.get(0) is None
        fake_clock.advance(0.1)
        assert q.get(0) == "a" and q.pending_timers() == 0

    def test_earliest_due_time_wins(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        q.add_after("a", 60)
        q.add_after("a", 5)
        q.add_after("a", 30)
        fake_clock.advance(5)
        assert q.get(0) == "a"
        q.done("a")
        fake_clock.advance(100)
        assert q.get(0) is None, "superseded timers must not fire again"

    def test_non_positive_delay_adds_now(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        q.add_after("a", 0)
        q.add_after("b", -1)
        assert q.len() == 2

    def test_blocked_get_wakes_when_a_timer_is_due(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        q.add_after("a", 30)
        t, out = in_thread(q.get)
        wait_blocked(q, t)
        fake_clock.advance(29)
        wait_blocked(q, t)
        fake_clock.advance(1)
        t.join(5)
        assert out == ["a"]

    def test_get_times_out_in_clock_time(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        t, out = in_thread(lambda: q.get(timeout=5))
        wait_blocked(q, t)
        fake_clock.advance(5)
        t.join(5)
        assert out == [None]

    def test_real_clock_timeout(self) -> None:
        q = queue.WorkQueue[str]()
        assert q.get(timeout=0.01) is None
        q.add_after("a", 0.01)
        assert q.get(timeout=5) == "a"


class TestBackoff:
    def test_rate_limited_delays_double_and_forget_resets(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        delays = []
        for _ in range(4):
            delays.append(q.add_rate_limited("a"))
            fake_clock.advance(delays[-1])
            assert q.get(0) == "a"
            q.done("a")
        assert delays == [0.5, 1.0, 2.0, 4.0]
        assert q.num_requeues("a") == 4
        q.forget("a")
        assert q.num_requeues("a") == 0
        assert q.add_rate_limited("a") == 0.5

    def test_configurable_and_capped(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock, base_delay=1.0, max_delay=5.0)
        assert [q.add_rate_limited("a") for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]

    def test_restore_backoff_after_a_restart(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        q.restore_backoff("a", failures=3, delay=2.0)
        assert q.num_requeues("a") == 3 and q.get(0) is None
        fake_clock.advance(2)
        assert q.get(0) == "a"
        q.done("a")
        assert q.add_rate_limited("a") == 4.0  # the 4th failure: 0.5 * 2**3

    @pytest.mark.parametrize(
        ("base", "cap"),
        [pytest.param(0, 1, id="zero-base"), pytest.param(2, 1, id="cap-below-base")],
    )
    def test_bad_backoff_is_refused(self, base: float, cap: float) -> None:
        with pytest.raises(ValueError):
            queue.ExponentialBackoff(base, cap)


class TestShutdown:
    def test_blocked_getters_return_none_and_adds_are_ignored(self, fake_clock: clock.FakeClock) -> None:
        q = make(fake_clock)
        t, out = in_thread(q.get)
        wait_blocked(q, t)
        q.shutdown()
        t.join(5)
        assert out == [None]
        q.add("a")
        q.add_after("b", 1)
        assert q.get(0) is None and q.shutting_down


class TestMetricsHook:
    def test_adds_gets_retries_depth(self, fake_clock: clock.FakeClock, recording_metrics: RecordingMetrics) -> None:
        q = make(fake_clock, metrics=recording_metrics)
        q.add("a")
        q.add("a")  # de-duplicated: not counted
        q.add("b")
        fake_clock.advance(3)
        assert q.get(0) == "a"
        q.add_rate_limited("a")
        assert recording_metrics.adds == 2
        assert recording_metrics.gets == [3.0]
        assert recording_metrics.retries == 1
        assert recording_metrics.depths == [1, 2, 1]
