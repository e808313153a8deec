"""Token buckets that keep the controller polite to the services it depends on.

A reconciliation of 10,000 subscriptions must not open 10,000 SSH sessions or ACME
orders at once. Each external dependency gets a ``TokenBucket`` in a ``RateLimits``
registry, keyed ``"<kind>:<target>"`` (``"acme:https://ca/dir"``, ``"ssh:eu-west-1"``,
``"pdns:eu-west-1"``); the limits of a key come from its kind unless configured
explicitly. Over any window of ``t`` seconds a bucket grants at most
``burst + rate * t`` tokens (property-tested).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping

from controller import clock as clock_mod

EPSILON = 1e-9
"""Tokens short of a whole one that still count as one: float refills (``elapsed * rate``)
may land a hair below an integer, and a waiter must not spin on a 1e-16 s delay."""


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate_per_s``; starts full. Thread-safe."""

    def __init__(self, rate_per_s: float, burst: float, now: Callable[[], float] = clock_mod.MONOTONIC.now) -> None:
        if not rate_per_s > 0 or not burst >= 1:
            raise ValueError(f"a token bucket needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._now = now
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._stamp = now()

    def _refill_locked(self) -> None:
        now = self._now()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
        self._stamp = max(self._stamp, now)

    def _check(self, n: float) -> None:
        if n <= 0 or n > self.burst:
            raise ValueError(f"cannot take {n} tokens from a bucket of burst {self.burst}")

    def try_acquire(self, n: float = 1) -> bool:
        """Take ``n`` tokens if available now; never blocks."""
        self._check(n)
        with self._lock:
            self._refill_locked()
            if self._tokens + EPSILON >= n:
                self._tokens -= n
                return True
            return False

    def delay_until_available(self, n: float = 1) -> float:
        """Seconds until ``n`` tokens will be available (0 if they are now). Takes none."""
        self._check(n)
        with self._lock:
            self._refill_locked()
            if self._tokens + EPSILON >= n:
                return 0.0
            return (n - self._tokens) / self.rate_per_s


@dataclasses.dataclass(frozen=True)
class Limit:
    """The limit of one dependency."""

    rate_per_s: float
    """Sustained requests per second."""
    burst: float
    """Requests allowed at once after a quiet period."""


DEFAULT_LIMITS: Mapping[str, Limit] = {
    # Let's Encrypt allows 20 req/s per IP on its API and far fewer new orders; stay well below.
    "acme": Limit(rate_per_s=5, burst=10),
    # One SSH session + playbook per server costs seconds (field notes: ~3.4 s per batch).
    "ssh": Limit(rate_per_s=2, burst=4),
    # The PowerDNS API took 1,000 zone creations in 3-9 s; leave room for the server.
    "pdns": Limit(rate_per_s=50, burst=100),
    # Tenant database servers (CREATE DATABASE / users / grants).
    "db": Limit(rate_per_s=20, burst=40),
    # Local docker engine of the embedded environment.
    "docker": Limit(rate_per_s=10, burst=20),
}
"""Per-kind defaults; the kind is what comes before the first ``:`` of a dependency."""

FALLBACK_LIMIT = Limit(rate_per_s=10, burst=20)
"""For a kind with no default."""


def kind_of(dependency: str) -> str:
    """``"ssh:eu-west-1"`` -> ``"ssh"``; a key without ``:`` is its own kind."""
    return dependency.split(":", 1)[0]


class RateLimits:
    """One ``TokenBucket`` per dependency, created on first use."""

    def __init__(
        self,
        defaults: Mapping[str, Limit] = DEFAULT_LIMITS,
        *,
        fallback: Limit = FALLBACK_LIMIT,
        clock: clock_mod.Clock = clock_mod.MONOTONIC,
    ) -> None:
        self._defaults = dict(defaults)
        self._fallback = fallback
        self._overrides: dict[str, Limit] = {}
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def configure(self, dependency: str, limit: Limit) -> None:
        """Set the limit of one dependency (``"ssh:eu-west-1"``) or of a kind (``"ssh"``).

        Applies to buckets created afterwards and replaces an existing bucket of that
        exact dependency.
        """
        with self._lock:
            if ":" in dependency:
                self._overrides[dependency] = limit
                self._buckets.pop(dependency, None)
            else:
                self._defaults[dependency] = limit
                for dep in [d for d in self._buckets if kind_of(d) == dependency and d not in self._overrides]:
                    del self._buckets[dep]

    def limit_of(self, dependency: str) -> Limit:
        """The limit that applies to ``dependency``."""
        with self._lock:
            return self._limit_locked(dependency)

    def _limit_locked(self, dependency: str) -> Limit:
        return self._overrides.get(dependency) or self._defaults.get(kind_of(dependency), self._fallback)

    def bucket(self, dependency: str) -> TokenBucket:
        """The bucket of ``dependency`` (created on first use)."""
        with self._lock:
            bucket = self._buckets.get(dependency)
            if bucket is None:
                limit = self._limit_locked(dependency)
                bucket = self._buckets[dependency] = TokenBucket(limit.rate_per_s, limit.burst, now=self._clock.now)
            return bucket

    def acquire(self, dep: str, timeout: float) -> bool:
        """Take one token for ``dep``, waiting up to ``timeout`` seconds; False if none came.

        Returns False at once when the next token cannot arrive before the deadline, so
        a caller can requeue the key instead of holding a worker.
        """
        bucket = self.bucket(dep)
        deadline = self._clock.now() + timeout
        while True:
            if bucket.try_acquire():
                return True
            delay = bucket.delay_until_available()
            if self._clock.now() + delay > deadline:
                return False
            self._clock.sleep(delay)
