"""SYNC-4: which permission keeps which settings out of synchronisation.

A group is a set of paths in the effective spec (``hosting.ssl``) or, for PHP, a
directive group (``php:performance``). While the permission is granted, the group's
values are the customer's: those recorded when the permission was granted (sticky,
kept in the state store), overlaid by ``customerSettings``.
"""

from __future__ import annotations

from typing import Any, Final

from controller.model import php

#: permission -> paths (a ``php:<group>`` entry stands for those PHP directives)
GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "manageDNS": ("dns.mode", "dns.primaries"),
    "manageHosting": ("hosting.ssl", "hosting.httpsOnly", "hosting.errorDocuments",
                      "hosting.php.handler", "hosting.php.version"),
    "managePHPCommon": ("php:common",),
    "managePHPPerformance": ("php:performance",),
    "manageSSH": ("hosting.ssh",),
    "manageWebStats": ("hosting.webStats",),
    "manageLogRotation": ("logs.retainMonths", "logs.rotate", "logs.compress"),
    "manageMailingLists": ("mail.mailingLists",),
    "managePerformance": ("performance.maxConnections", "performance.bandwidthKBps"),
    "manageHardQuota": ("hosting.hardQuota",),
}


def _get(eff: dict[str, Any], path: str) -> Any:
    node: Any = eff
    for part in path.split("."):
        node = node[part]
    return node


def _set(eff: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = eff
    for part in parents:
        node = node[part]
    node[leaf] = value


def extract(eff: dict[str, Any], permission: str) -> dict[str, Any]:
    """The group's current values, keyed by path (or by directive for PHP groups)."""
    out: dict[str, Any] = {}
    for path in GROUPS[permission]:
        if path.startswith("php:"):
            grp = php.Group(path[4:])
            settings = eff["hosting"]["php"]["settings"]
            out.update({f"php:{k}": v for k, v in settings.items() if php.group_of(k) is grp})
        else:
            v = _get(eff, path)
            out[path] = list(v) if isinstance(v, list) else v
    return out


def restore(eff: dict[str, Any], permission: str, values: dict[str, Any]) -> None:
    """Put recorded group values back into ``eff`` (in place)."""
    for path in GROUPS[permission]:
        if path.startswith("php:"):
            grp = php.Group(path[4:])
            settings = eff["hosting"]["php"]["settings"]
            for k in [k for k in settings if php.group_of(k) is grp]:
                del settings[k]
            settings.update({k[4:]: v for k, v in values.items() if k.startswith("php:")})
        elif path in values:
            _set(eff, path, values[path])


def permission_of(path: str) -> str | None:
    """Which permission lets the customer set ``path`` (``php:<directive>`` for PHP)."""
    if path.startswith("php:"):
        grp = php.group_of(path[4:])
        return "managePHPPerformance" if grp is php.Group.PERFORMANCE else "managePHPCommon"
    for perm, paths in GROUPS.items():
        if path in paths:
            return perm
    return None
