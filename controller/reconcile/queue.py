"""``WorkQueue``: a level-triggered, de-duplicating work queue, after client-go's workqueue.

Keys (subscription names, usually) are *reasons to look again*, not events: adding a key
that is already waiting does nothing, because one reconciliation will see the latest
state anyway. The guarantees, each tested:

* a key is handed out to at most one worker at a time: if it is added while being
  processed, it is queued again once, when the worker calls ``done(key)``;
* every key added is eventually handed out (unless the queue is shut down);
* ``add_after`` keeps only the earliest pending due time per key;
* ``add_rate_limited`` delays by a per-key exponential backoff (tenacity's
  ``wait_exponential``: ``base * 2**(failures-1)`` capped at ``cap``) until ``forget``.

Time comes from a ``clock.Clock``; with ``clock.FakeClock`` tests advance time instead
of sleeping. Metrics are fed through the ``QueueMetrics`` protocol, so this module does
not import ``controller.metrics``.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

import tenacity

from controller import clock as clock_mod

K = TypeVar("K", bound=Hashable)

DEFAULT_BASE_DELAY = 0.5
"""Seconds before the first retry of a failed key."""

DEFAULT_MAX_DELAY = 300.0
"""Cap of the per-key backoff, in seconds."""


class QueueMetrics(Protocol):
    """What the queue reports; ``controller.metrics.Metrics.workqueue`` implements it."""

    def on_add(self) -> None:
        """A key entered the queue (de-duplicated adds are not counted)."""
        ...

    def on_get(self, queue_seconds: float) -> None:
        """A key was handed out after waiting ``queue_seconds`` in the queue."""
        ...

    def on_retry(self) -> None:
        """A key was re-queued with backoff (``add_rate_limited``)."""
        ...

    def depth(self, n: int) -> None:
        """The number of keys ready and waiting for a worker is now ``n``."""
        ...


class _NoMetrics:
    def on_add(self) -> None:
        pass

    def on_get(self, queue_seconds: float) -> None:
        pass

    def on_retry(self) -> None:
        pass

    def depth(self, n: int) -> None:
        pass


class ExponentialBackoff:
    """Delay after the n-th consecutive failure: ``base * 2**(n-1)``, at most ``cap``.

    Computed by tenacity's ``wait_exponential(multiplier=base, max=cap)``, the same
    policy the drivers use for their own retries. Monotone non-decreasing in ``n``.
    """

    def __init__(self, base: float = DEFAULT_BASE_DELAY, cap: float = DEFAULT_MAX_DELAY) -> None:
        if not base > 0 or not cap >= base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._wait = tenacity.wait_exponential(multiplier=base, max=cap)
        self._retrying = tenacity.Retrying()

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 for none)."""
        if failures < 1:
            return 0.0
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = failures
        return float(self._wait(state))


