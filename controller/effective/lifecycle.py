"""Lifecycle decisions: LIFE-3 expiry, LIFE-4 customer cascade, RES-2 overuse.

Pure functions of the spec, the effective values, measured usage and today's date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from controller.model import kinds


def expiry(spec: kinds.SubscriptionSpec, eff: Mapping[str, Any], created: dt.date | None) -> dt.date | None:
    """The explicit ``expires`` date, else creation + the plan's validity (never renews itself)."""
    if spec.expires is not None:
        return spec.expires
    days = eff["resources"]["validityDays"]
    if isinstance(days, int) and created is not None:
        try:
            return created + dt.timedelta(days=days)
        except OverflowError:  # beyond year 9999 (or timedelta's range): never expires
            return None
    return None


def overuse(eff: Mapping[str, Any], usage: Mapping[str, float]) -> tuple[list[str], list[str]]:
    """RES-2: (resources over their limit, resources past the notification level).

    ``usage`` is the state store's ``usage`` rows, the one place each figure is kept:
    ``diskMB`` (``du`` of the web space, at most hourly) and ``trafficMB`` (this UTC
    month's bytes from the access logs) by ``controller.drivers.usage``, ``databaseMB`` by
    the db driver; ``tenantctl report usage`` reads the same collections' history."""
    over: list[str] = []
    warn: list[str] = []
    pct = eff["overuse"]["notifyAtPercent"]
    for res, used_key in (("diskMB", "diskMB"), ("trafficMBPerMonth", "trafficMB"),
                          ("databaseQuotaMB", "databaseMB")):
        limit = eff["resources"][res]
        used = usage.get(used_key)
        if used is None or not isinstance(limit, int):
            continue
        if used > limit:
            over.append(res)
        elif limit and used * 100 >= limit * pct:
            warn.append(res)
    return over, warn


def state(
    spec: kinds.SubscriptionSpec,
    customer: kinds.CustomerSpec | None,
    expires: dt.date | None,
    today: dt.date,
    eff: Mapping[str, Any],
    over: list[str],
) -> tuple[str, str | None]:
    """(state, stateReason): the first reason that applies wins."""
    if spec.state == "suspended":
        return "suspended", spec.stateReason or "manual"
    if customer is not None and customer.state == "suspended":  # LIFE-4
        return "suspended", "customer"
    if expires is not None and expires <= today:  # LIFE-3: on the expiry date
        return "suspended", "expired"
    if over and eff["overuse"]["policy"] == "notAllowed" and eff["overuse"]["suspend"]:  # RES-2
        return "suspended", "overuse"
    return "active", None
