"""Pydantic v2 schemas of the six document kinds (../shared/desired-state.md).

Field names are the documents' camelCase names, so a model dumps back to the same
shape. Every group field is optional and defaults to ``UNSET``: what a plan leaves out
comes from ``controller.effective.defaults`` (one place), what an add-on or a
customisation leaves out keeps the value below it (PLAN-3). Semantic checks that need
more than one document live in ``controller.model.validate``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator, model_validator

from controller.model import maintenance, values
from controller.model.values import UNSET, Unset


def _opt(check: Any) -> PlainValidator:
    def run(v: Any) -> Any:
        if v is None or v is UNSET or v == UNSET.value:
            return UNSET
        return check(v)

    return PlainValidator(run)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _choice(*allowed: str) -> Any:
    def check(v: Any) -> str:
        if v not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {v!r}")
        return str(v)

    return check


def _percent(v: Any) -> int:
    n = values._count(v)
    if n > 100:
        raise ValueError(f"expected a percentage from 0 to 100, got {v!r}")
    return n


def _keep_daily(v: Any) -> int:
    n = values._count(v)
    if not 1 <= n <= 30:
        raise ValueError(f"expected 1 to 30 daily backups (BKP-2: a window of 15 to 30 days), got {v!r}")
    return n


def _copies_to(v: Any) -> str | list[str]:
    if v == "all":
        return "all"
    if not isinstance(v, list):
        raise ValueError(f"expected 'all' or a list of region names, got {v!r}")
    return [values.dns_label(r) for r in v]


def _opt_date(v: Any) -> dt.date | None:
    return None if v is None else values.date(v)


def _php_settings(v: Any) -> dict[str, Any]:
    # Shape only; directive names and value grammar are checked with exact paths by
    # controller.model.validate (PHP-3).
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of PHP directives to values, got {type(v).__name__}")
    return dict(v)


OptLimit = Annotated[int | str | Unset, _opt(values._limit)]
OptCount = Annotated[int | Unset, _opt(values._count)]
OptBool = Annotated[bool | Unset, _opt(_bool)]
OptPercent = Annotated[int | Unset, _opt(_percent)]
OptKeepDaily = Annotated[int | Unset, _opt(_keep_daily)]
OptCron = Annotated[str | Unset, _opt(values.cron)]
OptPhpVersion = Annotated[str | Unset, _opt(values.php_version)]
OptHandler = Annotated[str | Unset, _opt(_choice("fpm", "cgi", "module"))]
OptPolicy = Annotated[str | Unset, _opt(_choice("notAllowed", "allowed"))]
OptDnsMode = Annotated[str | Unset, _opt(_choice("primary", "secondary"))]
OptRotate = Annotated[str | Unset, _opt(_choice("daily", "weekly", "monthly"))]
OptBackupContent = Annotated[str | Unset, _opt(_choice("settings", "settingsAndData"))]
PhpSettings = Annotated[dict[str, Any], PlainValidator(_php_settings)]
Handler = Annotated[str, PlainValidator(_choice("fpm", "cgi", "module"))]
Role = Annotated[str, PlainValidator(_choice("web", "php", "db-mariadb", "db-postgresql", "dns", "backup"))]
Engine = Annotated[str, PlainValidator(_choice("mariadb", "postgresql"))]
IpType = Annotated[str, PlainValidator(_choice("shared", "dedicated"))]
Provider = Annotated[str, PlainValidator(_choice("docker", "ssh"))]
CustomerState = Annotated[str, PlainValidator(_choice("active", "suspended"))]
SubState = Annotated[str, PlainValidator(_choice("active", "suspended"))]
SuspendReason = Annotated[str, PlainValidator(_choice("manual", "nonpayment", "overuse"))]
SiteType = Annotated[str, PlainValidator(_choice("subdomain", "alias"))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_M = TypeVar("_M", bound=BaseModel)
_DEFAULTS: dict[type[BaseModel], BaseModel] = {}


def default(cls: type[_M]) -> _M:
    """The one shared instance of ``cls`` left entirely at its defaults: what a group
    left out of a document is, in every document (the models are frozen), and what the
    parse cache reads such a group back as. A subscription that sets none of its
    customer settings validates one model instead of nine."""
    obj = _DEFAULTS.get(cls)
    if obj is None:
        obj = _DEFAULTS[cls] = cls()
    return obj  # type: ignore[return-value]


def _shared(cls: type[_M]) -> Any:
    """``default_factory`` of a group: ``default(cls)`` (a C-level call, no lambda)."""
    return functools.partial(default, cls)


# --- groups shared by plans, add-ons and customisations -----------------------------


class Resources(Strict):
    """RES-1 limits, each a number or ``unlimited``."""

    diskMB: OptLimit = UNSET
    trafficMBPerMonth: OptLimit = UNSET
    domains: OptLimit = UNSET
    subdomains: OptLimit = UNSET
    domainAliases: OptLimit = UNSET
    mailboxes: OptLimit = UNSET
    mailboxSizeMB: OptLimit = UNSET
    databases: OptLimit = UNSET
    databaseQuotaMB: OptLimit = UNSET
    ftpAccounts: OptLimit = UNSET
    validityDays: OptLimit = UNSET


class Overuse(Strict):
    """RES-2 overuse policy."""

    policy: OptPolicy = UNSET
    suspend: OptBool = UNSET
    notifyAtPercent: OptPercent = UNSET


class Permissions(Strict):
    """Customer permissions; each ``manage*`` one excludes its settings from sync (SYNC-4)."""

    manageDNS: OptBool = UNSET
    manageHosting: OptBool = UNSET
    managePHPCommon: OptBool = UNSET
    managePHPPerformance: OptBool = UNSET
    manageSSH: OptBool = UNSET
    manageWebStats: OptBool = UNSET
    manageLogRotation: OptBool = UNSET
    manageMailingLists: OptBool = UNSET
    managePerformance: OptBool = UNSET
    manageHardQuota: OptBool = UNSET
    backups: OptBool = UNSET


class Php(Strict):
    handler: OptHandler = UNSET
    version: OptPhpVersion = UNSET
    settings: PhpSettings = Field(default_factory=dict)


class Hosting(Strict):
    enabled: OptBool = UNSET  # HOST-1: false = mail-only
    ssl: OptBool = UNSET  # TLS-1
    httpsOnly: OptBool = UNSET  # TLS-2
    hardQuota: OptBool = UNSET  # RES-3
    errorDocuments: OptBool = UNSET
    ssh: OptBool = UNSET
    webStats: OptBool = UNSET
    php: Php = Field(default_factory=_shared(Php))


class Mail(Strict):
    enabled: OptBool = UNSET
    mailingLists: OptBool = UNSET


class Dns(Strict):
    mode: OptDnsMode = UNSET  # DNS-1
    #: For mode secondary: the customer's primary servers (usually in customerSettings).
    primaries: list[values.IpAddress] = Field(default_factory=list)


class Performance(Strict):
    """PERF-1 limits."""

    maxConnections: OptLimit = UNSET
    bandwidthKBps: OptLimit = UNSET


class Logs(Strict):
    """LOG-1."""

    retainMonths: OptCount = UNSET
    rotate: OptRotate = UNSET
    compress: OptBool = UNSET


class Backup(Strict):
    """BKP-2, BKP-4, BKP-6."""

    schedule: OptCron = UNSET
    keepDaily: OptKeepDaily = UNSET
    pitr: OptBool = UNSET
    #: BKP-6: "settings" (documents, zone, certificate) or "settingsAndData" (also databases and web space)
    content: OptBackupContent = UNSET


class PlanBody(Strict):
    """The groups a plan, an add-on or a customisation may set."""

    resources: Resources = Field(default_factory=_shared(Resources))
    overuse: Overuse = Field(default_factory=_shared(Overuse))
    permissions: Permissions = Field(default_factory=_shared(Permissions))
    hosting: Hosting = Field(default_factory=_shared(Hosting))
    mail: Mail = Field(default_factory=_shared(Mail))
    dns: Dns = Field(default_factory=_shared(Dns))
    performance: Performance = Field(default_factory=_shared(Performance))
    logs: Logs = Field(default_factory=_shared(Logs))
    backup: Backup = Field(default_factory=_shared(Backup))


# --- the six kinds ---------------------------------------------------------------


class Metadata(Strict):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Maintenance(Strict):
    """OPS-2: when the region's disruptive changes run: a weekly or monthly window."""

    #: ``DAY HH:MM-HH:MM`` in the region's time zone, e.g. ``MON 22:00-23:00``
    window: str
    #: once a month on that weekday (``first`` .. ``fourth``, ``last``); absent: every week
    monthly: Literal["first", "second", "third", "fourth", "last"] | None = None

    @field_validator("window")
    @classmethod
    def _parses(cls, v: str) -> str:
        maintenance.Window.parse(v)  # ValueError: what was expected
        return v

    @property
    def parsed(self) -> maintenance.Window:
        return maintenance.Window.parse(self.window, self.monthly)


