"""The effective spec, typed and frozen (issue 8 point 4).

``effective.compute`` builds each subscription's *item* as JSON-like data (what the
state store records and ``status -o json`` prints). ``Item.of(item)`` is the same data
as frozen, typed models: what the engine hands to drivers (``drivers.slices`` cuts one
typed slice per concern out of it), so that mypy checks every field below the model and
no driver can change what another reads. A field ``compute`` adds without adding it
here fails loudly (``extra="forbid"``). No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from controller.effective import defaults

Limit = int | Literal["unlimited"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Resources(Frozen):
    diskMB: Limit
    trafficMBPerMonth: Limit
    domains: Limit
    subdomains: Limit
    domainAliases: Limit
    mailboxes: Limit
    mailboxSizeMB: Limit
    databases: Limit
    databaseQuotaMB: Limit
    ftpAccounts: Limit
    validityDays: Limit


class Overuse(Frozen):
    policy: str
    suspend: bool
    notifyAtPercent: int


class Permissions(Frozen):
    manageDNS: bool
    manageHosting: bool
    managePHPCommon: bool
    managePHPPerformance: bool
    manageSSH: bool
    manageWebStats: bool
    manageLogRotation: bool
    manageMailingLists: bool
    managePerformance: bool
    manageHardQuota: bool
    backups: bool


class Php(Frozen):
    handler: str
    version: str
    #: php.ini directive -> value, checked by the model's grammar (PHP-3)
    settings: Mapping[str, str]


class Hosting(Frozen):
    enabled: bool
    ssl: bool
    httpsOnly: bool
    hardQuota: bool
    errorDocuments: bool
    ssh: bool
    webStats: bool
    php: Php


class Mail(Frozen):
    enabled: bool
    mailingLists: bool


class Dns(Frozen):
    mode: str
    primaries: tuple[str, ...]


class Performance(Frozen):
    maxConnections: Limit
    bandwidthKBps: Limit


class Logs(Frozen):
    retainMonths: int
    rotate: str
    compress: bool


class Backup(Frozen):
    schedule: str
    keepDaily: int
    pitr: bool


class SitePhp(Frozen):
    settings: Mapping[str, str]


class Site(Frozen):
    name: str
    type: str
    php: SitePhp


class Database(Frozen):
    name: str
    engine: str
    server: str | None


class Effective(Frozen):
    resources: Resources
    overuse: Overuse
    permissions: Permissions
    hosting: Hosting
    mail: Mail
    dns: Dns
    performance: Performance
    logs: Logs
    backup: Backup
    sites: tuple[Site, ...]
    databases: tuple[Database, ...]


class Item(Frozen):
    """One subscription as the engine hands it to drivers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    customer: str
    region: str
    server: str | None
    ip: str | None
    state: str
    effective: Effective

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> Item:
        return cls.model_validate(item)

    @classmethod
    def sketch(cls, item: Mapping[str, Any]) -> Item:
        """An item from only the parts a caller cares about (tests, benchmarks): the
        rest of the effective spec from the defaults, sites without PHP settings of
        their own, no databases, customer ``-``."""
        eff = defaults.fresh()
        for group, values in dict(item.get("effective", {})).items():
            if isinstance(values, Mapping) and isinstance(eff.get(group), dict):
                eff[group].update(values)
            else:
                eff[group] = values
        eff["sites"] = [{"type": "subdomain", "php": {"settings": {}}, **s} for s in eff.get("sites", [])]
        eff.setdefault("databases", [])
        return cls.of({"customer": "-", "server": None, "ip": None, "state": "active", **item, "effective": eff})
