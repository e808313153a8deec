"""ACME DNS-01 through the PowerDNS API (issue 4 point 3).

For each order answered by DNS-01, ``_acme-challenge.<name>`` TXT rrsets go into the
subscription's zones on their PRIMARY dns server (one rrset PATCH per zone, marked as
tenantctl's like the dns driver's own rrsets); the secondaries are asked to transfer at
once; then every dns server that may be asked (the zone's primary and secondaries, or the
``dns01_resolvers`` of the settings) is queried over UDP until it answers the values,
bounded by ``dns01_timeout``. Afterwards the rrsets are removed again (also on failure),
and the zone's ``account`` serial mark is moved past tenantctl's own edits so that the
dns concern does not take them for a customer's.

Zones in dns mode ``secondary`` are the customer's (DNS-1): tenantctl cannot write into
them, so DNS-01 fails there with that reason (before anything is asked of the CA).
"""

from __future__ import annotations

import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from controller import errors
from controller.drivers import slices
from controller.drivers.context import Context
from controller.drivers.powerdns import api, records
from controller.drivers.tls import settings as settings_mod

log = logging.getLogger(__name__)

PREFIX = "_acme-challenge."
COMMENT = {"content": "ACME DNS-01 challenge, removed after the order (tenantctl tls)", "account": records.MARK}


class Unavailable(errors.TemporaryError):
    """DNS-01 cannot be done now for this subscription; ``str()`` says why."""


class NotPossible(errors.PermanentError):
    """DNS-01 can never be done for this subscription as it is (a customer's zone)."""


@dataclass
class ZoneWork:
    """The challenge rrsets of one zone, where they go and who must answer them."""

    zone: str
    primary: records.DnsServer
    secondaries: tuple[records.DnsServer, ...]
    #: ``_acme-challenge.name.`` -> TXT values (unquoted)
    txt: dict[str, list[str]]
    #: ``(address, port)`` of the servers that must answer before the challenge is answered
    check: list[tuple[str, int]] = field(default_factory=list)
    #: the zone's account before tenantctl's PATCH, and its serial then
    account_before: str | None = None
    serial_before: int | None = None
    published: bool = False


# --- a minimal DNS client (standard library) -------------------------------------------


def _qname(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"not a DNS name: {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _skip_name(data: bytes, off: int) -> int:
    while True:
        length = data[off]
        if length == 0:
            return off + 1
        if length & 0xC0 == 0xC0:
            return off + 2
        off += 1 + length


def query_txt(address: str, name: str, *, port: int = 53, timeout: float = 1.0) -> list[str]:
    """The TXT strings a server answers for ``name`` (one UDP query, no recursion):
    ``[]`` for NXDOMAIN/NODATA. Raises ``OSError`` (timeouts included) or ``ValueError``
    for an unusable answer (SERVFAIL, REFUSED, truncated, malformed)."""
    qid = random.getrandbits(16)
    packet = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + _qname(name) + struct.pack("!HH", 16, 1)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (address, port))
        while True:
            data, _peer = sock.recvfrom(65535)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                break
    try:
        _id, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", data[:12])
        rcode = flags & 0x000F
        if flags & 0x0200:
            raise ValueError("truncated answer")
        if rcode == 3:
            return []
        if rcode != 0:
            raise ValueError(f"rcode {rcode}")
        off = 12
        for _ in range(qd):
            off = _skip_name(data, off) + 4
        out: list[str] = []
        for _ in range(an):
            off = _skip_name(data, off)
            rtype, _cls, _ttl, rdlen = struct.unpack("!HHIH", data[off:off + 10])
            rdata = data[off + 10:off + 10 + rdlen]
            off += 10 + rdlen
            if rtype != 16:
                continue
            i, parts = 0, []
            while i < len(rdata):
                n = rdata[i]
                parts.append(rdata[i + 1:i + 1 + n].decode(errors="replace"))
                i += 1 + n
            out.append("".join(parts))
        return out
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed answer: {exc}") from exc


