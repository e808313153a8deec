"""Pure decisions of the dns driver: which zones a subscription has, where they are
served, what tenantctl's rrsets in them are, and the minimal PATCH from what a primary
holds to what is wanted. No I/O here except reading the zone template file once.

Ownership (DNS-3): an rrset is tenantctl's when it carries a PowerDNS comment whose
``account`` is ``tenantctl``. A customer takes an rrset over by replacing it without
that comment; with the manageDNS permission such rrsets are kept, without it they are
replaced or removed. The SOA is always tenantctl's (its serial is PowerDNS's).

Fencing (issue 10 item 4, DR-1): a zone written for a subscription that was moved
carries the subscription's generation as the custom metadata ``X-TENANTCTL-GENERATION``
(PowerDNS accepts any kind starting with ``X-`` through the API); a zone without it is
at generation 1, which is never written (``generation_of``, ``primary_metadata``).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from controller.drivers import slices

MARK = "tenantctl"
#: The zone's ``account`` is ``tenantctl:<subscription>[@<serial applied>[/<digest>]]``:
#: the serial tenantctl left after its last write and the digest of what it wrote then
#: (``digest``). Both in the zone listing (``GET /zones``): a zone whose serial is still
#: the recorded one and whose digest is the wanted one needs no read (``up_to_date``).
ACCOUNT_PREFIX = "tenantctl:"
TEMPLATE = Path(__file__).resolve().parents[3] / "templates" / "zone" / "default.yaml.j2"

#: the zone metadata kind holding the subscription's generation that last wrote the zone
GENERATION = "X-TENANTCTL-GENERATION"

RRKey = tuple[str, str]  # (absolute name, type)


def absolute(name: str) -> str:
    """PowerDNS wants canonical names: lower case, trailing dot (422 otherwise)."""
    return name.lower().rstrip(".") + "."


def in_zone(name: str, zone: str) -> bool:
    n, z = absolute(name), absolute(zone)
    return n == z or n.endswith("." + z)


@dataclass(frozen=True)
class DnsServer:
    name: str
    region: str
    address: str

    def ns_name(self, suffix: str) -> str:
        return absolute(f"ns-{self.name}.{suffix}")

    @property
    def endpoint(self) -> str:
        """``IP:53`` as PowerDNS writes it (port 53 is implied)."""
        return self.address


@dataclass(frozen=True)
class Placement:
    """Where one zone is served: a primary (primary mode) or none (secondary mode)."""

    zone: str
    primary: DnsServer | None
    secondaries: tuple[DnsServer, ...]
    #: masters of the secondary zones: the primary, or the customer's own (DNS-1)
    masters: tuple[str, ...]

    @property
    def servers(self) -> tuple[DnsServer, ...]:
        return ((self.primary,) if self.primary else ()) + self.secondaries


@dataclass(frozen=True)
class Wanted:
    """Everything the driver must make true for one subscription."""

    sub: str
    placements: tuple[Placement, ...]
    #: zone -> its tenantctl rrsets (primary mode only)
    rrsets: Mapping[str, Mapping[RRKey, Rrset]] = field(default_factory=dict)
    manage_dns: bool = False
    #: the subscription's generation in the controller's view (fencing; 1: never moved)
    generation: int = 1


@dataclass(frozen=True)
class Rrset:
    name: str
    type: str
    ttl: int
    records: tuple[str, ...]

    def same(self, other: Mapping[str, Any]) -> bool:
        """Whether a PowerDNS rrset holds these records (SOA: serial ignored)."""
        theirs = sorted(r["content"] for r in other.get("records", []) if not r.get("disabled"))
        mine = sorted(self.records)
        if self.type == "SOA":
            theirs = [_soa_without_serial(c) for c in theirs]
            mine = [_soa_without_serial(c) for c in mine]
        return int(other.get("ttl", -1)) == self.ttl and theirs == mine

    def patch(self, current_serial: int | None = None) -> dict[str, Any]:
        records = list(self.records)
        if self.type == "SOA" and current_serial is not None:
            parts = records[0].split()
            parts[2] = str(current_serial)
            records = [" ".join(parts)]
        return {
            "name": self.name, "type": self.type, "ttl": self.ttl, "changetype": "REPLACE",
            "records": [{"content": c, "disabled": False} for c in records],
            "comments": [{"content": "managed by tenantctl", "account": MARK}],
        }


def _soa_without_serial(content: str) -> str:
    parts = content.split()
    return " ".join(parts[:2] + parts[3:]) if len(parts) == 7 else content


def owned(rrset: Mapping[str, Any]) -> bool:
    return any(c.get("account") == MARK for c in rrset.get("comments", []))


def account(sub: str, serial: int | None = None, digest: str | None = None) -> str:
    """The zone's account; the digest is kept only with a serial."""
    if serial is None:
        return f"{ACCOUNT_PREFIX}{sub}"
    return f"{ACCOUNT_PREFIX}{sub}@{serial}" + (f"/{digest}" if digest else "")


