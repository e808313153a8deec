"""The ``servers`` stack: the servers of each region at a cloud provider.

Per server: the server itself, a firewall opening what its roles serve (SSH only from
``adminCidrs``, where tenantctl connects from), the project's SSH keys, and one floating
IP per dedicated address. The provider is chosen by config (``provider``); ``hcloud``
(Hetzner Cloud) is the one implemented. The stack exports ``inventory`` (format in
``controller/kube/inventory.py``), which ``tenantctl infra servers`` turns into Server
documents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

ROLES = ("web", "php", "db-mariadb", "db-postgresql", "dns", "backup")
#: What each role serves to the world: (protocol, port).
ROLE_PORTS: dict[str, tuple[tuple[str, str], ...]] = {
    "web": (("tcp", "80"), ("tcp", "443")),
    "dns": (("tcp", "53"), ("udp", "53")),
}


@dataclass(frozen=True)
class ServerSpec:
    name: str
    region: str
    location: str
    type: str
    roles: tuple[str, ...]
    dedicated_ips: int = 0
    #: passed through to the inventory (Server documents)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Spec:
    provider: str
    image: str
    admin_cidrs: tuple[str, ...]
    ssh_keys: Mapping[str, str]
    regions: Mapping[str, Mapping[str, Any]]
    servers: tuple[ServerSpec, ...]


def read_spec(cfg: pulumi.Config) -> Spec:
    """The stack's config, checked: a wrong value stops the program with its key."""
    regions = cfg.require_object("regions")
    if not isinstance(regions, dict) or not regions:
        raise ValueError("config regions: expected a mapping of region names to {location, servers}")
    servers: list[ServerSpec] = []
    for region, r in regions.items():
        for s in r.get("servers", []):
            roles = tuple(s.get("roles") or ())
            unknown = sorted(set(roles) - set(ROLES))
            if not roles or unknown:
                raise ValueError(f"config regions.{region}: server {s.get('name')!r} has roles {list(roles)} "
                                 f"(expected some of {', '.join(ROLES)})")
            servers.append(ServerSpec(
                name=s["name"], region=region, location=s.get("location") or r["location"], type=s["type"],
                roles=roles, dedicated_ips=int(s.get("dedicatedIps", 0)),
                extra={k: s[k] for k in ("capacity", "offers", "phpDefaults") if k in s},
            ))
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise ValueError("config regions: a server name is used twice")
    return Spec(
        provider=cfg.get("provider") or "hcloud",
        image=cfg.get("image") or "debian-12",
        admin_cidrs=tuple(cfg.get_object("adminCidrs") or ()),
        ssh_keys=dict(cfg.get_object("sshKeys") or {}),
        regions={k: {"location": v["location"], "timezone": v.get("timezone")} for k, v in regions.items()},
        servers=tuple(servers),
    )


@dataclass
class Created:
    """What a provider created for one server: the outputs the inventory needs."""

    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[str]
    dedicated: list[pulumi.Output[str]]


def firewall_rules(roles: Sequence[str], admin_cidrs: Sequence[str]) -> list[dict[str, Any]]:
    """Inbound rules of a server with these roles (everything else is closed)."""
    anywhere = ["0.0.0.0/0", "::/0"]
    rules = [{"direction": "in", "protocol": "icmp", "source_ips": anywhere, "description": "ping"}]
    if admin_cidrs:
        rules.append({"direction": "in", "protocol": "tcp", "port": "22", "source_ips": list(admin_cidrs),
                      "description": "ssh from tenantctl"})
    seen: set[tuple[str, str]] = set()
    for role in roles:
        for proto, port in ROLE_PORTS.get(role, ()):
            if (proto, port) not in seen:
                seen.add((proto, port))
                rules.append({"direction": "in", "protocol": proto, "port": port, "source_ips": anywhere,
                              "description": f"{role} {proto}/{port}"})
    return rules


def _hcloud(spec: Spec) -> dict[str, Created]:
    import pulumi_hcloud as hcloud

    keys = [hcloud.SshKey(f"key-{name}", name=name, public_key=key) for name, key in sorted(spec.ssh_keys.items())]
    created: dict[str, Created] = {}
    for s in spec.servers:
        labels = {"tenantctl.io/region": s.region, "tenantctl.io/managed": "true"}
        fw = hcloud.Firewall(f"fw-{s.name}", name=f"tenantctl-{s.name}", labels=labels,
                             rules=[hcloud.FirewallRuleArgs(**r) for r in firewall_rules(s.roles, spec.admin_cidrs)])
        server = hcloud.Server(
            s.name, name=s.name, server_type=s.type, image=spec.image, location=s.location, labels=labels,
            ssh_keys=[k.id for k in keys], firewall_ids=[fw.id.apply(int)],
            public_nets=[hcloud.ServerPublicNetArgs(ipv4_enabled=True, ipv6_enabled=True)],
        )
        dedicated = [
            hcloud.FloatingIp(f"{s.name}-dedicated-{i}", type="ipv4", home_location=s.location, labels=labels,
                              description=f"dedicated address {i} of {s.name}",
                              server_id=server.id.apply(int)).ip_address
            for i in range(1, s.dedicated_ips + 1)
        ]
        created[s.name] = Created(server.ipv4_address, server.ipv6_address, dedicated)
    return created


PROVIDERS: dict[str, Callable[[Spec], dict[str, Created]]] = {"hcloud": _hcloud}


def build(spec: Spec) -> pulumi.Output[dict[str, Any]]:
    """Create the servers; the inventory as an output."""
    if spec.provider not in PROVIDERS:
        raise ValueError(f"config provider: {spec.provider!r} is not supported (expected {', '.join(PROVIDERS)})")
    created = PROVIDERS[spec.provider](spec)

    def entry(s: ServerSpec) -> pulumi.Output[dict[str, Any]]:
        c = created[s.name]

        def fill(v: list[Any]) -> dict[str, Any]:
            return {"name": s.name, "region": s.region, "location": s.location, "serverType": s.type,
                    "ipv4": v[0], "ipv6": v[1], "dedicatedIps": list(v[2]), "roles": list(s.roles), **s.extra}

        return pulumi.Output.all(c.ipv4, c.ipv6, pulumi.Output.all(*c.dedicated)).apply(fill)

    return pulumi.Output.all(*[entry(s) for s in spec.servers]).apply(
        lambda entries: {"version": 1, "provider": spec.provider, "regions": {k: dict(v) for k, v in
                                                                             spec.regions.items()},
                         "servers": list(entries)})


def main() -> pulumi.Output[dict[str, Any]]:
    """The program: read the config, create, export (and return) the inventory."""
    inventory = build(read_spec(pulumi.Config()))
    pulumi.export("inventory", inventory)
    return inventory
