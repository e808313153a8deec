"""DNS-01 through the PowerDNS API against Pebble and the embedded servers, with real
clients (openssl s_client, dig): issue 4 point 3, "DNS-01 through the PowerDNS API where
HTTP-01 cannot work".

Pebble resolves through the first dns server (drv-a, 127.0.40.1), the primary of these
eu-west subscriptions' zones; drv-c (us-east) holds their secondaries.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from controller.drivers.tls import ca, dns01

from .test_tls import IP, NOWHERE, Env, _NoDrift, domain, env, s_client, serial, set_a

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(300)]

__all__ = ["domain", "env"]  # the fixtures of test_tls, used here

SECONDARY = "127.0.42.1"  # drv-c


def use(env: Env, **changes: Any) -> None:
    """New tls settings for the driver, its CA client and its DNS-01 helper."""
    env.settings = dataclasses.replace(env.tls.settings, **changes)
    env.tls.settings = env.settings
    env.tls.ca = ca.CA(env.settings, env.tls.store, env.cluster.state_dir, env.tls.counters)


def dig_txt(server: str, name: str) -> list[str]:
    proc = subprocess.run(["dig", f"@{server}", "+short", "+norecurse", "+time=2", "+tries=2", "TXT", name],
                          capture_output=True, text=True, timeout=15, check=True)
    return [line for line in proc.stdout.splitlines() if line.strip()]


class Spy:
    """Records what the DNS-01 helper published and how long each step took."""

    def __init__(self, helper: dns01.Dns01) -> None:
        self.published: list[tuple[str, dict[str, list[str]]]] = []
        self.removed: list[str] = []
        self.seconds: dict[str, float] = {}
        self.seen_by_dig: dict[str, list[str]] = {}
        self.seen_by_dig_secondary: dict[str, list[str]] = {}
        self.checked: dict[str, list[str]] = {}
        publish, wait, cleanup = helper.publish, helper.wait, helper.cleanup

        def timed(step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - started
            return run

        def spy_publish(works: Sequence[dns01.ZoneWork]) -> None:
            self.published += [(w.zone, {k: list(v) for k, v in w.txt.items()}) for w in works]
            timed("publish", publish)(works)

        def spy_wait(works: Sequence[dns01.ZoneWork]) -> float:
            out: float = timed("wait", wait)(works)
            for w in works:  # a real client sees them on the server Pebble asks, before the answer
                self.checked[w.zone] = [f"{a}:{p}" for a, p in w.check]
                for name in w.txt:
                    self.seen_by_dig[name] = dig_txt(IP, name)
                    self.seen_by_dig_secondary[name] = dig_txt(SECONDARY, name)
            return out

        def spy_cleanup(works: Sequence[dns01.ZoneWork], sub: str) -> list[str]:
            self.removed += [w.zone for w in works if w.published]
            out: list[str] = timed("cleanup", cleanup)(works, sub)
            return out

        helper.publish = spy_publish  # type: ignore[method-assign]
        helper.wait = spy_wait  # type: ignore[method-assign]
        helper.cleanup = spy_cleanup  # type: ignore[method-assign]


class TestDns01:
    def test_issued_with_dns01_where_http01_cannot_reach_the_site(self, env: Env, domain: str) -> None:
        alias = f"alias{domain}"
        env.ssl = False  # first the zones and the site, no certificate
        env.sub(domain, sites=[{"name": "blog"}, {"name": alias, "type": "alias"}])
        assert env.reconcile().ok
        # HTTP-01 cannot work now: the domain's A record points where nothing answers
        env.engine.drivers["dns"] = _NoDrift(env.dns)
        set_a(env, domain, NOWHERE)
        use(env, dns01=frozenset({domain}))
        spy = Spy(env.tls.dns01)
        env.ssl = True
        started = time.monotonic()
        report = env.reconcile()
        took = time.monotonic() - started
        print(f"\nweb+tls with DNS-01 in {took:.2f}s; DNS-01 steps {({k: round(v, 3) for k, v in spy.seconds.items()})}; "
              f"ACME requests {env.tls.counters.requests}")
        assert report.ok, (report.failed, env.condition(domain))
        status, message = env.condition(domain)
        assert status == "True" and "valid until" in message, message
        # one PATCH per zone: the domain's zone (domain, www, blog) and the alias's own
        zones = {z: sorted(t) for z, t in spy.published}
        assert zones == {
            f"{domain}.": sorted(f"_acme-challenge.{n}." for n in (domain, f"www.{domain}", f"blog.{domain}")),
            f"{alias}.": sorted(f"_acme-challenge.{n}." for n in (alias, f"www.{alias}")),
        }, zones
        # both dns servers of each zone were checked, and dig saw each value on them (drv-a is
        # the one Pebble asks) before the challenge was answered
        assert spy.checked == {z: [f"{IP}:53", f"{SECONDARY}:53"] for z in zones}, spy.checked
        for _zone, txt in spy.published:
            for name, values in txt.items():
                assert sorted(v.strip('"') for v in spy.seen_by_dig[name]) == sorted(values), name
                assert sorted(v.strip('"') for v in spy.seen_by_dig_secondary[name]) == sorted(values), name
        for name in (domain, f"www.{domain}", f"blog.{domain}", alias, f"www.{alias}"):
            proc = s_client(name, env.bundle)
            assert proc.returncode == 0, (name, proc.stdout[-500:], proc.stderr[-500:])
            assert "Verify return code: 0 (ok)" in proc.stdout
            # the challenge records are gone, on the primary and on the secondary
            assert dig_txt(IP, f"_acme-challenge.{name}") == [], name
            assert dig_txt(SECONDARY, f"_acme-challenge.{name}") == [], name
        assert sorted(spy.removed) == sorted(zones)

    def test_no_reachable_primary_fails_with_the_reason_and_the_old_certificate_serves(
            self, env: Env, domain: str) -> None:
        env.sub(domain)
        assert env.reconcile().ok  # HTTP-01, the default
        old = serial(domain, env.bundle)
        env.fresh_account()
        # the primary's PowerDNS API cannot be reached (nothing listens on that port)
        use(env, dns01=frozenset({domain}), dns_api_port=9)
        env.tls.store.force(domain)
        started = time.monotonic()
        drifted = env.engine.resync(env.desired())
        env.reconcile()  # drift is repaired by the next pass, like any change
        print(f"\nfailed DNS-01 pass in {time.monotonic() - started:.2f}s")
        assert drifted[domain]["tls"].startswith("renewal requested"), drifted
        status, message = env.condition(domain)
        print(f"TlsReady=False: {message}")
        assert status == "False"
        assert "certificate order failed" in message and "DNS-01" in message, message
        assert "drv-a" in message and "unreachable" in message, message
        assert "keeps serving" in message, message
        assert serial(domain, env.bundle) == old
        assert s_client(domain, env.bundle).returncode == 0
        assert dig_txt(IP, f"_acme-challenge.{domain}") == []
        rec = env.store.get_backoff(f"{domain}/tls")  # the engine's record: the only backoff
        assert rec is not None and rec.failures == 1 and not rec.permanent

    def test_a_primary_that_never_serves_the_record_fails_in_bounded_time_and_cleans_up(
            self, env: Env, domain: str) -> None:
        env.sub(domain)
        assert env.reconcile().ok
        old = serial(domain, env.bundle)
        env.fresh_account()
        # the API takes the records, but the server checked never answers them
        use(env, dns01=frozenset({domain}), dns01_resolvers=(f"{NOWHERE}:53",), dns01_timeout=1.0)
        spy = Spy(env.tls.dns01)
        env.tls.store.force(domain)
        started = time.monotonic()
        env.engine.resync(env.desired())
        env.reconcile()
        took = time.monotonic() - started
        print(f"\nDNS-01 wait timed out; pass in {took:.2f}s; steps {spy.seconds}")
        status, message = env.condition(domain)
        assert status == "False" and f"{NOWHERE}:53 did not serve TXT" in message, message
        assert "keeps serving" in message
        assert spy.removed == [f"{domain}."]
        assert dig_txt(IP, f"_acme-challenge.{domain}") == []
        assert serial(domain, env.bundle) == old
        assert took < 10
        # tenantctl's own TXT put and removed are not taken for a customer's edit of the zone
        assert "dns" not in env.engine.resync(env.desired()).get(domain, {})