def parse_account(value: str | None) -> tuple[str | None, int | None]:
    """``(subscription, applied serial)`` of a zone's account, ``(None, None)`` if foreign."""
    sub, serial, _digest = parse_account_full(value)
    return sub, serial


def parse_account_full(value: str | None) -> tuple[str | None, int | None, str | None]:
    """``(subscription, applied serial, digest)``; ``(None, None, None)`` if foreign."""
    if not value or not value.startswith(ACCOUNT_PREFIX):
        return None, None, None
    sub, _, rest = value[len(ACCOUNT_PREFIX):].partition("@")
    serial, _, digest = rest.partition("/")
    return sub, int(serial) if serial.isdigit() else None, digest or None


# --- layout --------------------------------------------------------------------


def zones_of(sub: str, sites: Sequence[str]) -> dict[str, list[str]]:
    """Zone apex -> the host names in it: the domain's zone, and one zone per alias
    that is not inside another zone. Apex and ``www`` of each zone come first."""
    zones: dict[str, list[str]] = {absolute(sub): []}
    for site in sorted(sites, key=lambda s: (s.count("."), s)):
        if not any(in_zone(site, z) for z in zones):
            zones[absolute(site)] = []
    for z, hosts in zones.items():
        hosts += [z, absolute("www." + z)]
    for site in sites:
        home = max((z for z in zones if in_zone(site, z)), key=len)
        name = absolute(site)
        if name not in zones[home]:
            zones[home].append(name)
    return zones


def dns_servers(servers: Sequence[DnsServer]) -> list[DnsServer]:
    return sorted(servers, key=lambda s: s.name)


def place(
    sub: str, slice_: slices.Zone, servers: Sequence[DnsServer]
) -> tuple[Placement, ...]:
    """Primary mode: the primary is the subscription's own server if it serves DNS in its
    region, else the first dns server of the region by name; every other dns server is
    a secondary. Secondary mode (DNS-1): the region's dns servers are secondaries of the
    customer's primaries. Raises ``LookupError`` when the region has no dns server."""
    region = slice_["region"]
    ordered = dns_servers(servers)
    local = [s for s in ordered if s.region == region]
    if not local:
        raise LookupError(f"no server with the dns role in region {region}")
    zones = zones_of(sub, slice_["sites"])
    dns = slice_["dns"]
    if dns["mode"] == "secondary":
        masters = tuple(dns["primaries"])
        if not masters:
            raise LookupError("dns mode secondary needs the customer's primaries (DNS-1)")
        return tuple(Placement(z, None, tuple(local), masters) for z in zones)
    own = [s for s in local if s.name == slice_.get("server")]
    primary = (own or local)[0]
    others = tuple(s for s in ordered if s != primary)
    return tuple(Placement(z, primary, others, (primary.endpoint,)) for z in zones)


#: libyaml's safe loader (about 9x PyYAML's own: a forced re-apply renders every zone)
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _template(path: Path) -> jinja2.Template:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    return env.from_string(path.read_text())


def render(
    zone: str, hosts: Sequence[str], ip: str, mail: bool, nameservers: Sequence[str], hostmaster: str,
    template: Path = TEMPLATE, address_ttl: int = slices.ADDRESS_TTL,
) -> dict[RRKey, Rrset]:
    """The zone template's rrsets for one zone (DNS-2), merged by (name, type);
    ``address_ttl``: the TTL of the records naming the subscription's address."""
    family = "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
    text = _template(template).render(zone=zone, hosts=list(hosts), ip=ip, family=family, mail=mail,
                                      nameservers=list(nameservers), hostmaster=hostmaster,
                                      address_ttl=address_ttl)
    out: dict[RRKey, Rrset] = {}
    for doc in yaml.load(text, Loader=_LOADER) or []:
        key = (absolute(doc["name"]), str(doc["type"]).upper())
        prev = out.get(key)
        recs = tuple(dict.fromkeys((*(prev.records if prev else ()), *(str(r) for r in doc["records"]))))
        out[key] = Rrset(key[0], key[1], int(doc["ttl"]), recs)
    return out


