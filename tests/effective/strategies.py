"""Hypothesis strategies for plan bodies, servers and subscriptions.

Field names come from the model classes (``kinds.Resources.model_fields`` ...), so a
field added to the model is generated without touching this file.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from controller.model import kinds, php

PHP_VERSIONS = ["7.4", "8.1", "8.2", "8.3", "8.4"]
HANDLERS = ["fpm", "cgi", "module"]
RESOURCE_FIELDS = sorted(kinds.Resources.model_fields)
PERMISSION_FIELDS = sorted(kinds.Permissions.model_fields)
PERFORMANCE_FIELDS = sorted(kinds.Performance.model_fields)

limits = st.one_of(st.integers(0, 10**6), st.just("unlimited"))
huge_limits = st.one_of(limits, st.integers(0, 10**12))


def _php_value(d: php.Directive) -> st.SearchStrategy[Any]:
    if d.kind is php.Kind.SIZE:
        return st.sampled_from(["-1", "0", "64M", "128m", "1G", "512K", "1048576"])
    if d.kind is php.Kind.INT:
        return st.integers(0, 10**6)
    if d.kind is php.Kind.BOOL:
        return st.one_of(st.booleans(), st.sampled_from(["on", "off", "yes", "0"]))
    if d.kind is php.Kind.DISPLAY:
        return st.sampled_from(["on", "off", "stderr", "stdout", True, False])
    return st.sampled_from(["E_ALL & ~E_NOTICE", "/tmp", ".:/usr/share/php", "UTF-8", "Europe/Paris"])


php_settings = st.dictionaries(st.sampled_from(sorted(php.DIRECTIVES)), st.none(), max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({k: _php_value(php.DIRECTIVES[k]) for k in keys})
)


def _opt(strategy: st.SearchStrategy[Any], *, addon: bool) -> st.SearchStrategy[Any]:
    """A value, or (for add-ons) ``default``; ``None`` means: leave the field out."""
    options = [strategy, st.none()]
    if addon:
        options.append(st.just("default"))
    return st.one_of(*options)


def _group(fields: dict[str, st.SearchStrategy[Any]], *, addon: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: _opt(v, addon=addon) for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not None}
    )


def bodies(*, addon: bool = False, limit: st.SearchStrategy[Any] = limits) -> st.SearchStrategy[dict[str, Any]]:
    """A ServicePlan (or AddOnPlan) spec; add-ons never switch anything off (PLAN-3)."""
    flag = st.just(True) if addon else st.booleans()

    def plan(parts: dict[str, Any]) -> dict[str, Any]:
        perms = parts["permissions"]
        if not addon and perms.get("manageHosting") is not True:  # SYNC-4: rejected in a plan
            for p in ("managePHPCommon", "managePHPPerformance"):
                perms.pop(p, None)
        return {k: v for k, v in parts.items() if v}

    return st.fixed_dictionaries({
        "resources": _group({f: limit for f in RESOURCE_FIELDS}, addon=addon),
        "permissions": _group({f: flag for f in PERMISSION_FIELDS}, addon=addon),
        "overuse": _group({"policy": st.sampled_from(["notAllowed", "allowed"]), "suspend": flag,
                           "notifyAtPercent": st.integers(0, 100)}, addon=addon),
        "hosting": st.fixed_dictionaries({
            "enabled": _opt(flag, addon=addon), "ssl": _opt(flag, addon=addon),
            "hardQuota": _opt(flag, addon=addon), "ssh": _opt(flag, addon=addon),
            "php": st.tuples(
                _group({"version": st.sampled_from(PHP_VERSIONS), "handler": st.sampled_from(HANDLERS)},
                       addon=addon),
                php_settings,
            ).map(lambda t: {**t[0], **({"settings": t[1]} if t[1] else {})}),
        }).map(lambda d: {k: v for k, v in d.items() if v is not None}),
        "performance": _group({f: limit for f in PERFORMANCE_FIELDS}, addon=addon),
        "logs": _group({"retainMonths": st.integers(0, 120), "rotate": st.sampled_from(["daily", "weekly", "monthly"]),
                        "compress": flag}, addon=addon),
        "backup": _group({"keepDaily": st.integers(1, 30), "pitr": flag}, addon=addon),
        "dns": _group({"mode": st.sampled_from(["primary", "secondary"])}, addon=addon),
    }).map(plan)


ROLES = ["web", "php", "db-mariadb", "db-postgresql", "dns", "backup"]


@st.composite
def servers(draw: st.DrawFn, n: int, region: str = "eu-west") -> dict[str, Any]:
    ip_types = draw(st.lists(st.sampled_from(["shared", "dedicated"]), min_size=1, max_size=3))
    return {
        "region": region,
        "provider": "docker",
        "address": f"127.0.{n}.1",
        "ips": [{"address": f"127.0.{n}.{i + 1}", "type": t} for i, t in enumerate(ip_types)],
        "roles": draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=6, unique=True)),
        "capacity": {"sites": draw(st.integers(0, 4)), "diskMB": draw(st.integers(0, 10**6))},
        "offers": {
            "php": {"versions": draw(st.lists(st.sampled_from(PHP_VERSIONS), unique=True, max_size=3)),
                    "handlers": draw(st.lists(st.sampled_from(HANDLERS), unique=True, max_size=3))},
            "hardQuota": draw(st.booleans()),
        },
        "phpDefaults": draw(php_settings),
    }


customer_settings = st.fixed_dictionaries({
    "php": php_settings,
    "hosting": _group({"ssl": st.booleans(), "ssh": st.booleans(), "hardQuota": st.booleans(),
                       "php": _group({"version": st.sampled_from(PHP_VERSIONS),
                                      "handler": st.sampled_from(HANDLERS)}, addon=False)}, addon=False),
    "logs": _group({"retainMonths": st.integers(0, 120)}, addon=False),
    "performance": _group({"maxConnections": limits}, addon=False),
}).map(lambda d: {k: v for k, v in d.items() if v})
