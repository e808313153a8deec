"""What a plan leaves out: the one place where default values live.

A custom subscription (PLAN-2) starts from these too. Numeric limits default to
``unlimited`` (what a new plan offers in the reference panel), permissions to ``false``.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar, cast

from controller.model.values import UNLIMITED

DEFAULTS: Final[dict[str, Any]] = {
    "resources": {
        "diskMB": UNLIMITED,
        "trafficMBPerMonth": UNLIMITED,
        "domains": UNLIMITED,
        "subdomains": UNLIMITED,
        "domainAliases": UNLIMITED,
        "mailboxes": UNLIMITED,
        "mailboxSizeMB": UNLIMITED,
        "databases": UNLIMITED,
        "databaseQuotaMB": UNLIMITED,
        "ftpAccounts": UNLIMITED,
        "validityDays": UNLIMITED,
    },
    "overuse": {"policy": "notAllowed", "suspend": False, "notifyAtPercent": 90},
    "permissions": {
        "manageDNS": False,
        "manageHosting": False,
        "managePHPCommon": False,
        "managePHPPerformance": False,
        "manageSSH": False,
        "manageWebStats": False,
        "manageLogRotation": False,
        "manageMailingLists": False,
        "managePerformance": False,
        "manageHardQuota": False,
        "backups": True,
    },
    "hosting": {
        "enabled": True,
        "ssl": False,
        "httpsOnly": False,
        "hardQuota": False,
        "errorDocuments": True,
        "ssh": False,
        "webStats": False,
        "php": {"handler": "fpm", "version": "8.2", "settings": {}},
    },
    "mail": {"enabled": True, "mailingLists": False},
    "dns": {"mode": "primary", "primaries": []},
    "performance": {"maxConnections": UNLIMITED, "bandwidthKBps": UNLIMITED},
    "logs": {"retainMonths": 3, "rotate": "daily", "compress": True},
    "backup": {"schedule": "0 2 * * *", "keepDaily": 15, "pitr": False, "content": "settingsAndData"},
}

#: Groups whose numeric limits add up across a plan and its add-ons (PLAN-3).
ADDITIVE_GROUPS: Final = frozenset({"resources", "performance"})


T = TypeVar("T")
_CONTAINERS = (dict, list)


def copy(doc: T) -> T:
    """New dicts and lists all the way down, the same (immutable) scalars: a deep copy
    of JSON-like data that is safe to modify."""
    return cast(T, _copy(doc))


def _copy(doc: Any) -> Any:
    if doc.__class__ is dict:
        return {k: (_copy(v) if v.__class__ in _CONTAINERS else v) for k, v in doc.items()}
    if doc.__class__ is list:
        return [(_copy(v) if v.__class__ in _CONTAINERS else v) for v in doc]
    return doc


def fresh() -> dict[str, Any]:
    """A deep copy of the defaults, safe to modify."""
    return copy(DEFAULTS)
