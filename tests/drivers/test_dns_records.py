"""The dns driver's pure decisions: zones, placement, template, minimal PATCHes (DNS-1..3)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.drivers.dns import metrics
from controller.drivers.powerdns import records

A = records.DnsServer("drv-a", "eu-west", "127.0.40.1")
B = records.DnsServer("drv-b", "eu-west", "127.0.41.1")
C = records.DnsServer("drv-c", "us-east", "127.0.42.1")


def slice_(**kw: Any) -> dict[str, Any]:
    base = {"ip": "127.0.40.1", "dns": {"mode": "primary", "primaries": []}, "sites": [],
            "mail": {"enabled": True}, "region": "eu-west", "server": "web-1", "manageDNS": False}
    return {**base, **kw}


def wanted(**kw: Any) -> records.Wanted:
    return records.wanted("ex.org", slice_(**kw), [A, C], "ns.test.", "hostmaster.test.")


def pdns(rr: records.Rrset, *, mark: bool = True, serial: int = 5) -> dict[str, Any]:
    recs = [c.replace(" 0 ", f" {serial} ", 1) if rr.type == "SOA" else c for c in rr.records]
    return {"name": rr.name, "type": rr.type, "ttl": rr.ttl, "records": [{"content": c, "disabled": False} for c in recs],
            "comments": [{"content": "x", "account": "tenantctl"}] if mark else []}


class TestLayout:
    def test_aliases_get_their_own_zone_and_subdomains_stay_in_theirs(self) -> None:
        zones = records.zones_of("ex.org", ["blog.ex.org", "ex.net", "shop.ex.net"])
        assert zones == {"ex.org.": ["ex.org.", "www.ex.org.", "blog.ex.org."],
                         "ex.net.": ["ex.net.", "www.ex.net.", "shop.ex.net."]}

    @pytest.mark.parametrize(("server", "servers", "primary"), [
        pytest.param("web-1", [A, B, C], A, id="first-dns-server-of-the-region-by-name"),
        pytest.param("drv-b", [A, B, C], B, id="own-server-when-it-serves-dns"),
    ])
    def test_primary_in_the_region_secondaries_everywhere_else(
        self, server: str, servers: list[records.DnsServer], primary: records.DnsServer,
    ) -> None:
        [p] = records.place("ex.org", slice_(server=server), servers)
        assert p.primary == primary
        assert set(p.secondaries) == set(servers) - {primary}
        assert p.masters == (primary.address,)

    def test_secondary_mode_serves_the_customers_zone_in_the_region(self) -> None:
        [p] = records.place("ex.org", slice_(dns={"mode": "secondary", "primaries": ["192.0.2.53"]}), [A, B, C])
        assert p.primary is None and p.secondaries == (A, B) and p.masters == ("192.0.2.53",)

    def test_no_dns_server_in_the_region(self) -> None:
        with pytest.raises(LookupError, match="region mars"):
            records.place("ex.org", slice_(region="mars"), [A, C])


class TestTemplate:
    def test_dns2_records(self) -> None:
        rr = wanted(sites=["blog.ex.org"]).rrsets["ex.org."]
        assert rr[("ex.org.", "NS")].records == ("ns-drv-a.ns.test.", "ns-drv-c.ns.test.")
        assert rr[("ex.org.", "SOA")].records[0].startswith("ns-drv-a.ns.test. hostmaster.test. 0 ")
        assert {k for k, v in rr.items() if v.type == "A"} == {
            ("ex.org.", "A"), ("www.ex.org.", "A"), ("blog.ex.org.", "A"), ("mail.ex.org.", "A")}
        assert rr[("ex.org.", "MX")].records == ("10 mail.ex.org.",)
        assert rr[("ex.org.", "TXT")].records == ('"v=spf1 a mx ~all"',)

    def test_ipv6_address_means_aaaa(self) -> None:
        rr = wanted(ip="2001:db8::1").rrsets["ex.org."]
        assert rr[("ex.org.", "AAAA")].records == ("2001:db8::1",)
        assert not any(t == "A" for _, t in rr)


class TestDiff:
    def test_nothing_to_do_when_equal_whatever_the_serial(self) -> None:
        want = wanted().rrsets["ex.org."]
        assert records.diff(want, [pdns(r, serial=2026112207) for r in want.values()], False) == []

    def test_only_changed_rrsets_are_replaced_soa_keeps_its_serial(self) -> None:
        want = wanted().rrsets["ex.org."]
        have = [pdns(r) for r in wanted(ip="127.0.40.9").rrsets["ex.org."].values()]
        patch = records.diff(want, have, False)
        assert {(p["name"], p["type"]) for p in patch} == {
            ("ex.org.", "A"), ("www.ex.org.", "A"), ("mail.ex.org.", "A")}
        assert all(p["changetype"] == "REPLACE" and p["comments"][0]["account"] == "tenantctl" for p in patch)

    @pytest.mark.parametrize(("manage", "kept"), [pytest.param(True, True, id="manageDNS"),
                                                   pytest.param(False, False, id="no-manageDNS")])
    def test_customer_rrsets(self, manage: bool, kept: bool) -> None:
        want = wanted().rrsets["ex.org."]
        have = [pdns(r) for r in want.values()]
        have.append({"name": "_v.ex.org.", "type": "TXT", "ttl": 60, "records": [{"content": '"x"'}], "comments": []})
        have[2] = {**have[2], "records": [{"content": "192.0.2.1"}], "comments": []}  # taken over: apex A
        patch = records.diff(want, have, manage)
        if kept:
            assert patch == []
        else:
            assert {(p["name"], p["type"], p["changetype"]) for p in patch} == {
                ("_v.ex.org.", "TXT", "DELETE"), ("ex.org.", "A", "REPLACE")}

    def test_tenantctls_obsolete_rrsets_go_even_with_manage_dns(self) -> None:
        want = wanted().rrsets["ex.org."]
        have = [pdns(r) for r in wanted(sites=["old.ex.org"]).rrsets["ex.org."].values()]
        assert records.diff(want, have, True) == [{"name": "old.ex.org.", "type": "A", "changetype": "DELETE"}]


def test_account_round_trip() -> None:
    assert records.parse_account(records.account("ex.org", 7)) == ("ex.org", 7)
    assert records.parse_account(records.account("ex.org")) == ("ex.org", None)
    assert records.parse_account("customer") == (None, None)


def test_zones_by_state() -> None:
    listing = {
        "drv-a": {"a.": {"kind": "Master", "serial": 3, "account": "tenantctl:a@3"},
                  "b.": {"kind": "Master", "serial": 5, "account": "tenantctl:b@5"},
                  "own.": {"kind": "Native", "serial": 1, "account": ""}},
        "drv-c": {"a.": {"kind": "Slave", "serial": 3, "masters": ["127.0.40.1"], "account": "tenantctl:a"},
                  "b.": {"kind": "Slave", "serial": 4, "masters": ["127.0.40.1"], "account": "tenantctl:b"},
                  "c.": {"kind": "Slave", "serial": 0, "masters": ["192.0.2.1"], "account": "tenantctl:c"}},
    }
    metrics.observe(listing, {"drv-a": "127.0.40.1", "drv-c": "127.0.42.1"})
    counts = metrics.zones_by_state()
    assert counts[("drv-a", "primary")] == 2 and counts[("drv-a", "foreign")] == 1
    assert counts[("drv-c", "secondary")] == 1 and counts[("drv-c", "behind")] == 1
    assert counts[("drv-c", "empty")] == 1


def test_ns_suffix_and_hostmaster_come_from_the_environment_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller import errors
    from controller.drivers.dns import driver

    monkeypatch.setenv("TENANTCTL_DNS_NS_SUFFIX", "NS.Example.NET.")
    monkeypatch.setenv("TENANTCTL_DNS_HOSTMASTER", "hostmaster.example.net")
    s = driver.Settings()
    assert (s.ns_suffix, s.hostmaster) == ("ns.example.net.", "hostmaster.example.net.")
    monkeypatch.setenv("TENANTCTL_DNS_NS_SUFFIX", "evil.example.net. 60 IN TXT x")
    with pytest.raises(errors.PermanentError, match="TENANTCTL_DNS_NS_SUFFIX"):
        driver.Settings()
