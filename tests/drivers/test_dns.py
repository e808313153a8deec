"""The dns driver against the embedded PowerDNS servers, checked with ``dig``.

drv-a (eu-west) and drv-c (us-east) have the dns role: an eu-west subscription's zone
has its primary on drv-a and a secondary on drv-c. Every test uses its own domains and
removes its zones at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller import errors
from controller.drivers import base
from controller.drivers.dns import DnsDriver
from controller.drivers.powerdns import api, records
from controller.effective import spec

from .conftest import Cluster

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(120)]

PRIMARY, SECONDARY = "127.0.40.1", "127.0.42.1"
SUFFIX = "dns-test.example"


def dig(server: str, name: str, rtype: str) -> list[str]:
    out = subprocess.run(["dig", "+short", "+norec", "+time=1", "+tries=1", f"@{server}", name, rtype],
                         capture_output=True, text=True, timeout=10, check=False).stdout
    return sorted(line for line in out.splitlines() if line and not line.startswith(";"))


def wait_for(check: Callable[[], bool], timeout: float = 5.0, step: float = 0.05) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not true within {timeout}s")
        time.sleep(step)
    return time.monotonic() - started


def item(name: str, *, ip: str = "127.0.40.1", region: str = "eu-west", sites: tuple[str, ...] = (),
         manage_dns: bool = False, mode: str = "primary", primaries: tuple[str, ...] = (),
         mail: bool = True, server: str = "drv-b") -> dict[str, Any]:
    """A subscription's item as ``tenantctl plan -o json`` prints it (the parts dns reads)."""
    return {
        "name": name, "ip": ip, "region": region, "server": server, "state": "active",
        "effective": {
            "dns": {"mode": mode, "primaries": list(primaries)},
            "sites": [{"name": s, "type": "alias" if not s.endswith(name) else "subdomain"} for s in sites],
            "mail": {"enabled": mail, "mailingLists": False},
            "permissions": {"manageDNS": manage_dns},
        },
    }


@pytest.fixture(scope="module", autouse=True)
def _dig() -> None:
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed (apt-get install dnsutils)")


@pytest.fixture
def driver(cluster: Cluster) -> Iterator[DnsDriver]:
    drv = DnsDriver(cluster.ctx)
    yield drv
    # remove every zone of this test's domains, whatever state the test left
    for s in drv.servers():
        c = drv.client(s)
        for z in c.zones():
            if z["name"].endswith(f".{SUFFIX}."):
                c.delete(z["name"])
    drv.close()


@pytest.fixture
def domain() -> str:
    return f"t{uuid.uuid4().hex[:10]}.{SUFFIX}"


def ensure(drv: DnsDriver, *items: dict[str, Any]) -> list[base.Result]:
    results = drv.apply("drv-b", [base.Change(it["name"], "ensure", drv.slice(spec.sketch(it))) for it in items])
    assert [r.outcome for r in results] == ["provisioned"] * len(items), results
    return results


def serial(server: str, zone: str) -> int:
    soa = dig(server, zone, "SOA")
    return int(soa[0].split()[2]) if soa else 0