def wanted(
    sub: str, slice_: slices.DnsSlice, servers: Sequence[DnsServer], ns_suffix: str, hostmaster: str,
    template: Path = TEMPLATE, generation: int = 1,
) -> Wanted:
    placements = place(sub, slice_, servers)
    rrsets: dict[str, Mapping[RRKey, Rrset]] = {}
    zones = zones_of(sub, slice_["sites"])
    for p in placements:
        if p.primary is None:
            continue
        ns = [s.ns_name(ns_suffix) for s in p.servers]
        ip = slice_["ip"]
        if ip is None:
            raise LookupError(f"{sub} has no address yet (not placed): no records to point at it")
        rrsets[p.zone] = render(p.zone, zones[p.zone], ip, bool(slice_["mail"]["enabled"]), ns,
                                absolute(hostmaster), template, slice_.get("addressTtl", slices.ADDRESS_TTL))
    return Wanted(sub, placements, rrsets, bool(slice_.get("manageDNS", False)), generation)


# --- diff -----------------------------------------------------------------------


def diff(
    want: Mapping[RRKey, Rrset], have: Sequence[Mapping[str, Any]], manage_dns: bool
) -> list[dict[str, Any]]:
    """The minimal rrset PATCH (REPLACE/DELETE only where they differ)."""
    current = {(absolute(r["name"]), r["type"]): r for r in have}
    serial = None
    soa = current.get((next(iter(want))[0], "SOA")) if want else None
    if soa and soa.get("records"):
        serial = int(soa["records"][0]["content"].split()[2])
    out: list[dict[str, Any]] = []
    for key, rr in want.items():
        cur = current.get(key)
        if cur is None:
            out.append(rr.patch(serial))
        elif not owned(cur) and manage_dns and rr.type != "SOA":
            continue  # the customer's own rrset (DNS-3)
        elif not owned(cur) or not rr.same(cur):
            out.append(rr.patch(serial))
    for key, cur in sorted(current.items()):
        if key in want or (manage_dns and not owned(cur)):
            continue
        out.append({"name": key[0], "type": key[1], "changetype": "DELETE"})
    return out


def rrset_drift(want: Mapping[RRKey, Rrset], have: Sequence[Mapping[str, Any]], manage_dns: bool) -> list[str]:
    """Human-readable ``name/type`` of what ``diff`` would change."""
    return [f"{p['name']}/{p['type']} {p['changetype'].lower()}" for p in diff(want, have, manage_dns)]


# --- what a primary must hold, and whether the listing says it does --------------


def primary_metadata(p: Placement, generation: int = 1) -> dict[str, list[str]]:
    """The zone metadata tenantctl sets on a primary: its secondaries may transfer the
    zone and are notified of every change; the fence first (``GENERATION``, only above
    generation 1: the digest, and so the listing's proof, of a zone never moved stays
    what it was, and a move's new generation makes every primary of it written once)."""
    fence = {GENERATION: [str(generation)]} if generation > 1 else {}
    return {
        **fence,
        "ALSO-NOTIFY": sorted(f"{s.address}:53" for s in p.secondaries),
        "ALLOW-AXFR-FROM": sorted(f"{s.address}/32" if ":" not in s.address else f"{s.address}/128"
                                  for s in p.secondaries),
    }


def generation_of(metadata: Mapping[str, Sequence[str]]) -> int:
    """The generation a zone's metadata records (1 without one); ValueError when it is
    not one value that is a positive integer (never guessed: the zone is not written)."""
    values = list(metadata.get(GENERATION, []))
    if not values:
        return 1
    if len(values) != 1 or not (values[0].isascii() and values[0].isdigit()) or int(values[0]) < 1:
        raise ValueError(f"zone metadata {GENERATION} is {values!r}, not one positive integer")
    return int(values[0])


def digest(rrsets: Mapping[RRKey, Rrset], metadata: Mapping[str, Sequence[str]], manage_dns: bool) -> str:
    """A short digest of everything tenantctl writes into a primary zone: its rrsets
    (SOA serial excluded), its metadata, and whether the customer's rrsets are kept."""
    body = {
        "rrsets": sorted([rr.name, rr.type, rr.ttl, sorted(_soa_without_serial(c) if rr.type == "SOA" else c
                                                          for c in rr.records)] for rr in rrsets.values()),
        "metadata": {k: sorted(v) for k, v in sorted(metadata.items())},
        "manageDNS": manage_dns,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def up_to_date(info: Mapping[str, Any] | None, sub: str, wanted_digest: str) -> bool:
    """Whether a primary zone's listing entry (``GET /zones``) proves it holds what is
    wanted without reading it: tenantctl's Master zone of ``sub``, nobody wrote to it
    since tenantctl's last write (serial still the recorded one: the API's SOA-EDIT-API
    moves it on every rrset change) and that write was the wanted content (digest)."""
    if info is None or info.get("kind") != "Master" or info.get("masters"):
        return False
    owner, serial, recorded = parse_account_full(info.get("account"))
    return owner == sub and serial is not None and serial == int(info.get("serial") or 0) and recorded == wanted_digest

