"""The ``dns`` stack: the NS suffix zone.

tenantctl gives every customer zone NS records ``ns-<server>.<suffix>`` (README, DNS
settings for production; ``TENANTCTL_DNS_NS_SUFFIX``). This stack makes those names
resolve: it creates the zone ``<suffix>`` at the provider (Hetzner Cloud DNS) with an A
(and AAAA) record ``ns-<server>`` for every server named in ``nameServers`` (servers
with the ``dns`` role; their addresses come from the ``servers`` stack's inventory
through a StackReference), and delegates ``<suffix>`` from its parent zone (when
that zone is hosted there too) with an NS record set naming the provider's
authoritative servers. Exports ``inventory``: the suffix, each name server with its
addresses, and the provider's authoritative servers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi


def _relative(name: str, zone: str) -> str:
    name, zone = name.rstrip("."), zone.rstrip(".")
    if name == zone:
        return "@"
    if not name.endswith("." + zone):
        raise ValueError(f"config suffix: {name!r} is not inside the parent zone {zone!r}")
    return name[: -len(zone) - 1]


def addresses(inventory: Mapping[str, Any], server: str) -> dict[str, str]:
    """The addresses of ``server`` in the servers stack's inventory; it must have the dns role."""
    for s in inventory.get("servers", []):
        if s.get("name") == server:
            if "dns" not in s.get("roles", []):
                raise ValueError(f"config nameServers: {server!r} has no dns role in the servers stack")
            return {k: s[k] for k in ("ipv4", "ipv6") if s.get(k)}
    raise ValueError(f"config nameServers: {server!r} is not in the servers stack's inventory")


def build(suffix: str, parent_zone: str | None, servers: Sequence[str], inventory: pulumi.Input[Mapping[str, Any]],
          *, ipv6: bool = True) -> pulumi.Output[Any]:
    """The suffix zone, a name record set per server, the delegation; the inventory."""
    import pulumi_hcloud as hcloud

    if not servers:
        raise ValueError("config nameServers: name at least one server with the dns role")
    suffix = suffix.rstrip(".")
    delegation_label = _relative(suffix, parent_zone) if parent_zone else None
    zone = hcloud.Zone("suffix", name=suffix, mode="primary", ttl=3600, labels={"tenantctl.io/managed": "true"})
    inv = pulumi.Output.from_input(inventory)
    found = {name: inv.apply(functools.partial(_addresses_of, name)) for name in servers}
    rrsets: list[tuple[str, Any]] = []
    for name in servers:
        label = f"ns-{name}"
        families = [("A", "ipv4")] + ([("AAAA", "ipv6")] if ipv6 else [])
        for rtype, family in families:
            value = found[name].apply(functools.partial(_address, family=family, server=name))
            rrsets.append((f"{label}.{suffix}. {rtype}", hcloud.ZoneRrset(
                f"{label}-{rtype.lower()}", zone=zone.name, name=label, type=rtype, ttl=3600,
                records=[hcloud.ZoneRrsetRecordArgs(value=value)])))
    authoritative = zone.authoritative_nameservers.apply(lambda a: list(a.assigneds or []) if a else [])
    if parent_zone and delegation_label:
        rrsets.append((f"{suffix}. NS", hcloud.ZoneRrset(
            "delegation", zone=parent_zone.rstrip("."), name=delegation_label, type="NS", ttl=86400,
            records=authoritative.apply(lambda names: [hcloud.ZoneRrsetRecordArgs(value=n if n.endswith(".") else n + ".")
                                                       for n in names]))))
    # The inventory waits for every record set: it lists what exists.
    created = pulumi.Output.all(*[r.id for _, r in rrsets])
    return pulumi.Output.all(pulumi.Output.all(**found), authoritative, created).apply(lambda v: {
        "version": 1, "suffix": suffix + ".", "parentZone": parent_zone,
        "nameServers": [f"ns-{n}.{suffix}." for n in servers],
        "addresses": {f"ns-{n}.{suffix}.": v[0][n] for n in servers}, "authoritative": v[1],
        "records": [what for what, _ in rrsets],
    })


def _addresses_of(server: str, inventory: Mapping[str, Any]) -> dict[str, str]:
    return addresses(inventory, server)


def _address(found: Mapping[str, str], *, family: str, server: str) -> str:
    if family not in found:
        raise ValueError(f"server {server!r} has no {family} address in the servers stack's inventory")
    return found[family]


def main() -> pulumi.Output[Any]:
    """The program: read the config and the servers stack, create, export (and return) the inventory."""
    cfg = pulumi.Config()
    ref = pulumi.StackReference(cfg.require("serversStack"))
    out = build(cfg.require("suffix"), cfg.get("parentZone"), cfg.require_object("nameServers"),
                ref.require_output("inventory"), ipv6=cfg.get_bool("ipv6") is not False)
    pulumi.export("inventory", out)
    return out
