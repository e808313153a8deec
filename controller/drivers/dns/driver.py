"""The dns driver: a subscription's zones on the PowerDNS servers (DNS-1..3).

One pass over a batch: list the zones of every dns server (one call each), decide per
subscription with the pure functions of ``records``, then act with bounded concurrency.
A zone whose listing entry proves it current (``records.up_to_date``: tenantctl's serial
and the digest of the wanted content in its account) is not even read, so a forced
re-apply of unchanged zones (after an upgrade) costs the listings and nothing else;
any other zone is read (rrsets, metadata) and gets only what differs:

* primary mode: the zone on its primary (kind Master, SOA-EDIT-API DEFAULT, account
  ``tenantctl:<sub>@<serial>/<digest>``, ALSO-NOTIFY / ALLOW-AXFR-FROM metadata naming the
  secondaries) gets the minimal rrset PATCH; each secondary (kind Slave, masters = the
  primary) is asked to transfer at once when something changed. PowerDNS's own NOTIFY
  of changed serials is the fallback when a secondary cannot be reached now;
* secondary mode: the region's dns servers are secondaries of the customer's primaries;
* zones of the subscription that are no longer wanted somewhere are deleted there;
* delete: every zone of the subscription is exported to
  ``<state>/retained/<sub>/<UTC ts>-zone.txt`` first, then deleted everywhere.

Zones are never deleted and re-created to change them.

Fencing (issue 10 item 4, DR-1): a zone written for a subscription that was moved
carries its generation (``records.GENERATION`` metadata, the engine's view handed over
once per pass, ``use_generations``). Before a change writes anything, every existing
zone it would write (a primary that is not up to date, a secondary to reconfigure, a
zone to remove) has its metadata read, and if one of them records a newer generation
than the controller's, nothing of the change is written: ``transport.Fenced``, a
permanent failure naming both generations (a stale controller of a region that came
back never overwrites the new primaries). Zones the listing proves current are not read:
a no-op pass costs no request more. A zone the change creates has no fence to check.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import errors, settings
from controller.agent import jobs
from controller.drivers import base, slices, transport
from controller.drivers.context import Context
from controller.drivers.dns import metrics
from controller.drivers.powerdns import api, records
from controller.effective import spec
from controller.model import values as model_values

log = logging.getLogger(__name__)

#: how a change that did everything but reach the secondaries of a lost (evacuated)
#: region fails: the zone is served from its new primary meanwhile
LOST_SECONDARIES = "secondaries in an evacuated region do not answer"


class LostSecondaries(errors.TemporaryError):
    """The zones are served by their primary; secondaries of a lost region are missing."""

Listing = dict[str, dict[str, dict[str, Any]]]  # server -> zone -> entry of GET /zones
Owned = dict[str, list[tuple[str, str]]]  # subscription -> (server, zone) of its zones in a listing


def owned(listing: Listing) -> Owned:
    """The zones of each subscription in ``listing`` (their account names it), read once
    per listing: deciding a batch then costs its own zones, not a scan of every zone on
    every server per subscription (1,000 changes against 2,000 listed zones took 2 s)."""
    out: Owned = {}
    for server, zones in listing.items():
        for zone, info in zones.items():
            sub = records.parse_account(info.get("account"))[0]
            if sub is not None:
                out.setdefault(sub, []).append((server, zone))
    return out


def _env_domain(name: str, default: str) -> str:
    """A domain from the environment, checked like any desired-state domain (it ends up in
    every zone), canonical with its trailing dot."""
    raw = {"TENANTCTL_DNS_NS_SUFFIX": settings.current().dns.ns_suffix,
           "TENANTCTL_DNS_HOSTMASTER": settings.current().dns.hostmaster}[name]
    if not raw:
        return default
    try:
        return model_values.domain_name(raw.rstrip(".")) + "."
    except ValueError as exc:
        raise errors.PermanentError(f"{name}: {exc}") from exc


@dataclass(frozen=True)
class Settings:
    """How tenantctl runs DNS."""

    #: NS names are ``ns-<server>.<ns_suffix>``; the operator delegates that suffix
    #: (glue or a zone of its own) to the dns servers' addresses (env
    #: ``TENANTCTL_DNS_NS_SUFFIX``).
    ns_suffix: str = field(default_factory=lambda: _env_domain("TENANTCTL_DNS_NS_SUFFIX", "ns.tenantctl.internal."))
    #: SOA RNAME of every zone (env ``TENANTCTL_DNS_HOSTMASTER``)
    hostmaster: str = field(
        default_factory=lambda: _env_domain("TENANTCTL_DNS_HOSTMASTER", "hostmaster.tenantctl.internal."))
    #: PowerDNS API port (``tenantctl_pdns_api_port`` of the bootstrap role)
    api_port: int = 8081
    #: zones worked on at once in one batch
    workers: int = 8
    #: the zone template (DNS-2)
    template: Path = records.TEMPLATE
    client: api.Settings = field(default_factory=api.Settings)


def _norm_master(value: str) -> str:
    text = str(value)
    return text[:-3] if text.count(":") == 1 and text.endswith(":53") else text


def _primary_meta(want: records.Wanted, p: records.Placement) -> tuple[dict[str, list[str]], str]:
    """The metadata of ``p``'s primary zone (the fence first) and the digest of all it holds."""
    meta = records.primary_metadata(p, want.generation)
    return meta, records.digest(want.rrsets[p.zone], meta, want.manage_dns)