class WorkQueue(Generic[K]):
    """A thread-safe work queue of keys; see the module docstring for the guarantees.

    A worker loop::

        while (key := q.get()) is not None:
            try:
                reconcile(key)
            except TemporaryError:
                q.add_rate_limited(key)
            else:
                q.forget(key)
            finally:
                q.done(key)
    """

    def __init__(
        self,
        *,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        clock: clock_mod.Clock = clock_mod.MONOTONIC,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self.backoff = ExponentialBackoff(base_delay, max_delay)
        self._clock = clock
        self._metrics: QueueMetrics = metrics if metrics is not None else _NoMetrics()
        self._cond = clock.condition()
        self._queue: collections.deque[K] = collections.deque()  # ready, in order
        self._dirty: set[K] = set()  # need processing: in _queue, or re-queued on done()
        self._processing: set[K] = set()  # handed out, done() not called yet
        self._queued_at: dict[K, float] = {}
        self._due: dict[K, float] = {}  # add_after: key -> earliest due time
        self._timers: list[tuple[float, int, K]] = []  # heap; stale entries skipped
        self._seq = itertools.count()  # heap tie-breaker: keys need not be orderable
        self._failures: dict[K, int] = {}
        self._shutting_down = False

    # -- adding ---------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue ``key`` unless it is already waiting. Ignored after ``shutdown()``."""
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._queued_at[key] = self._clock.now()
        self._metrics.on_add()
        if key in self._processing:
            return  # done() re-queues it, so no two workers ever hold it
        self._queue.append(key)
        self._metrics.depth(len(self._queue))
        self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds; an earlier pending due time wins."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            due = self._clock.now() + delay
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._timers, (due, next(self._seq), key))
            self._cond.notify_all()  # a blocked get() may have to wake earlier

    def add_rate_limited(self, key: K) -> float:
        """Count one more failure of ``key`` and queue it after its backoff; return the delay."""
        with self._cond:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            self._metrics.on_retry()
        delay = self.backoff.delay(failures)
        self.add_after(key, delay)
        return delay

    def restore_backoff(self, key: K, failures: int, delay: float) -> None:
        """Seed ``key``'s failure count (e.g. from the state store after a restart) and
        queue it in ``delay`` seconds."""
        with self._cond:
            if failures > 0:
                self._failures[key] = failures
            else:
                self._failures.pop(key, None)
        self.add_after(key, delay)

    def forget(self, key: K) -> None:
        """Reset ``key``'s failure count (call it after a success)."""
        with self._cond:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        """Consecutive failures of ``key`` since the last ``forget``."""
        with self._cond:
            return self._failures.get(key, 0)

    # -- taking -----------------------------------------------------------------------

    def _promote_due_locked(self) -> None:
        now = self._clock.now()
        while self._timers and self._timers[0][0] <= now:
            due, _, key = heapq.heappop(self._timers)
            if self._due.get(key) != due:
                continue  # superseded by an earlier due time, already promoted
            del self._due[key]
            self._add_locked(key)

    def get(self, timeout: float | None = None) -> K | None:
        """Block until a key is ready and hand it out; None on timeout or shutdown.

        The caller must call ``done(key)`` when finished with it. ``timeout`` is in the
        clock's seconds; 0 polls without blocking.
        """
        with self._cond:
            deadline = None if timeout is None else self._clock.now() + timeout
            while True:
                if self._shutting_down:
                    return None
                self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    now = self._clock.now()
                    self._metrics.on_get(max(0.0, now - self._queued_at.pop(key, now)))
                    self._metrics.depth(len(self._queue))
                    return key
                now = self._clock.now()
                wait: float | None = None
                if deadline is not None:
                    if now >= deadline:
                        return None
                    wait = deadline - now
                if self._timers:
                    until_due = self._timers[0][0] - now
                    wait = until_due if wait is None else min(wait, until_due)
                self._clock.wait(self._cond, wait)

    def done(self, key: K) -> None:
        """Mark ``key`` finished; if it was added meanwhile, queue it again now."""
        with self._cond:
            if key not in self._processing:
                return
            self._processing.discard(key)
            if key in self._dirty and not self._shutting_down:
                self._queue.append(key)
                self._metrics.depth(len(self._queue))
                self._cond.notify()

    # -- introspection and shutdown ------------------------------------------------------

    def len(self) -> int:
        """Keys ready for a worker (not those being processed or not yet due)."""
        with self._cond:
            self._promote_due_locked()
            return len(self._queue)

    def __len__(self) -> int:
        return self.len()

    def pending_timers(self) -> int:
        """Keys waiting for a due time (``add_after``/``add_rate_limited``)."""
        with self._cond:
            return len(self._due)

    def processing(self) -> frozenset[K]:
        """Keys handed out and not yet ``done``."""
        with self._cond:
            return frozenset(self._processing)

    def shutdown(self) -> None:
        """Stop: blocked and future ``get`` calls return None, adds are ignored."""
        with self._cond:
            self._shutting_down = True
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        with self._cond:
            return self._shutting_down