class TestPrimaryAndSecondary:
    def test_both_regions_answer_the_same_records_and_serial(self, driver: DnsDriver, domain: str) -> None:
        alias = f"alias{domain}"
        ensure(driver, item(domain, sites=(f"blog.{domain}", alias)))
        for zone in (domain, alias):
            wait_for(lambda z=zone: serial(PRIMARY, z) > 0 and serial(SECONDARY, z) == serial(PRIMARY, z), 2.0)
        assert dig(PRIMARY, domain, "A") == ["127.0.40.1"]
        assert dig(PRIMARY, f"mail.{domain}", "A") == ["127.0.40.1"]
        assert dig(PRIMARY, domain, "MX") == [f"10 mail.{domain}."]
        assert dig(PRIMARY, domain, "TXT") == ['"v=spf1 a mx ~all"']
        assert dig(PRIMARY, domain, "NS") == ["ns-drv-a.ns.tenantctl.internal.", "ns-drv-c.ns.tenantctl.internal."]
        for name, rtype in [(domain, "A"), (f"www.{domain}", "A"), (f"blog.{domain}", "A"), (domain, "MX"),
                            (domain, "TXT"), (domain, "NS"), (domain, "SOA"), (alias, "A"), (f"www.{alias}", "A"),
                            (alias, "SOA")]:
            assert dig(PRIMARY, name, rtype), (name, rtype)
            assert dig(SECONDARY, name, rtype) == dig(PRIMARY, name, rtype), (name, rtype)
        assert driver.dns_servers(spec.sketch(item(domain))) == [f"{PRIMARY}:53", f"{SECONDARY}:53"]

    def test_a_changed_ip_reaches_the_secondary_within_2s(self, driver: DnsDriver, domain: str) -> None:
        ensure(driver, item(domain))
        wait_for(lambda: dig(SECONDARY, domain, "A") == ["127.0.40.1"], 3.0)
        started = time.monotonic()
        ensure(driver, item(domain, ip="127.0.40.2"))
        wait_for(lambda: dig(SECONDARY, f"www.{domain}", "A") == ["127.0.40.2"], 2.0, step=0.02)
        elapsed = time.monotonic() - started
        print(f"record change visible on the secondary after {elapsed:.3f}s")
        assert elapsed <= 2.0
        assert serial(SECONDARY, domain) == serial(PRIMARY, domain)

    def test_a_new_site_reaches_the_secondary_within_2s(self, driver: DnsDriver, domain: str) -> None:
        ensure(driver, item(domain))
        wait_for(lambda: serial(SECONDARY, domain) > 0, 3.0)
        started = time.monotonic()
        ensure(driver, item(domain, sites=(f"shop.{domain}",)))
        wait_for(lambda: dig(SECONDARY, f"shop.{domain}", "A") == ["127.0.40.1"], 2.0, step=0.02)
        assert time.monotonic() - started <= 2.0

    def test_notify_alone_carries_a_change_to_the_secondary(self, driver: DnsDriver, domain: str) -> None:
        """The protocol path (pdns.conf + per-zone ALSO-NOTIFY/ALLOW-AXFR-FROM): NOTIFY from
        the primary's own address, AXFR allowed to the secondary, no API call to it."""
        ensure(driver, item(domain))
        wait_for(lambda: serial(SECONDARY, domain) == serial(PRIMARY, domain) > 0, 2.0)
        c = driver.client(driver.servers()[0])
        c.patch(f"{domain}.", [{"name": f"notified.{domain}.", "type": "TXT", "ttl": 60, "changetype": "REPLACE",
                                "records": [{"content": '"by-notify"', "disabled": False}]}])
        c.notify(f"{domain}.")
        wait_for(lambda: dig(SECONDARY, f"notified.{domain}", "TXT") == ['"by-notify"'], 3.0)

    def test_ipv6_gets_aaaa(self, driver: DnsDriver, domain: str) -> None:
        ensure(driver, item(domain, ip="2001:db8::10"))
        assert dig(PRIMARY, domain, "AAAA") == ["2001:db8::10"]
        assert dig(PRIMARY, domain, "A") == []


