"""One typed slice of the effective spec per concern (issue 8 point 4).

The engine hands each driver ``Change``s whose ``slice`` is what that driver's
``slice(item)`` cut out of a subscription's typed, frozen item (``effective.spec.Item``):
a ``TypedDict`` here, so that mypy checks every key and value a driver reads, and a
plain JSON mapping at run time (fingerprints digest it; events diff it). The builders
are the one place that decides what each concern depends on: a value a concern does not
read is not in its slice, so a change of it never re-applies that concern. Pure.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from controller.effective import spec

Limit = int | str  # a number, or "unlimited"


class HostingFlags(TypedDict):
    enabled: bool
    ssl: bool
    httpsOnly: bool
    hardQuota: bool
    errorDocuments: bool
    ssh: bool
    webStats: bool


class Performance(TypedDict):
    maxConnections: Limit
    bandwidthKBps: Limit


class Php(TypedDict):
    handler: str
    version: str
    settings: dict[str, str]


class SitePhp(TypedDict):
    settings: dict[str, str]


class Site(TypedDict):
    name: str
    type: str
    php: SitePhp


class Database(TypedDict):
    name: str
    engine: str
    server: str | None


class Dns(TypedDict):
    mode: str
    primaries: list[str]


class Mail(TypedDict):
    enabled: bool
    mailingLists: bool


class Backup(TypedDict):
    schedule: str
    keepDaily: int
    pitr: bool
    content: str


class Zone(TypedDict):
    """What decides where a subscription's zones live (dns, and tls for DNS-01)."""

    region: str
    sites: list[str]
    dns: Dns
    server: str | None


class Web(TypedDict):
    server: str | None
    ip: str | None
    state: str
    hosting: HostingFlags
    sites: list[str]
    performance: Performance
    #: site -> subdomain | alias
    siteTypes: dict[str, str]
    #: sites whose PHP settings differ from the subscription's: a pool of their own (PHP-2)
    ownPools: list[str]
    #: issue 14: the OpenSSH public keys that may log in (SFTP, chrooted in the web space)
    sshKeys: list[str]


class PhpSlice(TypedDict):
    server: str | None
    state: str
    enabled: bool
    php: Php
    sites: list[Site]
    permissions: dict[str, bool]


class Db(TypedDict):
    state: str
    databases: list[Database]
    quotaMB: Limit


#: the TTL of the records naming a subscription's address; while it moves (issue 13:
#: a move is recorded, ``item["moving"]``) ``MOVE_TTL``, so that resolvers take its
#: switch to the target's address within a minute (the source forwards meanwhile, DNS-4)
ADDRESS_TTL = 300
MOVE_TTL = 60


class DnsSlice(TypedDict):
    ip: str | None
    dns: Dns
    sites: list[str]
    mail: Mail
    region: str
    server: str | None
    manageDNS: bool
    #: present only while the subscription moves (``MOVE_TTL``)
    addressTtl: NotRequired[int]


class Tls(TypedDict):
    ssl: bool
    httpsOnly: bool
    server: str | None
    sites: list[str]
    ip: str | None
    enabled: bool
    siteTypes: dict[str, str]
    #: DNS-01: where the zone's primary is
    region: str
    #: DNS-01: a customer's zone (mode secondary) cannot take a challenge record
    dns: Dns


class BackupSlice(TypedDict):
    backup: Backup
    enabled: bool
    databases: list[Database]
    server: str | None


#: any concern's slice: what ``Driver.slice`` returns (the engine only digests it)
Slice = Web | PhpSlice | Db | DnsSlice | Tls | BackupSlice


def _flags(h: spec.Hosting) -> HostingFlags:
    return HostingFlags(enabled=h["enabled"], ssl=h["ssl"], httpsOnly=h["httpsOnly"], hardQuota=h["hardQuota"],
                        errorDocuments=h["errorDocuments"], ssh=h["ssh"], webStats=h["webStats"])


def _site(s: spec.Site) -> Site:
    return Site(name=s["name"], type=s["type"], php=SitePhp(settings=dict(s["php"]["settings"])))


def _db(d: spec.Database) -> Database:
    return Database(name=d["name"], engine=d["engine"], server=d["server"])


def _dns(d: spec.Dns) -> Dns:
    return Dns(mode=d["mode"], primaries=list(d["primaries"]))


def _php(p: spec.Php) -> Php:
    return Php(handler=p["handler"], version=p["version"], settings=dict(p["settings"]))


def own_pools(php: Php, sites: list[Site]) -> list[str]:
    """Sites needing their own pool: those whose effective PHP settings differ (PHP-2)."""
    return sorted(s["name"] for s in sites if s["php"]["settings"] != php["settings"])


def web(item: spec.Item) -> Web:
    eff = item["effective"]
    sites = eff["sites"]
    perf = eff["performance"]
    return Web(server=item["server"], ip=item["ip"], state=item["state"], hosting=_flags(eff["hosting"]),
               sites=[s["name"] for s in sites],
               performance=Performance(maxConnections=perf["maxConnections"], bandwidthKBps=perf["bandwidthKBps"]),
               siteTypes={s["name"]: s["type"] for s in sites},
               ownPools=own_pools(_php(eff["hosting"]["php"]), [_site(s) for s in sites]),
               sshKeys=list(eff["access"]["sshKeys"]) if "access" in eff else [])


def php(item: spec.Item) -> PhpSlice:
    eff = item["effective"]
    perms = eff["permissions"]
    return PhpSlice(server=item["server"], state=item["state"], enabled=eff["hosting"]["enabled"],
                    php=_php(eff["hosting"]["php"]), sites=[_site(s) for s in eff["sites"]],
                    permissions={"managePHPCommon": perms["managePHPCommon"],
                                 "managePHPPerformance": perms["managePHPPerformance"]})


def db(item: spec.Item) -> Db:
    eff = item["effective"]
    return Db(state=item["state"], databases=[_db(d) for d in eff["databases"]],
              quotaMB=eff["resources"]["databaseQuotaMB"])


def dns(item: spec.Item) -> DnsSlice:
    eff = item["effective"]
    out = DnsSlice(ip=item["ip"], dns=_dns(eff["dns"]), sites=[s["name"] for s in eff["sites"]],
                   mail=Mail(enabled=eff["mail"]["enabled"], mailingLists=eff["mail"]["mailingLists"]),
                   region=item["region"], server=item["server"], manageDNS=eff["permissions"]["manageDNS"])
    if item.get("moving"):
        out["addressTtl"] = MOVE_TTL
    return out


def tls(item: spec.Item) -> Tls:
    eff = item["effective"]
    sites = eff["sites"]
    return Tls(ssl=eff["hosting"]["ssl"], httpsOnly=eff["hosting"]["httpsOnly"], server=item["server"],
               sites=[s["name"] for s in sites], ip=item["ip"], enabled=eff["hosting"]["enabled"],
               siteTypes={s["name"]: s["type"] for s in sites}, region=item["region"], dns=_dns(eff["dns"]))


def backup(item: spec.Item) -> BackupSlice:
    eff = item["effective"]
    b = eff["backup"]
    return BackupSlice(backup=Backup(schedule=b["schedule"], keepDaily=b["keepDaily"], pitr=b["pitr"],
                                     content=b.get("content", "settingsAndData")),  # recorded before BKP-6: default
                       enabled=eff["permissions"]["backups"], databases=[_db(d) for d in eff["databases"]],
                       server=item["server"])