class RegionSpec(Strict):
    timezone: values.TimeZone = "UTC"
    #: ``all`` other regions (BKP-1), or a list of region names.
    backupCopiesTo: Annotated[Literal["all"] | list[str], PlainValidator(_copies_to)] = "all"
    #: OPS-2: disruptive changes (a PHP version change) wait for this window; absent: none wait
    maintenance: Maintenance | None = None


@dataclasses.dataclass(frozen=True)
class Release:
    """What a Debian release ships of the services tenantctl configures."""

    suite: str
    """the Debian codename: the embedded image's suite, the role's ``tenantctl_release``"""
    php: str
    mariadb: str
    postgresql: str


#: ``Server.spec.os`` -> its release (the role's ``tenantctl_server_releases`` holds the
#: same versions by suite). ``debian-12`` is the default: documents without ``os`` are bookworm.
RELEASES: dict[str, Release] = {
    "debian-12": Release("bookworm", php="8.2", mariadb="10.11", postgresql="15"),
    "debian-13": Release("trixie", php="8.4", mariadb="11.8", postgresql="17"),
}
DEFAULT_OS: Literal["debian-12"] = "debian-12"
Os = Literal["debian-12", "debian-13"]

#: PLAT-5 ("the customer must stay within the last four supported versions"): the
#: versions tenantctl supports of what a customer's platform runs on, oldest first (every
#: release's versions are among them). The one place status and metrics judge by.
SUPPORTED_VERSIONS: dict[str, tuple[str, ...]] = {
    "php": ("7.4", "8.0", "8.1", "8.2", "8.3", "8.4"),
    "mariadb": ("10.5", "10.6", "10.11", "11.4", "11.8"),
    "postgresql": ("13", "14", "15", "16", "17"),
}
#: how many of the newest supported versions a subscription may run (PLAT-5)
SUPPORTED_WINDOW = 4