class TestCustomerRecords:
    """DNS-3: with manageDNS the customer's own rrsets survive syncs; without, they go."""

    def _customer_adds_txt(self, driver: DnsDriver, domain: str) -> None:
        c = driver.client(driver.servers()[0])
        c.patch(f"{domain}.", [{"name": f"_verify.{domain}.", "type": "TXT", "ttl": 60, "changetype": "REPLACE",
                                "records": [{"content": '"customer-token"', "disabled": False}]}])
        assert dig(PRIMARY, f"_verify.{domain}", "TXT") == ['"customer-token"']

    def test_with_manage_dns_a_customer_txt_survives_a_plan_change(self, driver: DnsDriver, domain: str) -> None:
        ensure(driver, item(domain, manage_dns=True))
        self._customer_adds_txt(driver, domain)
        ensure(driver, item(domain, manage_dns=True, sites=(f"blog.{domain}",), mail=False))
        assert dig(PRIMARY, f"blog.{domain}", "A") == ["127.0.40.1"]
        assert dig(PRIMARY, domain, "MX") == []
        assert dig(PRIMARY, f"_verify.{domain}", "TXT") == ['"customer-token"']
        wait_for(lambda: dig(SECONDARY, f"_verify.{domain}", "TXT") == ['"customer-token"'], 2.0)

    def test_without_manage_dns_a_customer_txt_is_removed(self, driver: DnsDriver, domain: str) -> None:
        ensure(driver, item(domain))
        self._customer_adds_txt(driver, domain)
        ensure(driver, item(domain))  # the next apply, nothing else changed
        assert dig(PRIMARY, f"_verify.{domain}", "TXT") == []
        assert dig(PRIMARY, domain, "A") == ["127.0.40.1"]


class TestSecondaryMode:
    def test_a_zone_from_the_customers_primary_is_served_in_the_region(self, driver: DnsDriver,
                                                                       domain: str) -> None:
        # drv-c plays the customer's own primary: a zone that is not tenantctl's
        customer = driver.client(driver.servers()[1])
        customer.create({"name": f"{domain}.", "kind": "Master", "account": "customer", "rrsets": [
            {"name": f"{domain}.", "type": "SOA", "ttl": 3600,
             "records": [{"content": f"ns1.{domain}. hostmaster.{domain}. 7 3600 600 86400 60", "disabled": False}]},
            {"name": f"{domain}.", "type": "NS", "ttl": 3600,
             "records": [{"content": f"ns1.{domain}.", "disabled": False}]},
            {"name": f"{domain}.", "type": "A", "ttl": 60, "records": [{"content": "192.0.2.7", "disabled": False}]},
        ]})
        customer.set_metadata(f"{domain}.", "ALLOW-AXFR-FROM", [f"{PRIMARY}/32"])
        ensure(driver, item(domain, mode="secondary", primaries=(SECONDARY,), manage_dns=True))
        wait_for(lambda: dig(PRIMARY, domain, "A") == ["192.0.2.7"], 3.0)
        assert serial(PRIMARY, domain) == serial(SECONDARY, domain) > 0
        zone = driver.client(driver.servers()[0]).zone(f"{domain}.")
        assert zone is not None and zone["kind"] == "Slave" and zone["masters"] == [SECONDARY]
        # the customer's zone on drv-c is left alone (not tenantctl's, not in eu-west)
        assert customer.zone(f"{domain}.") is not None
        assert driver.dns_servers(spec.sketch(item(domain, mode="secondary", primaries=(SECONDARY,)))) == [f"{PRIMARY}:53"]


