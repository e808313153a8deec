"""Disruptive changes wait for the region's maintenance window (OPS-2, PLAT-4).

What is disruptive (the one place that says so): a change of the PHP version a placed,
already-running subscription runs (its pool moves to another PHP-FPM: every request
in flight is cut, extensions and php.ini defaults change; PLAT-4), and a change of the
address it is served on on the same server (its A records change: resolvers holding the
old answer reach the old address until their TTL runs out). Outside the window of the
subscription's region (``Region.spec.maintenance``) the subscription keeps the version
and the address it runs with, with the condition ``MaintenancePending`` saying what
waits and when it will run; inside the window, or when the command overrides windows (``apply --now``), the
change goes through. An emergency window announced 24 h ahead (``state.notices``,
given here as ``emergency``: ``(start, end)`` pairs) opens the region like its regular
one. A region without a regular window makes nothing wait; a first placement is never
disruptive; a version the server no longer offers is not kept (the server changed, not
the plan), nor is an address the server no longer has. A moved subscription changes
its address by the move (``reconcile.move``), not here. Before a version change goes
through, the engine takes a backup (PLAT-4, ``reconcile.migration``).

Pure: ``now`` and the last effective spec come from the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from controller.model import kinds

CONDITION = "MaintenancePending"

#: ``(start, end)`` in UTC of a region's announced emergency windows
Emergency = Sequence[tuple[dt.datetime, dt.datetime]]


def hold(
    eff: dict[str, Any], last: Mapping[str, Any] | None, offered: Collection[str],
    region: kinds.RegionSpec | None, now: dt.datetime, *, override: bool = False, emergency: Emergency = (),
) -> dict[str, str] | None:
    """Keep ``last``'s PHP version in ``eff`` when changing it now would be disruptive
    outside the window; the ``MaintenancePending`` condition to record, else None."""
    if region is None or region.maintenance is None or override or not last:
        return None
    old = ((last.get("hosting") or {}).get("php") or {}).get("version")
    new = eff["hosting"]["php"]["version"]
    if not (eff["hosting"]["enabled"] and (last.get("hosting") or {}).get("enabled")):
        return None
    if not old or old == new or old not in offered:
        return None
    if window_open(region, now, emergency=emergency):
        return None
    eff["hosting"]["php"]["version"] = old
    return {"type": CONDITION, "status": "True", "reason": "WaitingForWindow",
            "message": f"PHP {old} -> {new} waits for {next_window(region, now, emergency)} "
                       "(OPS-2; apply --now overrides)"}


def hold_ip(old: str | None, new: str | None, addresses: Collection[str], region: kinds.RegionSpec | None,
            now: dt.datetime, *, override: bool = False, emergency: Emergency = ()) -> dict[str, str] | None:
    """Whether a placed subscription keeps serving on ``old`` (its recorded address on
    the same server) instead of ``new`` because the change would be disruptive outside
    the window: the ``MaintenancePending`` condition to record, else None (the caller
    keeps ``old`` when a condition comes back). ``addresses``: the server's addresses now."""
    if region is None or region.maintenance is None or override:
        return None
    if not old or old == new or old not in addresses:
        return None
    if window_open(region, now, emergency=emergency):
        return None
    return {"type": CONDITION, "status": "True", "reason": "WaitingForWindow",
            "message": f"address {old} -> {new or 'none'} waits for {next_window(region, now, emergency)} "
                       "(OPS-2; apply --now overrides)"}


def merge(conditions: Sequence[dict[str, str] | None]) -> dict[str, str] | None:
    """One ``MaintenancePending`` condition for what waits of a subscription."""
    found = [c for c in conditions if c is not None]
    if len(found) <= 1:
        return found[0] if found else None
    return {**found[0], "message": "; ".join(c["message"] for c in found)}


def next_window(region: kinds.RegionSpec, now: dt.datetime, emergency: Emergency = ()) -> str:
    """Which window opens next for ``region`` (which has one) and when: the sooner of
    its regular one and its announced emergency ones."""
    assert region.maintenance is not None
    window = region.maintenance.parsed
    start = window.next_start(region.timezone, now)
    soonest = min((s for s, e in emergency if e > now), default=None)
    if soonest is not None and soonest < start:
        return f"the emergency maintenance window announced for {soonest:%Y-%m-%dT%H:%MZ}: next at " \
               f"{soonest:%Y-%m-%dT%H:%MZ}"
    return f"the maintenance window ({window.describe()}, {region.timezone}): next at {start:%Y-%m-%dT%H:%MZ}"


def window_open(region: kinds.RegionSpec, now: dt.datetime, *, override: bool = False,
                emergency: Emergency = ()) -> bool | None:
    """Whether disruptive changes may run in ``region`` now (None: it has no window): its
    regular window or an announced emergency one is open, or the command overrides."""
    if region.maintenance is None:
        return None
    return (override or any(s <= now < e for s, e in emergency)
            or region.maintenance.parsed.open_at(region.timezone, now))
