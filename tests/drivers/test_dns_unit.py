"""What the dns driver decides from a zone listing alone (issue 15): the digest of what
tenantctl writes into a primary, the account that records it, and when a listing entry
proves a zone current so that it is not read. The live half (zero PATCH on a forced
re-apply) is in test_dns.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from controller.drivers.powerdns import records

A = records.DnsServer("drv-a", "eu-west", "127.0.40.1")
C = records.DnsServer("drv-c", "us-east", "127.0.42.1")
D = records.DnsServer("drv-d", "ap-southeast", "::1")


def wanted(ip: str = "127.0.40.1", sites: tuple[str, ...] = (), manage: bool = False,
           servers: tuple[records.DnsServer, ...] = (A, C), **extra: Any) -> records.Wanted:
    slice_ = {"ip": ip, "dns": {"mode": "primary", "primaries": []}, "sites": list(sites),
              "mail": {"enabled": True}, "region": "eu-west", "server": "web-1", "manageDNS": manage, **extra}
    return records.wanted("ex.org", slice_, list(servers), "ns.test.", "hostmaster.test.")  # type: ignore[arg-type]


def digest_of(want: records.Wanted) -> str:
    p = want.placements[0]
    return records.digest(want.rrsets[p.zone], records.primary_metadata(p), want.manage_dns)


def entry(account: str | None, serial: int = 2026113001, kind: str = "Master", masters: list[str] | None = None
          ) -> dict[str, Any]:
    """A zone as ``GET /zones`` lists it (the fields the driver reads)."""
    return {"name": "ex.org.", "kind": kind, "masters": masters or [], "serial": serial, "account": account}


class TestDigest:
    def test_the_same_wanted_content_has_the_same_digest(self) -> None:
        assert digest_of(wanted()) == digest_of(wanted())
        assert len(digest_of(wanted())) == 12

    @pytest.mark.parametrize("other", [
        pytest.param(wanted(ip="127.0.40.2"), id="address"),
        pytest.param(wanted(sites=("blog.ex.org",)), id="new-host"),
        pytest.param(wanted(manage=True), id="manage-dns"),
        pytest.param(wanted(servers=(A, C, D)), id="another-secondary"),
    ])
    def test_any_change_of_what_is_written_changes_it(self, other: records.Wanted) -> None:
        assert digest_of(other) != digest_of(wanted())

    def test_a_ttl_change_changes_it(self) -> None:
        want = wanted()
        zone = want.placements[0].zone
        rrsets = dict(want.rrsets[zone])
        key = (zone, "A")
        rrsets[key] = dataclasses.replace(rrsets[key], ttl=rrsets[key].ttl + 1)
        meta = records.primary_metadata(want.placements[0])
        assert records.digest(rrsets, meta, False) != digest_of(want)

    def test_a_moving_subscription_s_address_records_have_the_short_ttl(self) -> None:
        normal = wanted()
        moving = wanted(addressTtl=60)
        ttls = {k: rr.ttl for k, rr in moving.rrsets["ex.org."].items()}
        assert {t for (_n, kind), t in ttls.items() if kind in ("A", "AAAA")} == {60}
        assert {k: rr.ttl for k, rr in normal.rrsets["ex.org."].items() if k[1] not in ("A", "AAAA")} == {
            k: t for k, t in ttls.items() if k[1] not in ("A", "AAAA")}  # SOA, NS, MX as they were
        assert {rr.ttl for k, rr in normal.rrsets["ex.org."].items() if k[1] == "A"} == {300}

    def test_the_soa_serial_and_record_order_do_not_count(self) -> None:
        want = wanted()
        zone = want.placements[0].zone
        rrsets = dict(want.rrsets[zone])
        soa = rrsets[(zone, "SOA")]
        parts = soa.records[0].split()
        parts[2] = "2026113099"
        rrsets[(zone, "SOA")] = dataclasses.replace(soa, records=(" ".join(parts),))
        ns = rrsets[(zone, "NS")]
        rrsets[(zone, "NS")] = dataclasses.replace(ns, records=tuple(reversed(ns.records)))
        meta = records.primary_metadata(want.placements[0])
        assert len(ns.records) == 2
        assert records.digest(rrsets, meta, False) == digest_of(want)

    def test_metadata_names_every_secondary(self) -> None:
        p = wanted(servers=(A, C, D)).placements[0]
        assert records.primary_metadata(p) == {"ALSO-NOTIFY": ["127.0.42.1:53", "::1:53"],
                                               "ALLOW-AXFR-FROM": ["127.0.42.1/32", "::1/128"]}


class TestAccount:
    @pytest.mark.parametrize(("value", "parsed"), [
        pytest.param(records.account("ex.org", 7, "0123456789ab"), ("ex.org", 7, "0123456789ab"), id="with-digest"),
        pytest.param("tenantctl:ex.org@7", ("ex.org", 7, None), id="before-issue-15"),
        pytest.param(records.account("ex.org"), ("ex.org", None, None), id="secondary"),
        pytest.param(records.account("ex.org", None, "0123456789ab"), ("ex.org", None, None), id="digest-needs-serial"),
        pytest.param("customer", (None, None, None), id="foreign"),
        pytest.param(None, (None, None, None), id="none"),
    ])
    def test_round_trip(self, value: str | None, parsed: tuple[str | None, int | None, str | None]) -> None:
        assert records.parse_account_full(value) == parsed
        assert records.parse_account(value) == parsed[:2]


class TestUpToDate:
    """Whether the listing entry alone proves the primary holds what is wanted."""

    def test_recorded_serial_and_digest_match(self) -> None:
        d = digest_of(wanted())
        assert records.up_to_date(entry(records.account("ex.org", 2026113001, d)), "ex.org", d)

    @pytest.mark.parametrize("info", [
        pytest.param(None, id="missing"),
        pytest.param(entry(records.account("ex.org", 2026113001, "000000000000")), id="other-content"),
        pytest.param(entry(records.account("ex.org", 2026113001, "D"), serial=2026113002), id="edited-since"),
        pytest.param(entry("tenantctl:ex.org@2026113001"), id="no-digest-yet"),
        pytest.param(entry(records.account("ex.org")), id="no-serial"),
        pytest.param(entry(records.account("other.org", 2026113001, "D")), id="another-subscription"),
        pytest.param(entry("customer"), id="foreign"),
        pytest.param(entry(records.account("ex.org", 2026113001, "D"), kind="Slave", masters=["192.0.2.1"]),
                     id="a-secondary"),
        pytest.param(entry(records.account("ex.org", 2026113001, "D"), kind="Native"), id="native"),
    ])
    def test_anything_else_is_read(self, info: dict[str, Any] | None) -> None:
        if info is not None and info["account"].endswith("/D"):
            info = {**info, "account": info["account"][:-1] + digest_of(wanted())}
        assert not records.up_to_date(info, "ex.org", digest_of(wanted()))


class TestOwned:
    def test_each_subscription_gets_its_own_zones_of_every_server(self) -> None:
        from controller.drivers.dns import driver

        listing = {
            "drv-a": {"ex.org.": entry(records.account("ex.org", 5, "d")), "foreign.org.": entry("someone"),
                      "alias.org.": entry(records.account("ex.org")), "none.org.": entry(None)},
            "drv-c": {"ex.org.": entry(records.account("ex.org"), kind="Slave"),
                      "other.org.": entry(records.account("other.org", 7))},
        }
        assert driver.owned(listing) == {
            "ex.org": [("drv-a", "ex.org."), ("drv-a", "alias.org."), ("drv-c", "ex.org.")],
            "other.org": [("drv-c", "other.org.")],
        }