def version_key(version: str) -> tuple[int, ...]:
    """``"10.11"`` -> ``(10, 11)``: versions compare numerically (``"8.10" > "8.9"``)."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def current_versions(software: str) -> tuple[str, ...]:
    """The last ``SUPPORTED_WINDOW`` supported versions of ``software`` (PLAT-5)."""
    return SUPPORTED_VERSIONS[software][-SUPPORTED_WINDOW:]


def outdated(software: str, version: str) -> bool:
    """PLAT-5: ``version`` of ``software`` (``php``, ``mariadb``, ``postgresql``) is older
    than the last ``SUPPORTED_WINDOW`` supported ones. A newer unknown version is not."""
    return version_key(version) < version_key(current_versions(software)[0])


class ServerIp(Strict):
    address: values.IpAddress
    type: IpType = "shared"


class Capacity(Strict):
    sites: values.Count = 500
    diskMB: values.Count = 100000


class PhpOffer(Strict):
    versions: list[Annotated[str, PlainValidator(values.php_version)]] = Field(default_factory=list)
    handlers: list[Handler] = Field(default_factory=list)


class Offers(Strict):
    """What the server can provide; SYNC-3 is judged on this."""

    php: PhpOffer = Field(default_factory=_shared(PhpOffer))
    hardQuota: bool = False


class ServerSpec(Strict):
    region: values.DnsLabel
    provider: Provider
    address: values.IpAddress
    ips: list[ServerIp] = Field(min_length=1)
    roles: list[Role] = Field(min_length=1)
    capacity: Capacity = Field(default_factory=_shared(Capacity))
    offers: Offers = Field(default_factory=_shared(Offers))
    #: Server-wide php.ini values: the lowest level of PHP-2.
    phpDefaults: PhpSettings = Field(default_factory=dict)
    #: A spare server (DR-1): configured for its roles like any other, but nothing is
    #: placed on it; the nightly disaster-recovery drill restores subscriptions of other
    #: regions into it as scratch copies.
    spare: bool = False
    #: The operating system: ``debian-12`` (bookworm: PHP 8.2, MariaDB 10.11, PostgreSQL
    #: 15) or ``debian-13`` (trixie: PHP 8.4, MariaDB 11.8, PostgreSQL 17). A docker
    #: server runs the image of that release; ``offers`` stays what SYNC-3 is judged on.
    os: Os = DEFAULT_OS

    @property
    def release(self) -> Release:
        """What the server's ``os`` ships (``RELEASES``)."""
        return RELEASES[self.os]


