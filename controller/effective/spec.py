"""The effective spec, typed and read-only (issue 8 point 4).

``effective.compute`` builds each subscription's *item* as JSON-like data (what the
state store records and ``status -o json`` prints). ``Item`` is its type: read-only
``TypedDict``s (PEP 705), so that mypy strict checks every key and value a driver reads
(``drivers.slices`` cuts one typed slice per concern out of it) and refuses any write;
the data itself stays the dict ``compute`` made, at no cost per subscription. ``check``
validates a dict against the type at run time: for what comes back from the state store
(recorded by another version), and in the tests, for every item ``compute`` makes. No I/O.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, cast

import pydantic
from typing_extensions import ReadOnly, TypedDict

from controller.effective import defaults

Limit = int | Literal["unlimited"]


class Resources(TypedDict):
    diskMB: ReadOnly[Limit]
    trafficMBPerMonth: ReadOnly[Limit]
    domains: ReadOnly[Limit]
    subdomains: ReadOnly[Limit]
    domainAliases: ReadOnly[Limit]
    mailboxes: ReadOnly[Limit]
    mailboxSizeMB: ReadOnly[Limit]
    databases: ReadOnly[Limit]
    databaseQuotaMB: ReadOnly[Limit]
    ftpAccounts: ReadOnly[Limit]
    validityDays: ReadOnly[Limit]


class Overuse(TypedDict):
    policy: ReadOnly[str]
    suspend: ReadOnly[bool]
    notifyAtPercent: ReadOnly[int]


class Permissions(TypedDict):
    manageDNS: ReadOnly[bool]
    manageHosting: ReadOnly[bool]
    managePHPCommon: ReadOnly[bool]
    managePHPPerformance: ReadOnly[bool]
    manageSSH: ReadOnly[bool]
    manageWebStats: ReadOnly[bool]
    manageLogRotation: ReadOnly[bool]
    manageMailingLists: ReadOnly[bool]
    managePerformance: ReadOnly[bool]
    manageHardQuota: ReadOnly[bool]
    backups: ReadOnly[bool]


class Php(TypedDict):
    handler: ReadOnly[str]
    version: ReadOnly[str]
    #: php.ini directive -> value, checked by the model's grammar (PHP-3)
    settings: ReadOnly[Mapping[str, str]]


class Hosting(TypedDict):
    enabled: ReadOnly[bool]
    ssl: ReadOnly[bool]
    httpsOnly: ReadOnly[bool]
    hardQuota: ReadOnly[bool]
    errorDocuments: ReadOnly[bool]
    ssh: ReadOnly[bool]
    webStats: ReadOnly[bool]
    php: ReadOnly[Php]


class Mail(TypedDict):
    enabled: ReadOnly[bool]
    mailingLists: ReadOnly[bool]


class Dns(TypedDict):
    mode: ReadOnly[str]
    primaries: ReadOnly[Sequence[str]]


class Performance(TypedDict):
    maxConnections: ReadOnly[Limit]
    bandwidthKBps: ReadOnly[Limit]


class Logs(TypedDict):
    retainMonths: ReadOnly[int]
    rotate: ReadOnly[str]
    compress: ReadOnly[bool]


class Backup(TypedDict):
    schedule: ReadOnly[str]
    keepDaily: ReadOnly[int]
    pitr: ReadOnly[bool]
    content: ReadOnly[str]


class SitePhp(TypedDict):
    settings: ReadOnly[Mapping[str, str]]


class Site(TypedDict):
    name: ReadOnly[str]
    type: ReadOnly[str]
    php: ReadOnly[SitePhp]


class Database(TypedDict):
    name: ReadOnly[str]
    engine: ReadOnly[str]
    server: ReadOnly[str | None]


class FtpUser(TypedDict):
    name: str
    #: a file under ``<state>/secrets/ftp/`` holding the password (None or absent: generated)
    passwordRef: NotRequired[str | None]


class Access(TypedDict):
    #: OpenSSH public key lines (checked by the model: no options), the subscription's
    #: own then the customer's (while manageSSH is granted), without repeats
    sshKeys: ReadOnly[Sequence[str]]
    #: FTPS accounts (issue 14), present only when the subscription has some
    ftpUsers: ReadOnly[NotRequired[Sequence[FtpUser]]]


class Effective(TypedDict):
    resources: ReadOnly[Resources]
    overuse: ReadOnly[Overuse]
    permissions: ReadOnly[Permissions]
    hosting: ReadOnly[Hosting]
    mail: ReadOnly[Mail]
    dns: ReadOnly[Dns]
    performance: ReadOnly[Performance]
    logs: ReadOnly[Logs]
    backup: ReadOnly[Backup]
    sites: ReadOnly[Sequence[Site]]
    databases: ReadOnly[Sequence[Database]]
    #: issue 14; absent from items recorded before it (read with ``.get``)
    access: ReadOnly[NotRequired[Access]]


class Item(TypedDict):
    """One subscription as the engine hands it to drivers (the status document has more
    keys: plan, addons, conditions, ...; drivers read only these)."""

    name: ReadOnly[str]
    customer: ReadOnly[str]
    region: ReadOnly[str]
    server: ReadOnly[str | None]
    ip: ReadOnly[str | None]
    state: ReadOnly[str]
    effective: ReadOnly[Effective]
    #: present (True) only while a move of it is recorded (issue 13, ``state.moves``)
    moving: ReadOnly[NotRequired[bool]]


def of(item: Mapping[str, Any]) -> Item:
    """An item ``effective.compute`` made, as its type (no copy, no check: ``compute``
    is the one producer, and the tests check its output with ``check``)."""
    return cast(Item, item)


@functools.cache
def _adapter() -> pydantic.TypeAdapter[Item]:
    with warnings.catch_warnings():  # pydantic says it does not enforce ReadOnly: mypy does
        warnings.simplefilter("ignore", UserWarning)
        return pydantic.TypeAdapter(Item)


def check(item: Mapping[str, Any]) -> Item:
    """``item`` validated against ``Item`` (raises ``ValueError`` naming the field)."""
    _adapter().validate_python(item)
    return of(item)


def sketch(item: Mapping[str, Any]) -> Item:
    """An item from only the parts a caller cares about (tests, benchmarks): the rest of
    the effective spec from the defaults, sites without PHP settings of their own, no
    databases, customer ``-``; checked."""
    eff = defaults.fresh()
    for group, values in dict(item.get("effective", {})).items():
        if isinstance(values, Mapping) and isinstance(eff.get(group), dict):
            eff[group].update(values)
        else:
            eff[group] = values
    eff["sites"] = [{"type": "subdomain", "php": {"settings": {}}, **s} for s in eff.get("sites", [])]
    eff.setdefault("databases", [])
    return check({"customer": "-", "server": None, "ip": None, "state": "active", **item, "effective": eff})
