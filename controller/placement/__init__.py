"""Placement of subscriptions on servers, and SYNC-3 conflicts.

Pure: takes the desired state, what each subscription needs and the recorded
placements; returns where each subscription runs and what its server cannot offer.
A placed subscription never moves implicitly: a changed ``spec.server`` is a pending
move (it stays, with a ``server`` conflict naming ``tenantctl move``) until a move in
progress (``Needs.moving``, state.moves) places it on its target, databases included.
Spare servers (``Server.spec.spare``, DR-1) receive nothing: they are never chosen for a
site, a database or an address; a subscription pinned to one by ``spec.server`` is not
placed and gets a ``server`` conflict; one recorded on a server that became spare stays
(nothing moves implicitly) with that conflict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.model import kinds
from controller.model.desired import DesiredState

__all__ = ["Conflict", "Needs", "Placement", "pending_move", "pending_move_conflict", "place_all"]

HANDLER_PREFERENCE = ("fpm", "cgi", "module")


@dataclass(frozen=True)
class Conflict:
    """SYNC-3: ``property`` is the dotted path of the value in ``effective``."""

    property: str
    planValue: Any
    availableValue: Any

    def as_dict(self) -> dict[str, Any]:
        return {"property": self.property, "planValue": self.planValue, "availableValue": self.availableValue}


@dataclass(frozen=True)
class Needs:
    """What one subscription asks of its server (from its pre-placement effective spec)."""

    name: str
    customer: str
    region: str
    web: bool
    php_version: str
    php_handler: str
    hard_quota: bool
    ip_type: str
    ip: str | None = None
    server: str | None = None
    databases: tuple[tuple[str, str], ...] = ()  # (name, engine)
    #: the region its document names, when an evacuation or a move places it in ``region`` instead
    evacuated_from: str | None = None
    #: a move in progress (``tenantctl move``, state.moves) places it on ``server``
    moving: bool = False


@dataclass(frozen=True)
class Placement:
    server: str | None
    ip: str | None
    dbServers: dict[str, str | None] = field(default_factory=dict)
    #: what the server offers, where it differs from the need (path -> available value)
    available: dict[str, Any] = field(default_factory=dict)
    conflicts: tuple[Conflict, ...] = ()


@dataclass(frozen=True)
class Recorded:
    """A placement from the state store."""

    server: str | None
    ip: str | None
    dbServers: Mapping[str, str | None] = field(default_factory=dict)


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def _offer_conflicts(n: Needs, srv: kinds.ServerSpec) -> tuple[dict[str, Any], list[Conflict]]:
    available: dict[str, Any] = {}
    conflicts: list[Conflict] = []
    if n.web:
        versions = srv.offers.php.versions
        if n.php_version not in versions:  # PHP-4
            best = max(versions, key=_version_key) if versions else None
            available["hosting.php.version"] = best
            conflicts.append(Conflict("hosting.php.version", n.php_version, best))
        handlers = srv.offers.php.handlers
        if n.php_handler not in handlers:  # PHP-4
            best_h = next((h for h in HANDLER_PREFERENCE if h in handlers), None)
            available["hosting.php.handler"] = best_h
            conflicts.append(Conflict("hosting.php.handler", n.php_handler, best_h))
    if n.hard_quota and not srv.offers.hardQuota:  # RES-3
        available["hosting.hardQuota"] = False
        conflicts.append(Conflict("hosting.hardQuota", True, False))
    return available, conflicts


class _Pool:
    """Running totals while placing: sites per server, owners of dedicated IPs."""

    def __init__(self, ds: DesiredState) -> None:
        self.ds = ds
        self.load: Counter[str] = Counter()
        self.ip_owner: dict[str, str] = {}

    def free(self, server: str) -> bool:
        return self.load[server] < self.ds.servers[server].capacity.sites

    def ip_for(self, n: Needs, server: str, recorded_ip: str | None) -> tuple[str | None, list[Conflict]]:
        ips = self.ds.servers[server].ips
        if n.ip is not None:
            # An explicit address must be this server's, and a dedicated one must not
            # serve another customer; otherwise pick one as usual and report it.
            mine = next((ip for ip in ips if ip.address == n.ip), None)
            if mine is not None and (mine.type != "dedicated" or self.ip_owner.get(n.ip, n.customer) == n.customer):
                return n.ip, []
            chosen, conflicts = self._pick(n, server, recorded_ip)
            return chosen, [Conflict("ip", n.ip, chosen), *conflicts]
        return self._pick(n, server, recorded_ip)

    def _pick(self, n: Needs, server: str, recorded_ip: str | None) -> tuple[str | None, list[Conflict]]:
        ips = self.ds.servers[server].ips
        wanted = [ip.address for ip in ips if ip.type == n.ip_type]
        if n.ip_type == "dedicated":
            wanted = [a for a in wanted if self.ip_owner.get(a, n.customer) == n.customer]
        if recorded_ip in wanted:
            return recorded_ip, []
        if wanted:
            return wanted[0], []
        other = "shared" if n.ip_type == "dedicated" else "dedicated"
        if recorded_ip is not None and any(ip.address == recorded_ip and ip.type == other for ip in ips) and (
                other == "shared" or self.ip_owner.get(recorded_ip, n.customer) == n.customer):
            return recorded_ip, [Conflict("ip.type", n.ip_type, other)]  # the fallback it was given: kept
        fallback = [ip.address for ip in ips if ip.type == other and (other == "shared" or ip.address not in self.ip_owner)]
        return (fallback[0] if fallback else None), [Conflict("ip.type", n.ip_type, other if fallback else None)]

    def claim(self, customer: str, server: str, ip: str | None) -> None:
        self.load[server] += 1
        if ip is not None and any(i.address == ip and i.type == "dedicated" for i in self.ds.servers[server].ips):
            self.ip_owner.setdefault(ip, customer)


def spare_conflict(server: str) -> Conflict:
    """SYNC-3 for a subscription on (or pinned to) a spare server (DR-1)."""
    return Conflict("server", f"{server} is a spare server (DR-1): nothing is placed on it", None)


def _choose(n: Needs, pool: _Pool) -> str | None:
    ds = pool.ds
    role_ok = [
        s for s, spec in ds.servers.items()
        if spec.region == n.region and ("web" in spec.roles or not n.web) and not spec.spare
    ]
    candidates = [s for s in role_ok if pool.free(s)]
    if not candidates:
        return None

    def score(s: str) -> tuple[int, float, str]:
        spec = ds.servers[s]
        _, conflicts = _offer_conflicts(n, spec)
        _, ip_conflicts = pool.ip_for(n, s, None)
        return (len(conflicts) + len(ip_conflicts), pool.load[s] / max(spec.capacity.sites, 1), s)

    return min(candidates, key=score)


def _db_servers(n: Needs, server: str | None, recorded: Mapping[str, str | None], pool: _Pool) -> tuple[
    dict[str, str | None], list[Conflict]
]:
    out: dict[str, str | None] = {}
    conflicts: list[Conflict] = []
    ds = pool.ds
    for db, engine in n.databases:
        role = f"db-{engine}"
        prev = recorded.get(db)
        if prev is not None and prev in ds.servers and role in ds.servers[prev].roles:
            out[db] = prev  # recorded: kept, even on a server that became spare (never moved implicitly)
            continue
        if server is not None and role in ds.servers[server].roles and not ds.servers[server].spare:
            out[db] = server
            continue
        in_region = sorted(s for s, spec in ds.servers.items()
                           if spec.region == n.region and role in spec.roles and not spec.spare)
        out[db] = in_region[0] if in_region else None
        if not in_region:  # SYNC-3: database engine missing in the region
            conflicts.append(Conflict(f"databases.{db}.engine", engine, None))
    return out, conflicts


def _fit_conflicts(n: Needs, server: str, pool: _Pool, *, moving: bool) -> list[Conflict]:
    spec = pool.ds.servers[server]
    out: list[Conflict] = []
    if spec.spare:
        out.append(spare_conflict(server))
    if spec.region != n.region:
        out.append(Conflict("region", n.region, spec.region))
    if n.web and "web" not in spec.roles:
        out.append(Conflict("server", f"{server} with the web role", None))
    if moving and not pool.free(server):
        out.append(Conflict("server", f"{server} with free capacity", None))
    return out


def pending_move(n: Needs, rec: Recorded | None, ds: DesiredState) -> bool:
    """``spec.server`` names another server than the one the subscription is placed on,
    and no move is in progress: it stays where it is (its files and databases are not
    on the other server) until ``tenantctl move`` copies them there (issue 13)."""
    return (n.server is not None and not n.moving and rec is not None and rec.server is not None
            and rec.server in ds.servers and rec.server != n.server)


def pending_move_conflict(name: str, server: str) -> Conflict:
    """SYNC-3 of a pending move: what to run to make it."""
    return Conflict("server", f"{server}: a pending move (run `tenantctl move {name} --to {server}`)", None)


def _evacuated(ds: DesiredState, n: Needs, rec: Recorded | None) -> Recorded | None:
    """A recorded placement as an evacuation sees it: servers of the evacuated region are
    forgotten (the subscription is placed anew in its target region), the rest kept."""
    if rec is None or n.evacuated_from is None:
        return rec

    def gone(server: str | None) -> bool:
        return server is not None and server in ds.servers and ds.servers[server].region == n.evacuated_from

    if not gone(rec.server) and not any(gone(s) for s in rec.dbServers.values()):
        return rec
    dbs = {db: s for db, s in rec.dbServers.items() if not gone(s)}
    if gone(rec.server):
        return Recorded(None, None, dbs) if dbs else None
    return Recorded(rec.server, rec.ip, dbs)


def place_all(
    ds: DesiredState,
    needs: Iterable[Needs],
    recorded: Mapping[str, Recorded],
    unchanged: Mapping[str, str] | None = None,
) -> dict[str, Placement]:
    """Place every subscription of ``needs``; recorded placements first, so they keep
    their server. ``unchanged`` (name -> customer) are subscriptions not recomputed this
    pass: their recorded placements only count toward capacity and IP ownership."""
    pool = _Pool(ds)
    for name, customer in (unchanged or {}).items():
        rec = recorded.get(name)
        if rec is not None and rec.server in ds.servers:
            assert rec.server is not None
            pool.claim(customer, rec.server, rec.ip)
    ordered = sorted(needs, key=lambda n: (n.name not in recorded, n.name))
    # Dedicated IPs already held keep their owner before anyone new is placed.
    for n in ordered:
        rec = recorded.get(n.name)
        if (
            rec is not None and rec.ip is not None and rec.server in ds.servers
            and any(i.address == rec.ip and i.type == "dedicated" for i in ds.servers[rec.server].ips)
        ):
            pool.ip_owner.setdefault(rec.ip, n.customer)
    # Then explicitly requested dedicated IPs, so automatic picks leave them alone.
    ip_server = {ip.address: (s, ip.type) for s, spec in ds.servers.items() for ip in spec.ips}
    for n in ordered:
        if n.ip is not None and ip_server.get(n.ip, ("", ""))[1] == "dedicated":
            pool.ip_owner.setdefault(n.ip, n.customer)
    out: dict[str, Placement] = {}
    for n in ordered:
        rec = _evacuated(ds, n, recorded.get(n.name))
        conflicts: list[Conflict] = []
        server: str | None
        if n.moving and rec is not None:
            # a move takes its databases along (to the target, or a server of its region)
            rec = Recorded(rec.server, rec.ip, {})
        if pending_move(n, rec, ds):
            assert rec is not None and rec.server is not None
            server = rec.server  # never moved implicitly: `tenantctl move` copies its data first
            conflicts.append(pending_move_conflict(n.name, n.server or ""))
        elif n.server is not None and n.server in ds.servers and ds.servers[n.server].spare and (
                rec is None or rec.server != n.server):
            server = None  # pinned to a spare (DR-1): not placed, said as a conflict
            conflicts.append(spare_conflict(n.server))
        elif n.server is not None:
            server = n.server  # explicit placement or move
        elif rec is not None and rec.server is not None:
            server = rec.server if rec.server in ds.servers else None
            if server is None:
                conflicts.append(Conflict("server", rec.server, None))
        elif (n.ip is not None and n.ip in ip_server and ds.servers[ip_server[n.ip][0]].region == n.region
              and not ds.servers[ip_server[n.ip][0]].spare):
            server = ip_server[n.ip][0]  # an explicit address places on its server
        else:
            server = _choose(n, pool)
            if server is None:  # SYNC-3: server full, or no server with the roles
                conflicts.append(Conflict("server", f"a server in {n.region} with free capacity", None))
        available: dict[str, Any] = {}
        ip: str | None = None
        if server is not None and (n.server is not None or rec is not None):
            # An explicit or recorded server is kept (never moved implicitly), but what
            # it no longer fits is reported (SYNC-3).
            conflicts.extend(_fit_conflicts(n, server, pool, moving=rec is None or rec.server != server))
        if server is not None:
            available, offer_conflicts = _offer_conflicts(n, ds.servers[server])
            conflicts.extend(offer_conflicts)
            ip, ip_conflicts = pool.ip_for(n, server, rec.ip if rec else None)
            conflicts.extend(ip_conflicts)
            pool.claim(n.customer, server, ip)
        db_servers, db_conflicts = _db_servers(n, server, rec.dbServers if rec else {}, pool)
        conflicts.extend(db_conflicts)
        out[n.name] = Placement(server, ip, db_servers, available, tuple(conflicts))
    return out
