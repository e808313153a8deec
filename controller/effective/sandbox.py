"""Sandboxes: test copies (PLAT-2) and demo platforms (PLAT-3). Pure.

A test copy (``spec.copyOf: SOURCE``) takes its source's plan, add-ons,
customisations and customer settings (``basis``), then gets at most half of the
source's resources (``halve``): every size and rate limit of ``resources`` and
``performance`` and the PHP ``memory_limit`` are halved (``unlimited`` stays so);
counts (domains, databases, mailboxes, ...) are kept, so that the copy can hold what
the source holds. A demo keeps its own plan. Both are marked (``sandbox``) and get no
backups (``backup.content: none``, the ``backups`` permission off) and no monitoring
SLA: the effective spec says so in its ``sandbox`` group, ``{kind: copy|demo, source,
schedule (demo)}``, which only sandboxes have. A sandbox whose source is unknown (or
a copy of a copy) gets the condition ``Sandbox`` False (``problem``).
"""

from __future__ import annotations

import re
from typing import Any

from controller.model import kinds
from controller.model.desired import DesiredState
from controller.model.values import UNLIMITED

#: the limits a test copy gets half of (sizes and rates; counts are kept)
HALVED: dict[str, tuple[str, ...]] = {
    "resources": ("diskMB", "trafficMBPerMonth", "mailboxSizeMB", "databaseQuotaMB"),
    "performance": ("maxConnections", "bandwidthKBps"),
}
#: PHP size settings a test copy gets half of
HALVED_PHP = ("memory_limit",)
#: ``backup.content`` of a sandbox: nothing is backed up
NO_BACKUP = "none"

_SIZE = re.compile(r"^(\d+)([KMG]?)$", re.IGNORECASE)


def source_spec(ds: DesiredState, spec: kinds.SubscriptionSpec) -> kinds.SubscriptionSpec | None:
    """A test copy's source's document (None: not a copy, or its source is unknown or a
    copy itself: the copy then keeps its own plan)."""
    if spec.copyOf is None:
        return None
    src = ds.subscriptions.get(spec.copyOf)
    if src is None or src.copyOf is not None:
        return None
    return src


def basis(ds: DesiredState, spec: kinds.SubscriptionSpec) -> kinds.SubscriptionSpec:
    """The document whose plan and settings a subscription's effective spec starts from:
    a copy's source's plan, add-ons, customisations and customer settings, with the
    copy's own customer, region, databases and sites; any other subscription's own."""
    src = source_spec(ds, spec)
    if src is None:
        return spec
    return spec.model_copy(update={"plan": src.plan, "addons": list(src.addons),
                                   "customizations": src.customizations,
                                   "customerSettings": src.customerSettings})


def halved(spec: kinds.SubscriptionSpec) -> bool:
    """Whether the subscription gets half its plan's resources (a test copy)."""
    return spec.copyOf is not None


def half(value: Any) -> Any:
    """Half a limit (rounded down, at least 1); ``unlimited`` and non-numbers unchanged."""
    if value == UNLIMITED or isinstance(value, bool) or not isinstance(value, int):
        return value
    return max(1, value // 2) if value > 0 else value


def half_size(value: Any) -> Any:
    """Half a PHP size (``128M`` -> ``64M``; ``-1``, unlimited, stays; ``1M`` -> ``512K``)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return value
    m = _SIZE.match(str(value).strip())
    if m is None:
        return value
    n, unit = int(m[1]), m[2].upper()
    if n % 2 and unit in ("M", "G"):  # an odd number of units: in the unit below
        return f"{n * 1024 // 2}{'K' if unit == 'M' else 'M'}"
    return f"{max(1, n // 2)}{unit}"


def halve(eff: dict[str, Any]) -> None:
    """A test copy's limits: half of what the source's plan gives (PLAT-2)."""
    for group, keys in HALVED.items():
        for key in keys:
            if key in eff.get(group, {}):
                eff[group][key] = half(eff[group][key])
    settings = eff["hosting"]["php"]["settings"]
    for key in HALVED_PHP:
        if key in settings:
            settings[key] = half_size(settings[key])


def mark(eff: dict[str, Any], spec: kinds.SubscriptionSpec) -> None:
    """A sandbox's effective spec: its ``sandbox`` group, no backups (PLAT-2/PLAT-3)."""
    if spec.copyOf is not None:
        eff["sandbox"] = {"kind": "copy", "source": spec.copyOf}
    elif spec.demo is not None:
        eff["sandbox"] = {"kind": "demo", "source": spec.demo.resetFrom, "schedule": spec.demo.schedule}
    else:
        return
    eff["backup"] = {**eff["backup"], "content": NO_BACKUP, "pitr": False}
    eff["permissions"] = {**eff["permissions"], "backups": False}


def problem(ds: DesiredState, name: str, spec: kinds.SubscriptionSpec) -> str | None:
    """What is wrong with a sandbox's source (its ``Sandbox`` condition), or None."""
    if spec.copyOf is not None:
        src = ds.subscriptions.get(spec.copyOf)
        if spec.copyOf == name:
            return "spec.copyOf: a test copy of itself"
        if src is None:
            return f"spec.copyOf: no subscription {spec.copyOf!r} in the desired state (its own plan is halved)"
        if src.copyOf is not None:
            return f"spec.copyOf: {spec.copyOf} is a test copy itself (of {src.copyOf}): copy the original"
    if spec.demo is not None and not spec.demo.resetFrom.startswith("snapshot:") \
            and spec.demo.resetFrom not in ds.subscriptions:
        return f"spec.demo.resetFrom: no subscription {spec.demo.resetFrom!r} in the desired state"
    return None


def is_sandbox(item: dict[str, Any]) -> bool:
    """A status item (or effective-spec holder) of a test copy or demo."""
    return bool((item.get("effective") or {}).get("sandbox"))
