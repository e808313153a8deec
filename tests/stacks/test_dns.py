"""MOCK tests of the ``dns`` stack (pulumi.runtime.set_mocks, no CLI or cloud)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dns_stack
import pulumi
import pytest
import yaml

from .conftest import RecordingMocks

INVENTORY = {"version": 1, "provider": "hcloud", "servers": [
    {"name": "eu-west-1", "region": "eu-west", "ipv4": "203.0.113.10", "ipv6": "2001:db8::10",
     "roles": ["web", "dns"]},
    {"name": "eu-west-2", "region": "eu-west", "ipv4": "203.0.113.11", "roles": ["db-mariadb"]},
    {"name": "us-east-1", "region": "us-east", "ipv4": "203.0.113.20", "roles": ["dns"]},
]}


@pulumi.runtime.test
def test_suffix_zone_name_records_and_delegation(mocks: RecordingMocks) -> Any:
    """MOCK: zone ns.example.net, ns-<server> A/AAAA per dns server, NS delegation in example.net."""
    inv = dns_stack.build("ns.example.net.", "example.net", ["eu-west-1", "us-east-1"], INVENTORY, ipv6=False)

    def check(inv: dict[str, Any]) -> None:
        zones = mocks.of_type("hcloud:index/zone:Zone")
        assert [z.inputs["name"] for z in zones] == ["ns.example.net"]
        rrsets = {(r.inputs["zone"], r.inputs["name"], r.inputs["type"]): [x["value"] for x in r.inputs["records"]]
                  for r in mocks.of_type("hcloud:index/zoneRrset:ZoneRrset")}
        assert rrsets == {
            ("ns.example.net", "ns-eu-west-1", "A"): ["203.0.113.10"],
            ("ns.example.net", "ns-us-east-1", "A"): ["203.0.113.20"],
            ("example.net", "ns", "NS"): ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."],
        }
        assert inv["suffix"] == "ns.example.net."
        assert inv["nameServers"] == ["ns-eu-west-1.ns.example.net.", "ns-us-east-1.ns.example.net."]
        assert inv["addresses"]["ns-us-east-1.ns.example.net."] == {"ipv4": "203.0.113.20"}
        assert inv["authoritative"] == ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."]
        assert inv["records"] == ["ns-eu-west-1.ns.example.net. A", "ns-us-east-1.ns.example.net. A",
                                  "ns.example.net. NS"]

    return inv.apply(check)


@pulumi.runtime.test
def test_without_parent_zone_no_delegation(mocks: RecordingMocks) -> Any:
    """MOCK: the parent zone is elsewhere: only the suffix zone and its records."""
    inv = dns_stack.build("ns.example.net", None, ["eu-west-1"], INVENTORY)

    def check(inv: dict[str, Any]) -> None:
        rrsets = {(r.inputs["name"], r.inputs["type"]): [x["value"] for x in r.inputs["records"]]
                  for r in mocks.of_type("hcloud:index/zoneRrset:ZoneRrset")}
        assert rrsets == {("ns-eu-west-1", "A"): ["203.0.113.10"], ("ns-eu-west-1", "AAAA"): ["2001:db8::10"]}
        assert inv["parentZone"] is None

    return inv.apply(check)


@pulumi.runtime.test
def test_main_reads_the_servers_stack_through_a_stack_reference(mocks: RecordingMocks) -> Any:
    """MOCK: main() with Pulumi.example.yaml reads the servers stack's inventory through a StackReference."""
    with_v6 = [{**s, "ipv6": s.get("ipv6", "2001:db8::20")} for s in INVENTORY["servers"]]
    mocks.stack_outputs = {"inventory": {**INVENTORY, "servers": with_v6}}
    example = yaml.safe_load((Path(dns_stack.__file__).parent / "Pulumi.example.yaml").read_text())["config"]
    pulumi.runtime.set_all_config({k.replace("tenantctl-dns:", "tenantctl-test:"): v if isinstance(v, str)
                                   else json.dumps(v) for k, v in example.items()})
    try:
        inv = dns_stack.main()
    finally:
        pulumi.runtime.set_all_config({})

    def check(inv: dict[str, Any]) -> None:
        refs = mocks.of_type("pulumi:pulumi:StackReference")
        assert [r.name for r in refs] == ["acme/tenantctl-servers/prod"]
        assert inv["nameServers"] == ["ns-eu-west-1.ns.example.net.", "ns-us-east-1.ns.example.net."]
        assert "ns.example.net. NS" in inv["records"] and "ns-eu-west-1.ns.example.net. AAAA" in inv["records"]

    return inv.apply(check)


def test_suffix_outside_parent_is_refused() -> None:
    with pytest.raises(ValueError, match="not inside the parent zone"):
        dns_stack.build("ns.example.org", "example.net", ["eu-west-1"], INVENTORY)


@pytest.mark.parametrize(("server", "message"), [
    pytest.param("eu-west-2", "has no dns role", id="not-a-dns-server"),
    pytest.param("mars-1", "is not in the servers stack", id="unknown"),
])
def test_name_servers_must_be_dns_servers_of_the_inventory(server: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dns_stack.addresses(INVENTORY, server)
    assert dns_stack.addresses(INVENTORY, "us-east-1") == {"ipv4": "203.0.113.20"}


def test_aaaa_for_a_server_without_ipv6_is_refused() -> None:
    """Asking for AAAA records of a server that has no IPv6 address stops the program."""
    found = dns_stack.addresses(INVENTORY, "us-east-1")
    assert dns_stack._address(found, family="ipv4", server="us-east-1") == "203.0.113.20"
    with pytest.raises(ValueError, match="server 'us-east-1' has no ipv6 address"):
        dns_stack._address(found, family="ipv6", server="us-east-1")