class CustomerSpec(Strict):
    email: values.Email
    state: CustomerState = "active"


class Database(Strict):
    name: values.DbName
    engine: Engine


class SitePhp(Strict):
    settings: PhpSettings = Field(default_factory=dict)


class Site(Strict):
    """A subdomain (``name``.<domain>) or a domain alias (``name`` is a whole domain)."""

    name: str
    type: SiteType = "subdomain"
    php: SitePhp = Field(default_factory=_shared(SitePhp))


#: an FTP account's name (issue 14): its login on the server is ``<name>@<domain>``, so
#: names never clash across subscriptions; lower case, no ``:``/``@``/``/`` (PureDB fields)
FTP_USER_NAME = r"^[a-z][a-z0-9._-]{0,31}$"
#: a password reference: a file name under ``<state>/secrets/ftp/`` (no path)
FTP_PASSWORD_REF = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class FtpUser(Strict):
    """An FTPS account of the web space (issue 14), counted by ``resources.ftpAccounts``.

    ``passwordRef`` names a file under ``<state>/secrets/ftp/`` whose first line is the
    password; left out, tenantctl generates one and keeps it 0600 under
    ``<state>/ftp-credentials/`` (``controller.drivers.hosting.ftp``)."""

    name: str
    passwordRef: str | None = None

    @model_validator(mode="after")
    def _safe(self) -> FtpUser:  # checked here, not by the CRD's schema (a plain string there)
        if not re.fullmatch(FTP_USER_NAME, self.name):
            raise ValueError(f"FTP user name {self.name!r}: expected {FTP_USER_NAME} (lower case letters, digits, "
                             "'.', '_', '-'; 32 at most)")
        if self.passwordRef is not None and not re.fullmatch(FTP_PASSWORD_REF, self.passwordRef):
            raise ValueError(f"passwordRef {self.passwordRef!r}: a file name under the state directory's "
                             "secrets/ftp/, not a path")
        return self


class Access(Strict):
    """How the customer reaches the web space (issue 14): SFTP/SSH by public key, FTPS
    accounts (the subscription's own only: under ``customerSettings`` they are ignored)."""

    sshKeys: list[values.SshPublicKey] = Field(default_factory=list)
    ftpUsers: list[FtpUser] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ftp_users(self) -> Access:
        seen: set[str] = set()
        for u in self.ftpUsers:
            if u.name in seen:
                raise ValueError(f"FTP user {u.name!r} listed twice")
            seen.add(u.name)
        return self


