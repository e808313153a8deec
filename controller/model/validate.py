"""Cross-document rules: references, PLAN-1/2, PHP-3 settings, addresses, the FTP
account limit (RES-1, issue 14) where the documents decide it.

``build(docs)`` indexes the documents into a ``DesiredState`` and returns it with every
``Issue`` found. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from controller.errors import Issue
from controller.model import kinds, php, values
from controller.model.desired import DesiredState
from controller.model.loader import Document, format_loc
from controller.model.values import UNSET

Loc = tuple[str | int, ...]


def php_issues(doc: Document, loc: Loc, settings: Mapping[str, Any]) -> Iterator[Issue]:
    """PHP-3: every directive known, every value within its grammar."""
    for key, value in settings.items():
        try:
            php.normalise(key, value)
        except ValueError as exc:
            yield doc.issue((*loc, key), str(exc))


def ftp_accounts_over(users: int, limit: object) -> str | None:
    """RES-1 for FTPS accounts (issue 14): the message when ``users`` accounts exceed the
    effective ``resources.ftpAccounts`` (a number, ``unlimited`` or None: no limit), else
    None. The one rule: ``validate``/``plan`` (``build``) and the web driver's refusal at
    apply (``hosting.ftp.over_limit``) both ask it."""
    if limit is None or limit == values.UNLIMITED or not isinstance(limit, int) or users <= limit:
        return None
    return f"{users} FTP users but the plan allows {limit} (resources.ftpAccounts)"


def ftp_accounts_limit(ds: DesiredState, spec: kinds.SubscriptionSpec) -> int | str | None:
    """The subscription's ``resources.ftpAccounts`` as far as its documents decide it
    (PLAN-3: the plan's value, add-ons adding up, ``unlimited`` winning; SYNC-2: a
    customised value replaces), None when they do not: a value left out everywhere is
    the default (unlimited), and a customised subscription without its own value keeps
    the plan of when it was locked (the state store's: the web driver checks that one
    with the same rule at apply). A transferred subscription (PLAN-7) is checked
    against its current plan here."""
    if spec.customizations is not None:
        own = spec.customizations.resources.ftpAccounts
        if own is not UNSET:
            return own
        if has_values(spec.customizations):
            return None
    if spec.plan is None or spec.plan not in ds.plans:
        return None
    limit = ds.plans[spec.plan].resources.ftpAccounts
    if limit is UNSET:
        return None
    for name in spec.addons:
        addon = ds.addons.get(name)
        if addon is not None and addon.resources.ftpAccounts is not UNSET:
            limit = values.add_limits(limit, addon.resources.ftpAccounts)
    return limit


def _removals(doc: Document, loc: Loc, model: kinds.Strict) -> Iterator[Issue]:
    """Add-ons only extend (PLAN-3): a ``false`` would remove a service."""
    for name in type(model).model_fields:
        v = getattr(model, name)
        if v is False:
            yield doc.issue((*loc, name), "an add-on cannot switch anything off (PLAN-3: add-ons never remove); "
                            "leave it out or set it to default")
        elif isinstance(v, kinds.Strict):
            yield from _removals(doc, (*loc, name), v)


def _plan_issues(doc: Document, body: kinds.PlanBody, *, addon: bool) -> Iterator[Issue]:
    yield from php_issues(doc, ("hosting", "php", "settings"), body.hosting.php.settings)
    p = body.permissions
    for perm in ("managePHPCommon", "managePHPPerformance"):
        if getattr(p, perm) is True and p.manageHosting is not True and not addon:
            yield doc.issue(("permissions", perm),
                            f"{perm} can only be granted together with manageHosting (SYNC-4)")
    if addon:
        yield from _removals(doc, (), body)
        if body.dns.primaries:
            yield doc.issue(("dns", "primaries"), "primaries belong to a subscription's customerSettings (DNS-1)")


def build(documents: list[Document]) -> tuple[DesiredState, list[Issue]]:
    ds = DesiredState()
    issues: list[Issue] = []
    for doc in documents:
        table = ds.table(doc.kind)
        if doc.name in table:
            first = ds.docs[(doc.kind, doc.name)]
            issues.append(Issue(doc.file, doc.line, "metadata.name",
                                f"{doc.kind} {doc.name!r} is declared twice (first at {first.file}:{first.line})"
                                + (" (PLAN-1: a domain belongs to one subscription)" if doc.kind == "Subscription"
                                   else "")))
            continue
        table[doc.name] = doc.spec
        ds.docs[(doc.kind, doc.name)] = doc
    for check in (_regions, _servers, _plans, _subscriptions):
        issues.extend(check(ds))
    return ds, issues


def _unknown(what: str, name: str, kind: str) -> str:
    """A reference to a document that does not exist. No rule of ../shared/domain.md is
    about references (PLAN-4 forbids removing a plan in use: a state change, not this)."""
    return f"unknown {what} {name!r} (no {kind} document of that name)"


def _regions(ds: DesiredState) -> Iterator[Issue]:
    for name, spec in ds.regions.items():
        doc = ds.docs[("Region", name)]
        if isinstance(spec.backupCopiesTo, list):
            for i, target in enumerate(spec.backupCopiesTo):
                if target not in ds.regions:
                    yield doc.issue(("backupCopiesTo", i), _unknown("region", target, "Region"))
                elif target == name:
                    yield doc.issue(("backupCopiesTo", i), "a region cannot copy its backups to itself (BKP-3)")


def _servers(ds: DesiredState) -> Iterator[Issue]:
    for name, spec in ds.servers.items():
        doc = ds.docs[("Server", name)]
        if spec.region not in ds.regions:
            yield doc.issue(("region",), _unknown("region", spec.region, "Region"))
        if spec.provider == "docker" and not ipaddress.ip_address(spec.address).is_loopback:
            yield doc.issue(("address",), "an embedded (docker) server must use a loopback address (127.0.0.0/8)")
        if spec.provider == "docker":
            for i, ip in enumerate(spec.ips):
                if not ipaddress.ip_address(ip.address).is_loopback:
                    yield doc.issue(("ips", i, "address"),
                                    "an embedded (docker) server must use loopback addresses (127.0.0.0/8)")
        addrs = [ip.address for ip in spec.ips]
        for i, addr in enumerate(addrs):
            if addrs.index(addr) != i:
                yield doc.issue(("ips", i, "address"), f"address {addr} listed twice")
        yield from php_issues(doc, ("phpDefaults",), spec.phpDefaults)
        if len(set(spec.roles)) != len(spec.roles):
            yield doc.issue(("roles",), "a role is listed twice")
    yield from _addresses(ds)


def _addresses(ds: DesiredState) -> Iterator[Issue]:
    """One machine, one Server: no two servers share a management or a service address.
    Reported once per address at the later server, naming where the first one has it."""
    first: dict[str, tuple[Document, Loc]] = {}
    for name, spec in ds.servers.items():
        doc = ds.docs[("Server", name)]
        claims: list[tuple[str, Loc]] = [(spec.address, ("address",))]
        claims += [(ip.address, ("ips", i, "address")) for i, ip in enumerate(spec.ips)]
        reported: set[str] = set()
        for addr, loc in claims:
            owner = first.setdefault(addr, (doc, loc))
            if owner[0] is doc or addr in reported:
                continue
            reported.add(addr)
            other, other_loc = owner
            yield doc.issue(loc, f"address {addr} already belongs to server {other.name!r} "
                                 f"({format_loc(('spec', *other_loc))} at {other.file}:{other.line_of(*other_loc)})")


def _plans(ds: DesiredState) -> Iterator[Issue]:
    for name, body in ds.plans.items():
        yield from _plan_issues(ds.docs[("ServicePlan", name)], body, addon=False)
    for name, body in ds.addons.items():
        yield from _plan_issues(ds.docs[("AddOnPlan", name)], body, addon=True)


def _subscriptions(ds: DesiredState) -> Iterator[Issue]:
    fqdns: dict[str, str] = {name: name for name in ds.subscriptions}
    ip_customer: dict[str, tuple[str, str]] = {}
    server_of_ip: dict[str, tuple[str, str]] = {}
    for s, sspec in ds.servers.items():
        for ip in sspec.ips:  # the first server that claims an address has it (see _addresses)
            server_of_ip.setdefault(ip.address, (s, ip.type))
    for name, spec in ds.subscriptions.items():
        doc = ds.docs[("Subscription", name)]
        if spec.customer not in ds.customers:
            yield doc.issue(("customer",), _unknown("customer", spec.customer, "Customer"))
        if spec.region not in ds.regions:
            yield doc.issue(("region",), _unknown("region", spec.region, "Region"))
        if spec.plan is not None and spec.plan not in ds.plans:
            yield doc.issue(("plan",), _unknown("plan", spec.plan, "ServicePlan"))
        if spec.plan is None and spec.addons:
            yield doc.issue(("addons",), "add-ons need a plan: a custom subscription has none (PLAN-2)")
        seen: set[str] = set()
        for i, addon in enumerate(spec.addons):
            if addon in seen:
                yield doc.issue(("addons", i), f"add-on {addon!r} listed twice (PLAN-2)")
            elif addon not in ds.addons:
                yield doc.issue(("addons", i), _unknown("add-on", addon, "AddOnPlan"))
            seen.add(addon)
        if spec.server is not None:
            srv = ds.servers.get(spec.server)
            if srv is None:
                yield doc.issue(("server",), _unknown("server", spec.server, "Server"))
            elif srv.region != spec.region:
                yield doc.issue(("server",), f"server {spec.server!r} is in region {srv.region!r}, not {spec.region!r}")
        if spec.ip is not None:
            owner = server_of_ip.get(spec.ip)
            if owner is None:
                yield doc.issue(("ip",), f"address {spec.ip} belongs to no server")
            else:
                srv_name, ip_type = owner
                if spec.server is not None and srv_name != spec.server:
                    yield doc.issue(("ip",), f"address {spec.ip} belongs to server {srv_name!r}, not {spec.server!r}")
                elif ds.servers[srv_name].region != spec.region:
                    yield doc.issue(("ip",), f"address {spec.ip} is in another region than {spec.region!r}")
                if ip_type != spec.ipType:
                    yield doc.issue(("ip",), f"address {spec.ip} is {ip_type}, but ipType is {spec.ipType}")
                if ip_type == "dedicated":
                    prev = ip_customer.get(spec.ip)
                    if prev is not None and prev[0] != spec.customer:
                        yield doc.issue(("ip",), f"dedicated address {spec.ip} is already used by {prev[1]!r} of "
                                                 f"customer {prev[0]!r}: a dedicated IP serves one customer only")
                    ip_customer.setdefault(spec.ip, (spec.customer, name))
        if spec.stateReason is not None and spec.state != "suspended":
            yield doc.issue(("stateReason",), "stateReason is only meaningful with state: suspended")
        if spec.customizations is not None:
            yield from php_issues(doc, ("customizations", "hosting", "php", "settings"),
                                  spec.customizations.hosting.php.settings)
        yield from php_issues(doc, ("customerSettings", "php"), spec.customerSettings.php)
        if spec.customerSettings.hosting.php.settings:
            yield doc.issue(("customerSettings", "hosting", "php", "settings"),
                            "customer PHP settings go under customerSettings.php")
        if spec.access.ftpUsers:
            over = ftp_accounts_over(len(spec.access.ftpUsers), ftp_accounts_limit(ds, spec))
            if over:
                yield doc.issue(("access", "ftpUsers"), f"{over}: remove an account or raise the limit "
                                "(an add-on's ftpAccounts add up, PLAN-3)")
        dbs: set[str] = set()
        for i, db in enumerate(spec.databases):
            if db.name in dbs:
                yield doc.issue(("databases", i, "name"), f"database {db.name!r} listed twice")
            dbs.add(db.name)
        for i, site in enumerate(spec.sites):
            try:
                fqdn = site_fqdn(name, site)
            except ValueError as exc:
                yield doc.issue(("sites", i, "name"), str(exc))
                continue
            if fqdn in fqdns:
                yield doc.issue(("sites", i, "name"),
                                f"{fqdn} already belongs to {fqdns[fqdn]!r} (PLAN-1: a domain belongs to one subscription)")
            fqdns.setdefault(fqdn, name)
            yield from php_issues(doc, ("sites", i, "php", "settings"), site.php.settings)


def site_fqdn(domain: str, site: kinds.Site) -> str:
    """The fully qualified name of a site: ``name.<domain>`` or, for an alias, ``name``."""
    if site.type == "subdomain":
        return values.domain_name(f"{values.dns_label(site.name)}.{domain}")
    return values.domain_name(site.name)


def has_values(model: kinds.Strict) -> bool:
    """True if any field of ``model`` (recursively) is set."""
    for fname in type(model).model_fields:
        v = getattr(model, fname)
        if isinstance(v, kinds.Strict):
            if has_values(v):
                return True
        elif v is not UNSET and v != {} and v != []:
            return True
    return False