def _reconfigure(info: Mapping[str, Any], p: records.Placement) -> bool:
    """Whether an existing zone must be made a secondary of ``p.masters``."""
    return info.get("kind") != "Slave" or sorted(map(_norm_master, info.get("masters") or [])) != sorted(
        map(_norm_master, p.masters))


DnsChange = base.Change[slices.DnsSlice]


class DnsDriver:
    """``base.Driver`` and ``base.DriftAware`` for the ``dns`` concern."""

    concern = "dns"
    #: zones live on the dns servers, whatever the subscription's server: the engine
    #: hands over one batch per pass (one ``GET /zones`` per dns server, not one per
    #: web server's batch)
    one_batch_per_pass = True

    def __init__(self, ctx: Context, settings: Settings | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.ctx = ctx
        self.settings = settings or Settings()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._clients: dict[str, api.Client] = {}
        self._lock = threading.Lock()
        #: regions under evacuation (DR-1), from the state store once the engine hands it over
        self._evacuated: Callable[[], Mapping[str, str]] = dict
        #: moving subscriptions whose records keep the source's address until switched (issue 13)
        self._substitutes: Callable[[], Mapping[str, str]] = dict
        #: the subscriptions' generations the zones it writes carry (fencing, DR-1)
        self.generations = transport.Generations(getattr(ctx, "state_dir", None))

    def use_generations(self, gens: Mapping[str, int]) -> None:
        """The engine's view of the subscriptions' generations, once per pass (fencing)."""
        self.generations.use(gens)

    def use_store(self, store: object) -> None:
        from controller.state import moves, regions

        self._evacuated = lambda: regions.targets(store)  # type: ignore[arg-type]
        self._substitutes = lambda: moves.substitutes(store)  # type: ignore[arg-type]

    # --- the Driver protocol ------------------------------------------------------

    def slice(self, item: spec.Item) -> slices.DnsSlice:
        """Its zones, records and where they live: the web server too (a dns server's own
        subscriptions have their primary on it) and manageDNS (DNS-3)."""
        return slices.dns(item)

    def apply(self, server: str | None, changes: Sequence[DnsChange]) -> list[base.Result]:
        del server  # zones live on the dns servers, whatever the web server
        servers = self.servers()
        if not servers:
            return [base.Result(c.name, "failed", "no server has the dns role") for c in changes]
        sent_before = self.sent()
        listing, down = self._list(servers)
        mine = owned(listing)
        before = {s.name: self.client(s).failures for s in servers}
        substitutes = self._substitutes()  # once a pass, in this thread (not per zone in the pool)
        gens = self.generations.get()

        def one(change: DnsChange) -> base.Result:
            try:
                if change.action == "delete":
                    message = self._delete(change.name, servers, listing, mine, down, gens.get(change.name, 1))
                else:
                    want = self._wanted(change.name, change.slice, substitutes, gens.get(change.name, 1))
                    message = self._ensure(want, servers, listing, mine, down)
            except LookupError as exc:
                return base.Result(change.name, "failed", str(exc))
            except transport.Fenced as exc:
                return base.Result(change.name, "failed", str(exc), permanent=True)
            except LostSecondaries as exc:
                return base.Result(change.name, "failed", str(exc), retry_after=exc.delay, degraded=True)
            except errors.TemporaryError as exc:
                return base.Result(change.name, "failed", str(exc), retry_after=exc.delay)
            except errors.DriverError as exc:
                return base.Result(change.name, "failed", str(exc))
            return base.Result(change.name, "provisioned", message)

        with futures.ThreadPoolExecutor(max_workers=max(1, self.settings.workers)) as pool:
            results = list(pool.map(one, changes))
        now = time.time()
        for s in servers:
            if s.name in listing and self.client(s).failures == before[s.name]:
                metrics.synced(s.name, now)
        if any(r.message != base.UP_TO_DATE for r in results):
            self._list(servers)  # the zone counts as this pass left them (one GET /zones a server)
        sent = {m: n - sent_before.get(m, 0) for m, n in self.sent().items() if n != sent_before.get(m, 0)}
        log.info("dns apply: %d change(s), %d up to date, requests %s", len(changes),
                 sum(r.message == base.UP_TO_DATE for r in results), ",".join(f"{m}={n}" for m, n in sorted(sent.items())))
        return results

    def sent(self) -> dict[str, int]:
        """API requests sent so far by this driver, by HTTP method (every dns server)."""
        with self._lock:
            clients = list(self._clients.values())
        total: dict[str, int] = {}
        for c in clients:
            for method, n in dict(c.sent).items():
                total[method] = total.get(method, 0) + n
        return total

    def drifted(self, server: str | None, changes: Sequence[DnsChange]) -> dict[str, str]:
        """Missing or misconfigured zones on any dns server, tenantctl zones left where
        they no longer belong, primaries edited since tenantctl's last write (their
        serial moved past the one recorded in the zone's account). One ``GET /zones``
        per dns server; a server that cannot be listed is not judged."""
        del server
        servers = self.servers()
        listing, _down = self._list(servers)
        mine = owned(listing)
        substitutes = self._substitutes()
        found: dict[str, str] = {}
        for change in changes:
            if change.action == "delete":
                continue
            try:
                want = self._wanted(change.name, change.slice, substitutes)
            except LookupError:
                continue
            what = self._drift(want, listing, mine)
            if what:
                found[change.name] = "; ".join(what)
        return found

    # --- what other layers ask ------------------------------------------------------

    def dns_servers(self, item: spec.Item) -> list[str]:
        """``address:53`` of every dns server serving the subscription's zone, primary first."""
        try:
            placements = records.place(item["name"], self.slice(item), self.servers())
        except (LookupError, KeyError):
            return []
        return [f"{s.address}:53" for s in placements[0].servers]

    def servers(self) -> list[records.DnsServer]:
        return records.dns_servers([
            records.DnsServer(s.name, s.region, s.address)
            for s in self.ctx.servers.values() if "dns" in s.roles
        ])

    def client(self, server: records.DnsServer) -> api.Client:
        with self._lock:
            c = self._clients.get(server.name)
            if c is None:
                key = self.ctx.secrets(server.name)["pdns_api_key"]
                c = api.Client(server.name, server.address, self.settings.api_port, key, self.settings.client)
                self._clients[server.name] = c
            return c

    def close(self) -> None:
        for c in self._clients.values():
            c.close()

    def sources(self) -> Sequence[Path]:
        """What decides the zones this driver writes: its package and the zone template
        (base.Versioned)."""
        return [Path(__file__).resolve().parent, Path(records.__file__).resolve().parent, records.TEMPLATE]

    # --- gather ---------------------------------------------------------------------

    def _wanted(self, sub: str, slice_: slices.DnsSlice, substitutes: Mapping[str, str],
                generation: int = 1) -> records.Wanted:
        """``substitutes``: moving subscriptions -> the source's address (``state.moves``);
        ``generation``: the subscription's in the controller's view (fencing)."""
        s = self.settings
        source = substitutes.get(sub)
        if source is not None:  # a move places it, but the target is not restored yet: clients stay
            slice_ = {**slice_, "ip": source}
        return records.wanted(sub, slice_, self.servers(), s.ns_suffix, s.hostmaster, s.template,
                              generation=generation)

    def _list(self, servers: Sequence[records.DnsServer]) -> tuple[Listing, dict[str, str]]:
        listing: Listing = {}
        down: dict[str, str] = {}

        def one(s: records.DnsServer) -> None:
            try:
                listing[s.name] = {z["name"]: z for z in self.client(s).zones()}
            except errors.DriverError as exc:
                down[s.name] = str(exc)

        with futures.ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
            list(pool.map(one, servers))
        metrics.observe(listing, {s.name: s.address for s in servers})
        return listing, down

    # --- act ------------------------------------------------------------------------

    def _ensure(self, want: records.Wanted, servers: Sequence[records.DnsServer], listing: Listing,
                mine: Owned, down: Mapping[str, str]) -> str:
        where = {(p.zone, s.name) for p in want.placements for s in p.servers}
        # A secondary in an evacuated region that does not answer (the lost region) is
        # left for later: everything else is done, then the change fails (retried): when
        # it answers again it is made a secondary of the new primary, which replaces its
        # stale copy of the zone (DR-1).
        evacuated = self._evacuated()
        lost = {s.name for p in want.placements for s in p.secondaries if s.name in down and s.region in evacuated}
        for p in want.placements:
            for s in p.servers:
                if s.name in lost:
                    continue
                if s.name in down:
                    raise errors.TemporaryError(f"dns server {s.name} unreachable: {down[s.name]}", delay=10.0)
                info = listing[s.name].get(p.zone)
                owner = records.parse_account(info.get("account"))[0] if info else want.sub
                if owner != want.sub:
                    raise errors.PermanentError(
                        f"zone {p.zone} on {s.name} is not this subscription's "
                        f"(account {info.get('account') if info else None!r}): not taking it over")
        by_name = {s.name: s for s in servers}
        removed = [(by_name[server], zone) for server, zone in mine.get(want.sub, ())
                   if (zone, server) not in where and server in by_name]
        primaries = {p.zone: _primary_meta(want, p) for p in want.placements if p.primary is not None}
        metas = self._fence(want.sub, want.generation, self._written(want, primaries, listing, lost) + removed)
        done: list[str] = []
        for p in want.placements:
            changed = False
            if p.primary is not None:
                changed = self._primary(want, p, listing[p.primary.name].get(p.zone), primaries[p.zone],
                                        metas.get((p.primary.name, p.zone)))
                if changed:
                    done.append(f"{p.zone} on {p.primary.name}")
            for s in p.secondaries:
                if s.name in lost:
                    continue
                if self._secondary(want, p, s, listing[s.name].get(p.zone), changed, metas.get((s.name, p.zone))):
                    done.append(f"{p.zone} secondary on {s.name}")
        for srv, zone in removed:
            self.client(srv).delete(zone)
            done.append(f"{zone} removed from {srv.name}")
        if lost:
            raise LostSecondaries(f"{LOST_SECONDARIES}: {', '.join(sorted(lost))} (served by "
                                        f"{', '.join(sorted({p.primary.name for p in want.placements if p.primary}))}"
                                        f"{'; ' + ', '.join(done) if done else ''})", delay=60.0)
        return "updated " + ", ".join(done) if done else base.UP_TO_DATE

    # --- fencing ----------------------------------------------------------------------

    @staticmethod
    def _written(want: records.Wanted, primaries: Mapping[str, tuple[dict[str, list[str]], str]], listing: Listing,
                 lost: set[str]) -> list[tuple[records.DnsServer, str]]:
        """The existing zones of ``want`` this change will write, decided on the listing
        alone like the writes themselves: a primary the listing does not prove current, a
        secondary whose kind or masters differ (zones to create have nothing to check)."""
        out: list[tuple[records.DnsServer, str]] = []
        for p in want.placements:
            if p.primary is not None:
                info = listing[p.primary.name].get(p.zone)
                if info is not None and not records.up_to_date(info, want.sub, primaries[p.zone][1]):
                    out.append((p.primary, p.zone))
            for s in p.secondaries:
                info = listing[s.name].get(p.zone) if s.name not in lost else None
                if info is not None and _reconfigure(info, p):
                    out.append((s, p.zone))
        return out

    def _fence(self, sub: str, generation: int,
               zones: Sequence[tuple[records.DnsServer, str]]) -> dict[tuple[str, str], dict[str, list[str]]]:
        """Read the metadata of every zone in ``zones`` (server, zone): ``Fenced`` when one
        of them records a newer generation of ``sub`` than ``generation`` (nothing of the
        change is written then); else the metadata read, by (server name, zone)."""
        metas: dict[tuple[str, str], dict[str, list[str]]] = {}
        refused: list[tuple[str, str, int]] = []
        for srv, zone in zones:
            meta = self.client(srv).metadata(zone)
            metas[(srv.name, zone)] = meta
            try:
                seen = records.generation_of(meta)
            except ValueError as exc:
                raise errors.PermanentError(f"zone {zone} on {srv.name}: {exc}: not written") from exc
            if seen > generation:
                refused.append((srv.name, zone, seen))
        if refused:
            where = ", ".join(f"{zone} on {server}" for server, zone, _seen in refused)
            raise transport.Fenced(f"PowerDNS zone {where}",
                                   {sub: jobs.Fenced(max(r[2] for r in refused), generation)})
        return metas

    # --- writes -------------------------------------------------------------------------

    def _primary(self, want: records.Wanted, p: records.Placement, info: Mapping[str, Any] | None,
                 wanted_meta: tuple[dict[str, list[str]], str], have_meta: Mapping[str, list[str]] | None) -> bool:
        """Make ``p.primary`` hold the zone; ``wanted_meta``: its metadata and digest
        (``_primary_meta``); ``have_meta``: its metadata when already read (``_fence``).
        The fence metadata is written before anything else of the zone."""
        assert p.primary is not None
        rrsets = want.rrsets[p.zone]
        meta, digest = wanted_meta
        if records.up_to_date(info, want.sub, digest):
            return False  # the listing proves it: nothing to read, nothing to send
        c = self.client(p.primary)
        changed = False
        if info is None:
            zone = c.create({
                "name": p.zone, "kind": "Master", "masters": [], "soa_edit_api": "DEFAULT",
                "account": records.account(want.sub),
                "rrsets": [{k: v for k, v in rr.patch().items() if k != "changetype"} for rr in rrsets.values()],
            })
            have_meta = {}
            changed = True
        elif have_meta is None:
            have_meta = c.metadata(p.zone)
        for kind, values in meta.items():
            if sorted(have_meta.get(kind, [])) != values:
                c.set_metadata(p.zone, kind, values)
        if info is not None:
            if info.get("kind") != "Master" or info.get("masters"):
                c.update(p.zone, {"kind": "Master", "masters": []})
                changed = True
            zone = c.zone(p.zone) or {}
        patch = records.diff(rrsets, zone.get("rrsets", []), want.manage_dns)
        if patch:
            c.patch(p.zone, patch)
            zone = c.zone(p.zone) or zone
            changed = True
        serial = int(zone.get("serial") or 0)
        if records.parse_account_full(zone.get("account")) != (want.sub, serial, digest):
            c.update(p.zone, {"account": records.account(want.sub, serial, digest)})
        return changed

    def _secondary(self, want: records.Wanted, p: records.Placement, s: records.DnsServer,
                   info: Mapping[str, Any] | None, stale: bool, have_meta: Mapping[str, list[str]] | None) -> bool:
        """Make ``s`` a secondary of the zone (decided on its listing entry alone; its
        metadata was read only when it is reconfigured: ``_fence``); ask it to transfer now when it is new, changed, or ``stale`` (its primary
        changed in this pass; otherwise NOTIFY and the refresh keep it current). True
        when the secondary zone was written; then it carries the generation too
        (``have_meta``: that metadata), before its masters change."""
        c = self.client(s)
        masters = list(p.masters)
        changed = False
        if info is None:
            c.create({"name": p.zone, "kind": "Slave", "masters": masters, "account": records.account(want.sub)})
            changed = True
        elif _reconfigure(info, p):
            if want.generation > records.generation_of(have_meta or {}):
                c.set_metadata(p.zone, records.GENERATION, [str(want.generation)])
            c.update(p.zone, {"kind": "Slave", "masters": masters})
            changed = True
        if info is None and want.generation > 1:
            c.set_metadata(p.zone, records.GENERATION, [str(want.generation)])
        if changed or stale:
            c.retrieve(p.zone)
        return changed

    def _delete(self, sub: str, servers: Sequence[records.DnsServer], listing: Listing, owned_: Owned,
                down: Mapping[str, str], generation: int = 1) -> str:
        by_name = {s.name: s for s in servers}
        mine = [(by_name[server], zone, listing[server][zone]) for server, zone in owned_.get(sub, ())
                if server in by_name]
        self._fence(sub, generation, [(s, zone) for s, zone, _info in mine])
        primaries = [(s, zone) for s, zone, info in mine if info.get("kind") != "Slave"]
        if primaries:
            texts = [f"; zone {zone} from {s.name}\n{self.client(s).export(zone)}" for s, zone in primaries]
            self._retain(sub, "\n".join(texts))
        for s, zone, _info in mine:
            self.client(s).delete(zone)
        if down:
            raise errors.TemporaryError(
                f"dns servers unreachable, zones of {sub} may remain there: {', '.join(sorted(down))}", delay=10.0)
        return f"deleted {len(mine)} zone(s)" if mine else "no zone"

    def _retain(self, sub: str, text: str) -> Path:
        folder = self.ctx.state_dir / "retained" / sub
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{self.clock().strftime('%Y%m%dT%H%M%SZ')}-zone.txt"
        path.write_text(text)
        return path

    # --- drift ----------------------------------------------------------------------

    def _drift(self, want: records.Wanted, listing: Listing, mine: Owned) -> list[str]:
        what: list[str] = []
        where = {(p.zone, s.name) for p in want.placements for s in p.servers}
        for p in want.placements:
            for s in p.servers:
                if s.name not in listing:
                    continue
                info = listing[s.name].get(p.zone)
                if info is None:
                    what.append(f"zone {p.zone} missing on {s.name}")
                    continue
                owner, serial = records.parse_account(info.get("account"))
                if owner != want.sub:
                    what.append(f"zone {p.zone} on {s.name} belongs to {info.get('account')!r}")
                elif s == p.primary:
                    if info.get("kind") != "Master":
                        what.append(f"zone {p.zone} on {s.name} is {info.get('kind')}, not Master")
                    elif serial != int(info.get("serial") or 0):
                        what.append(f"zone {p.zone} on {s.name} edited outside tenantctl "
                                    f"(serial {info.get('serial')}, tenantctl left {serial})")
                elif info.get("kind") != "Slave" or sorted(map(_norm_master, info.get("masters") or [])) != sorted(
                        map(_norm_master, p.masters)):
                    what.append(f"zone {p.zone} on {s.name} is not a secondary of {', '.join(p.masters)}")
        for server, zone in mine.get(want.sub, ()):
            if (zone, server) not in where:
                what.append(f"zone {zone} left on {server}")
        return what
