"""Token buckets and the per-dependency registry, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import clock, ratelimit


class TestTokenBucket:
    def test_starts_full_then_refills_at_rate(self, fake_clock: clock.FakeClock) -> None:
        b = ratelimit.TokenBucket(rate_per_s=2, burst=3, now=fake_clock.now)
        assert [b.try_acquire() for _ in range(4)] == [True, True, True, False]
        assert b.delay_until_available() == 0.5
        fake_clock.advance(0.5)
        assert b.try_acquire() and not b.try_acquire()
        fake_clock.advance(100)
        assert b.try_acquire(3) and not b.try_acquire()

    def test_delay_does_not_take_tokens(self, fake_clock: clock.FakeClock) -> None:
        b = ratelimit.TokenBucket(rate_per_s=1, burst=1, now=fake_clock.now)
        assert b.delay_until_available() == 0.0
        assert b.delay_until_available() == 0.0
        assert b.try_acquire()

    @pytest.mark.parametrize("n", [pytest.param(0, id="zero"), pytest.param(4, id="over-burst")])
    def test_impossible_requests_are_refused(self, fake_clock: clock.FakeClock, n: int) -> None:
        b = ratelimit.TokenBucket(rate_per_s=1, burst=3, now=fake_clock.now)
        with pytest.raises(ValueError):
            b.try_acquire(n)

    @settings(deadline=None)  # timing under CI load is not what these test
    @given(
        rate=st.floats(min_value=0.1, max_value=100),
        burst=st.integers(min_value=1, max_value=20),
        steps=st.lists(
            st.tuples(st.floats(min_value=0, max_value=3), st.integers(min_value=1, max_value=20)),
            min_size=1,
            max_size=60,
        ),
    )
    def test_never_exceeds_burst_plus_rate_times_window(
        self, rate: float, burst: int, steps: list[tuple[float, int]]
    ) -> None:
        fake = clock.FakeClock()
        b = ratelimit.TokenBucket(rate_per_s=rate, burst=burst, now=fake.now)
        grants: list[tuple[float, int]] = []
        for dt, n in steps:
            fake.advance(dt)
            n = min(n, burst)
            if b.try_acquire(n):
                grants.append((fake.now(), n))
        for i, (t1, _) in enumerate(grants):
            total = 0
            for t2, n in grants[i:]:
                total += n
                assert total <= burst + rate * (t2 - t1) + 1e-6

    @settings(deadline=None)  # timing under CI load is not what these test
    @given(
        rate=st.floats(min_value=0.1, max_value=100),
        burst=st.integers(min_value=1, max_value=20),
        n=st.integers(min_value=1, max_value=20),
        drain=st.integers(min_value=0, max_value=20),
    )
    def test_waiting_the_announced_delay_is_enough(self, rate: float, burst: int, n: int, drain: int) -> None:
        fake = clock.FakeClock()
        b = ratelimit.TokenBucket(rate_per_s=rate, burst=burst, now=fake.now)
        n, drain = min(n, burst), min(drain, burst)
        if drain:
            assert b.try_acquire(drain)
        fake.advance(b.delay_until_available(n))
        assert b.try_acquire(n)


class TestRateLimits:
    def test_per_kind_defaults_and_overrides(self, fake_clock: clock.FakeClock) -> None:
        limits = ratelimit.RateLimits(clock=fake_clock)
        assert limits.limit_of("acme:https://ca/dir") == ratelimit.DEFAULT_LIMITS["acme"]
        assert limits.limit_of("ssh:eu-west-1") == ratelimit.DEFAULT_LIMITS["ssh"]
        assert limits.limit_of("smtp:relay") == ratelimit.FALLBACK_LIMIT
        limits.configure("ssh", ratelimit.Limit(1, 1))
        limits.configure("ssh:eu-west-2", ratelimit.Limit(5, 5))
        assert limits.limit_of("ssh:eu-west-1") == ratelimit.Limit(1, 1)
        assert limits.limit_of("ssh:eu-west-2") == ratelimit.Limit(5, 5)

    def test_dependencies_have_separate_buckets(self, fake_clock: clock.FakeClock) -> None:
        limits = ratelimit.RateLimits({"ssh": ratelimit.Limit(1, 2)}, clock=fake_clock)
        assert limits.acquire("ssh:eu-west-1", 0) and limits.acquire("ssh:eu-west-1", 0)
        assert not limits.acquire("ssh:eu-west-1", 0)
        assert limits.acquire("ssh:eu-west-2", 0)

    def test_acquire_waits_in_clock_time_up_to_the_timeout(self, fake_clock: clock.FakeClock) -> None:
        limits = ratelimit.RateLimits({"pdns": ratelimit.Limit(rate_per_s=4, burst=1)}, clock=fake_clock)
        start = fake_clock.now()
        assert limits.acquire("pdns:eu-west-1", 1)
        assert limits.acquire("pdns:eu-west-1", 1)
        assert fake_clock.now() - start == pytest.approx(0.25)
        assert not limits.acquire("pdns:eu-west-1", 0.1), "cannot get a token within 0.1 s"
        assert fake_clock.now() - start == pytest.approx(0.25), "gave up without waiting"

    def test_real_clock(self) -> None:
        limits = ratelimit.RateLimits({"db": ratelimit.Limit(rate_per_s=100, burst=1)})
        assert limits.acquire("db:eu1", 1) and limits.acquire("db:eu1", 1)

    def test_kind_of(self) -> None:
        assert ratelimit.kind_of("acme:https://ca/dir") == "acme"
        assert ratelimit.kind_of("docker") == "docker"