def _endpoint(text: str) -> tuple[str, int]:
    """``IP``, ``IP:port``, ``[v6]:port`` -> (address, port)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host, int(port or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


# --- the challenge rrsets ----------------------------------------------------------------


class Dns01:
    """Publishes, checks and removes DNS-01 challenge rrsets on the embedded PowerDNS."""

    def __init__(self, ctx: Context, cfg: settings_mod.Settings, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ctx = ctx
        self.cfg = cfg
        self.sleep = sleep
        self._clients: dict[str, api.Client] = {}  # by server and API port
        self._lock = threading.Lock()

    def servers(self) -> list[records.DnsServer]:
        return records.dns_servers([records.DnsServer(s.name, s.region, s.address)
                                    for s in self.ctx.servers.values() if "dns" in s.roles])

    def client(self, server: records.DnsServer) -> api.Client:
        with self._lock:
            key_ = f"{server.name}:{self.cfg.dns_api_port}"
            c = self._clients.get(key_)
            if c is None:
                key = self.ctx.secrets(server.name)["pdns_api_key"]
                c = api.Client(server.name, server.address, self.cfg.dns_api_port, key,
                               api.Settings(timeout=5.0, attempts=2, wait=0.2))
                self._clients[key_] = c
            return c

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    def plan(self, sub: str, slice_: slices.Tls, txt: Mapping[str, Sequence[str]]) -> list[ZoneWork]:
        """Which zone and primary each ``_acme-challenge`` name goes to (pure but for the
        server list). Raises ``NotPossible`` for a customer's zone, ``Unavailable`` when
        no dns server can take it."""
        dns = slice_["dns"]
        if dns["mode"] == "secondary":
            masters = ", ".join(dns["primaries"]) or "none given"
            raise NotPossible(
                f"DNS-01 needs a zone tenantctl serves as primary, but {sub}'s zone is the customer's "
                f"(dns mode secondary, primaries {masters}): the customer's DNS would have to hold "
                f"_acme-challenge TXT records; use HTTP-01 for this subscription")
        place_slice = slices.Zone(region=slice_["region"], sites=list(slice_["sites"]), dns=dns,
                                  server=slice_["server"])
        try:
            placements = records.place(sub, place_slice, self.servers())
        except LookupError as exc:
            raise Unavailable(f"DNS-01: no primary dns server for {sub}'s zone: {exc}", delay=60.0) from exc
        work: dict[str, ZoneWork] = {}
        resolvers = [_endpoint(r) for r in self.cfg.dns01_resolvers]
        for name, values in txt.items():
            fqdn = records.absolute(name)
            homes = [p for p in placements if records.in_zone(fqdn, p.zone)]
            if not homes:
                raise NotPossible(f"DNS-01: {fqdn} is in no zone tenantctl serves for {sub}")
            p = max(homes, key=lambda h: len(h.zone))
            if p.primary is None:  # only in secondary mode, refused above
                raise NotPossible(f"DNS-01: zone {p.zone} has no tenantctl primary")
            w = work.get(p.zone)
            if w is None:
                check = resolvers or [(s.address, 53) for s in p.servers]
                w = work[p.zone] = ZoneWork(p.zone, p.primary, p.secondaries, {}, check)
            w.txt.setdefault(fqdn, []).extend(values)
        return list(work.values())

    def publish(self, works: Sequence[ZoneWork]) -> None:
        """One PATCH per zone on its primary; secondaries asked to transfer (best effort)."""
        for w in works:
            c = self.client(w.primary)
            try:
                zone = c.zone(w.zone)
            except errors.TemporaryError as exc:
                raise Unavailable(f"DNS-01: primary {w.primary.name} of {w.zone} unreachable: {exc}",
                                  delay=exc.delay) from exc
            if zone is None:
                raise Unavailable(f"DNS-01: zone {w.zone} does not exist on its primary {w.primary.name} "
                                  f"(the dns concern creates it)", delay=30.0)
            w.account_before, w.serial_before = zone.get("account"), int(zone.get("serial") or 0)
            patch = [{"name": n, "type": "TXT", "ttl": self.cfg.dns01_ttl, "changetype": "REPLACE",
                      "records": [{"content": _quoted(v), "disabled": False} for v in dict.fromkeys(vals)],
                      "comments": [COMMENT]} for n, vals in sorted(w.txt.items())]
            w.published = True  # a PATCH that fails halfway may have been applied: clean up anyway
            try:
                c.patch(w.zone, patch)
            except errors.TemporaryError as exc:
                raise Unavailable(f"DNS-01: primary {w.primary.name} of {w.zone} unreachable: {exc}",
                                  delay=exc.delay) from exc
            for s in w.secondaries:
                try:
                    self.client(s).retrieve(w.zone)
                except errors.DriverError as exc:  # NOTIFY will do it, a little later
                    log.info("DNS-01: %s did not transfer %s now: %s", s.name, w.zone, exc)

    def wait(self, works: Sequence[ZoneWork]) -> float:
        """Until every checked server answers every value (50 ms polls, bounded); the
        seconds it took. Raises ``Unavailable`` naming who did not answer."""
        started = time.monotonic()
        deadline = started + self.cfg.dns01_timeout
        todo = [(addr, port, name, set(vals)) for w in works for (addr, port) in w.check
                for name, vals in w.txt.items()]
        last: dict[tuple[str, int, str], str] = {}
        while todo:
            left = []
            for addr, port, name, vals in todo:
                try:
                    wait = min(1.0, max(0.05, deadline - time.monotonic()))
                    got = set(query_txt(addr, name, port=port, timeout=wait))
                except (OSError, ValueError) as exc:
                    last[(addr, port, name)] = f"no answer ({exc or type(exc).__name__})"
                    left.append((addr, port, name, vals))
                    continue
                if not vals <= got:
                    last[(addr, port, name)] = f"answers {sorted(got) or 'nothing'}"
                    left.append((addr, port, name, vals))
            todo = left
            if not todo:
                break
            if time.monotonic() > deadline:
                a, p, n, _v = todo[0]
                raise Unavailable(f"DNS-01: {a}:{p} did not serve TXT {n} within {self.cfg.dns01_timeout:.0f}s "
                                  f"({last.get((a, p, n))}; {len(todo)} name/server pair(s) missing)", delay=30.0)
            self.sleep(self.cfg.poll_interval)
        return time.monotonic() - started

    def cleanup(self, works: Sequence[ZoneWork], sub: str) -> list[str]:
        """Remove the challenge rrsets of every published zone (each zone on its own: one
        failure does not keep the others); the problems, if any."""
        problems = []
        for w in works:
            if not w.published:
                continue
            c = self.client(w.primary)
            try:
                c.patch(w.zone, [{"name": n, "type": "TXT", "changetype": "DELETE"} for n in sorted(w.txt)])
                self._keep_account_in_step(c, w, sub)
                for s in w.secondaries:
                    try:
                        self.client(s).retrieve(w.zone)
                    except errors.DriverError as exc:
                        log.info("DNS-01: %s did not transfer %s now: %s", s.name, w.zone, exc)
                w.published = False
            except errors.DriverError as exc:
                problems.append(f"removing the _acme-challenge records of {w.zone} from {w.primary.name} "
                                f"failed ({exc}); the dns concern removes them on its next pass")
        return problems

    def _keep_account_in_step(self, c: api.Client, w: ZoneWork, sub: str) -> None:
        """The dns concern records the serial it left in the zone's account and takes a
        later serial for an edit outside tenantctl; tenantctl's own PATCHes (put, then
        removed) move it on when nothing else did."""
        if records.parse_account(w.account_before) != (sub, w.serial_before):
            return  # already out of step before: leave it for the dns concern to judge
        zone = c.zone(w.zone)
        if zone is None:
            return
        serial = int(zone.get("serial") or 0)
        if serial != w.serial_before and zone.get("account") == w.account_before:
            # the challenge records are gone again: what the digest describes still holds
            c.update(w.zone, {"account": records.account(sub, serial, records.parse_account_full(w.account_before)[2])})


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