class TestDriftAndIdempotence:
    def test_a_zone_deleted_by_hand_on_the_secondary_is_reported_and_restored(self, driver: DnsDriver,
                                                                             domain: str) -> None:
        it = item(domain)
        ensure(driver, it)
        change = base.Change(domain, "ensure", driver.slice(spec.sketch(it)))
        assert driver.drifted("drv-b", [change]) == {}
        assert driver.client(driver.servers()[1]).delete(f"{domain}.")
        drift = driver.drifted("drv-b", [change])
        assert f"zone {domain}. missing on drv-c" in drift[domain]
        ensure(driver, it)
        wait_for(lambda: dig(SECONDARY, domain, "A") == ["127.0.40.1"], 2.0)
        assert driver.drifted("drv-b", [change]) == {}

    def test_a_record_edited_by_hand_is_drift(self, driver: DnsDriver, domain: str) -> None:
        it = item(domain)
        ensure(driver, it)
        c = driver.client(driver.servers()[0])
        c.patch(f"{domain}.", [{"name": f"www.{domain}.", "type": "A", "ttl": 300, "changetype": "REPLACE",
                                "records": [{"content": "192.0.2.66", "disabled": False}]}])
        change = base.Change(domain, "ensure", driver.slice(spec.sketch(it)))
        assert "edited outside tenantctl" in driver.drifted("drv-b", [change])[domain]
        ensure(driver, it)
        assert dig(PRIMARY, f"www.{domain}", "A") == ["127.0.40.1"]
        assert driver.drifted("drv-b", [change]) == {}

    def test_a_second_apply_sends_no_patch(self, driver: DnsDriver, domain: str) -> None:
        it = item(domain, sites=(f"blog.{domain}", f"alias{domain}"))
        ensure(driver, it)
        clients = [driver.client(s) for s in driver.servers()]
        before = [dict(c.sent) for c in clients]
        results = ensure(driver, it)
        assert results[0].message == "up to date"
        for c, old in zip(clients, before, strict=True):
            sent = {m: n - old.get(m, 0) for m, n in c.sent.items()}
            assert sent.get("PATCH", 0) == 0 and sent.get("POST", 0) == 0 and sent.get("PUT", 0) == 0, sent
            assert sent.get("DELETE", 0) == 0, sent

    def test_a_forced_reapply_of_unchanged_zones_reads_and_sends_nothing(self, driver: DnsDriver, domain: str,
                                                                         cluster: Cluster) -> None:
        """What an upgrade of tenantctl triggers (every fingerprint invalidated, a fresh
        process re-applies every subscription): the zone listings, and nothing else;
        a changed subscription gets exactly its PATCH (issue 15)."""
        items = [item(domain, sites=(f"blog.{domain}", f"alias{domain}")), item(f"b{domain}"), item(f"c{domain}")]
        ensure(driver, *items)
        fresh = DnsDriver(cluster.ctx)
        try:
            results = ensure(fresh, *items)
            assert [r.message for r in results] == ["up to date"] * 3
            assert fresh.sent() == {"GET": len(fresh.servers())}  # one GET /zones a server
            items[1]["ip"] = "127.0.40.2"
            before = fresh.sent()
            results = ensure(fresh, *items)
            sent = {m: n - before.get(m, 0) for m, n in fresh.sent().items()}
            assert [r.message == "up to date" for r in results] == [True, False, True]
            assert sent.get("PATCH") == 1 and sent.get("POST", 0) == 0 and sent.get("DELETE", 0) == 0, sent
            wait_for(lambda: dig(SECONDARY, f"b{domain}", "A") == ["127.0.40.2"], 2.0)
        finally:
            fresh.close()

    def test_a_zone_stamped_before_the_digest_is_read_once_then_trusted(self, driver: DnsDriver,
                                                                        domain: str) -> None:
        it = item(domain)
        ensure(driver, it)
        c = driver.client(driver.servers()[0])
        zone = c.zone(f"{domain}.")
        assert zone is not None
        c.update(f"{domain}.", {"account": f"tenantctl:{domain}@{zone['serial']}"})  # what older versions wrote
        before = driver.sent()
        assert ensure(driver, it)[0].message == "up to date"
        sent = {m: n - before.get(m, 0) for m, n in driver.sent().items()}
        assert sent.get("PUT") == 1 and sent.get("PATCH", 0) == 0, sent  # the account only
        assert records.parse_account_full((c.zone(f"{domain}.") or {}).get("account"))[2] is not None
        before = driver.sent()
        ensure(driver, it)
        assert {m: n - before.get(m, 0) for m, n in driver.sent().items() if n != before.get(m, 0)} == {
            "GET": len(driver.servers())}


