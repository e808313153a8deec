"""Reality, checked (issue 7 point 3, issue 8 point 2): what was lost on the servers.

Two checks, both read-only; what they find is *marked* (the concern's applied
fingerprint is forgotten) so that the next reconcile pass re-applies it through the
same path, conditions, status and metrics as any other change. Drift repair never
applies anything by itself.

* ``detect``: every drift-aware driver lists, in one round trip per server, which of
  the subscriptions placed there no longer have what was applied.
* ``replaced``: a server whose identity marker changed or vanished (a fresh machine at
  the same address, or a wiped one) lost everything placed on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.drivers import base
from controller.reconcile import planner


@dataclass
class Found:
    #: name -> concern -> what differs
    drifted: dict[str, dict[str, str]] = field(default_factory=dict)
    #: (concern, server) -> why the server could not be asked
    unreachable: dict[tuple[str, str], str] = field(default_factory=dict)
    #: name -> why its recorded item could not be read as the typed item
    unreadable: dict[str, str] = field(default_factory=dict)


def _action(item: Mapping[str, Any]) -> base.Action:
    return "suspend" if item.get("state") == "suspended" else "ensure"


def detect(drivers: Mapping[str, base.Driver], planned: planner.Planned) -> Found:
    """Ask every drift-aware driver about every placed subscription (whatever else is
    pending for it: a failing certificate never hides a lost web space)."""
    found = Found()
    for concern, driver in drivers.items():
        if not isinstance(driver, base.DriftAware):
            continue
        per_server: dict[str, list[base.Change[Any]]] = defaultdict(list)
        for name, sub in planned.subscriptions.items():
            if sub.placement.server is None:
                continue
            try:
                sl = driver.slice(sub.typed)
            except (KeyError, TypeError) as exc:  # a record this version cannot read: the next apply rewrites it
                found.unreadable[name] = f"{type(exc).__name__}: {exc}"
                continue
            per_server[sub.placement.server].append(base.Change(name, _action(sub.item), sl))
        for server, changes in sorted(per_server.items()):
            try:
                drifted = driver.drifted(server, changes)
            except errors.DriverError as exc:
                found.unreachable[(concern, server)] = str(exc)
                continue
            except Exception as exc:  # a driver bug must not end the controller
                found.unreachable[(concern, server)] = f"internal error: {type(exc).__name__}: {exc}"
                continue
            for name, what in drifted.items():
                found.drifted.setdefault(name, {})[concern] = what
    return found


def touching(planned: planner.Planned, server: str, roles: tuple[str, ...], region: str) -> dict[str, list[str]]:
    """Which concerns of which subscriptions live on ``server``: name -> concerns."""
    out: dict[str, list[str]] = {}
    for name, sub in planned.subscriptions.items():
        pl = sub.placement
        concerns: list[str] = []
        if pl.server == server:
            concerns += ["web", "php", "tls", "backup"]
        if server in pl.dbServers.values():
            concerns.append("db")
        if "dns" in roles and sub.item.get("region") == region and pl.server is not None:
            concerns.append("dns")
        if concerns:
            out[name] = sorted(set(concerns))
    return out