class CustomerSettings(Strict):
    """What the customer set through a granted permission (SYNC-4)."""

    #: ``sshKeys`` count only while the plan grants manageSSH
    access: Access = Field(default_factory=_shared(Access))

    php: PhpSettings = Field(default_factory=dict)
    hosting: Hosting = Field(default_factory=_shared(Hosting))
    mail: Mail = Field(default_factory=_shared(Mail))
    dns: Dns = Field(default_factory=_shared(Dns))
    performance: Performance = Field(default_factory=_shared(Performance))
    logs: Logs = Field(default_factory=_shared(Logs))


#: PLAT-3: a demo's reset source pinned to one backup: ``snapshot:`` and a restic id
#: (8 to 64 hex digits; every part of the backup run that took it is restored)
SNAPSHOT_REF = re.compile(r"^snapshot:([0-9a-f]{8,64})$")
#: PLAT-3: demos are reset every hour at minute 44 unless told otherwise
DEMO_SCHEDULE = "44 * * * *"


def _reset_from(v: Any) -> str:
    if isinstance(v, str) and v.startswith("snapshot:"):
        if not SNAPSHOT_REF.fullmatch(v):
            raise ValueError(f"expected snapshot:<id> (8 to 64 hex digits of a restic snapshot id), got {v!r}")
        return v
    try:
        return values.domain_name(v)
    except ValueError as exc:
        raise ValueError(f"expected a subscription (its domain) or snapshot:<id>, got {v!r}") from exc


class Demo(Strict):
    """PLAT-3: a public sandbox reset from a reference on a schedule: its web space and
    databases become the reference's again (``controller.reconcile.demo``)."""

    #: the reference: a subscription (its newest backup) or ``snapshot:<id>`` (one backup)
    resetFrom: str
    #: cron, in the region's time zone
    schedule: values.Cron = DEMO_SCHEDULE

    @field_validator("resetFrom", mode="before")
    @classmethod
    def _reference(cls, v: Any) -> str:
        return _reset_from(v)


class SubscriptionSpec(Strict):
    customer: values.DnsLabel
    plan: values.DnsLabel | None = None  # None: a custom subscription (PLAN-2)
    addons: list[values.DnsLabel] = Field(default_factory=list)
    region: values.DnsLabel
    ipType: IpType = "shared"
    #: Optional explicit address (must be one of the placed server's).
    ip: values.IpAddress | None = None
    #: Optional explicit server: the only way a placed subscription moves.
    server: values.DnsLabel | None = None
    state: SubState = "active"
    stateReason: SuspendReason | None = None
    expires: Annotated[dt.date | None, PlainValidator(_opt_date)] = None  # LIFE-3
    customizations: PlanBody | None = None  # SYNC-2: any value here locks
    customerSettings: CustomerSettings = Field(default_factory=_shared(CustomerSettings))
    databases: list[Database] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)
    access: Access = Field(default_factory=_shared(Access))
    #: PLAT-3: a demo platform, reset from its reference on a schedule (no backups, no SLA)
    demo: Demo | None = None
    #: PLAT-2: a test copy of this subscription (its domain): the source's plan and
    #: settings at half its resources, no backups, no SLA; filled by ``tenantctl copy refresh``
    copyOf: values.DomainName | None = None

    @model_validator(mode="after")
    def _one_sandbox(self) -> SubscriptionSpec:
        if self.demo is not None and self.copyOf is not None:
            raise ValueError("demo and copyOf exclude each other: a demo is reset from its reference, "
                             "a test copy refreshed from its source")
        return self


KINDS: dict[str, type[Strict]] = {
    "Region": RegionSpec,
    "Server": ServerSpec,
    "ServicePlan": PlanBody,
    "AddOnPlan": PlanBody,
    "Customer": CustomerSpec,
    "Subscription": SubscriptionSpec,
}