class TestFencing:
    """Issue 10 item 4 (DR-1): a zone written for a moved subscription carries its
    generation (``X-TENANTCTL-GENERATION`` metadata, on the primary and on the secondary);
    a stale controller (an older generation) writes nothing to it."""

    def test_a_stale_controller_never_overwrites_a_newer_ones_zones(self, driver: DnsDriver, domain: str,
                                                                    cluster: Cluster) -> None:
        driver.use_generations({domain: 2})
        ensure(driver, item(domain))
        for s in driver.servers():
            assert driver.client(s).metadata(f"{domain}.").get(records.GENERATION) == ["2"], s.name
        before = driver.sent()
        assert ensure(driver, item(domain))[0].message == "up to date"  # the fence costs a no-op pass nothing
        assert {m: n - before.get(m, 0) for m, n in driver.sent().items() if n != before.get(m, 0)} == {
            "GET": len(driver.servers())}
        stale = DnsDriver(cluster.ctx)
        try:
            stale.use_generations({domain: 1})
            [res] = stale.apply("drv-b", [base.Change(domain, "ensure", stale.slice(spec.sketch(
                item(domain, ip="127.0.40.9"))))])
            assert res.outcome == "failed" and res.permanent, res
            assert f"fenced: {domain} is at generation 2 on this server, the job carries generation 1" in res.message
            assert set(stale.sent()) == {"GET"}, stale.sent()  # the listings and the primary's metadata
        finally:
            stale.close()
        assert dig(PRIMARY, domain, "A") == ["127.0.40.1"]
        driver.use_generations({domain: 3})  # the newer one goes on
        ensure(driver, item(domain, ip="127.0.40.2"))
        assert dig(PRIMARY, domain, "A") == ["127.0.40.2"]
        assert driver.client(driver.servers()[0]).metadata(f"{domain}.").get(records.GENERATION) == ["3"]


class TestDelete:
    def test_delete_exports_then_removes_every_zone(self, driver: DnsDriver, domain: str, cluster: Cluster) -> None:
        alias = f"alias{domain}"
        ensure(driver, item(domain, sites=(alias,), manage_dns=True))
        driver.client(driver.servers()[0]).patch(f"{domain}.", [{
            "name": f"_own.{domain}.", "type": "TXT", "ttl": 60, "changetype": "REPLACE",
            "records": [{"content": '"keep-me"', "disabled": False}]}])
        [res] = driver.apply("drv-b", [base.Change(domain, "delete", {"name": domain})])
        assert res.outcome == "provisioned", res
        for s in driver.servers():
            names = {z["name"] for z in driver.client(s).zones()}
            assert f"{domain}." not in names and f"{alias}." not in names
        [export] = sorted((cluster.state_dir / "retained" / domain).glob("*-zone.txt"))
        text = export.read_text()
        assert '"keep-me"' in text and f"zone {alias}." in text
        assert dig(PRIMARY, domain, "A") == [] and dig(SECONDARY, domain, "A") == []
        shutil.rmtree(cluster.state_dir / "retained" / domain)  # the state dir may be shared


class TestErrors:
    def test_an_unreachable_api_is_a_temporary_error(self) -> None:
        c = api.Client("nowhere", "127.0.43.250", 9, "k", api.Settings(timeout=0.5, attempts=2, wait=0.01))
        with pytest.raises(errors.TemporaryError) as exc:
            c.zones()
        assert isinstance(exc.value.__cause__, OSError)
        assert c.failures == 2

    def test_a_wrong_api_key_is_permanent(self) -> None:
        c = api.Client("drv-a", PRIMARY, 8081, "wrong-key")
        with pytest.raises(errors.PermanentError, match="pdns_api_key"):
            c.zones()

    def test_a_region_without_dns_server_fails_the_subscription_only(self, driver: DnsDriver, domain: str) -> None:
        results = driver.apply("drv-b", [base.Change(domain, "ensure", driver.slice(spec.sketch(item(domain, region="mars"))))])
        assert results[0].outcome == "failed" and "no server with the dns role in region mars" in results[0].message
