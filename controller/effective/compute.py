"""Compute every subscription's effective spec, sync state, conflicts and lifecycle.

Order of precedence (lowest first): defaults < server php defaults < plan < add-ons
(PLAN-3) < customisations (SYNC-2) < customer settings in granted groups (SYNC-4) <
site settings (PHP-2). Then placement adjusts what the server cannot offer (SYNC-3).
A test copy (PLAT-2) starts from its source's plan and settings at half its resources;
test copies and demos (PLAT-3) are marked as sandboxes, without backups
(``controller.effective.sandbox``).
Pure: same inputs, byte-identical output.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from controller.effective import groups, lifecycle, maintenance, merge, sandbox, spec
from controller.effective.defaults import fresh
from controller.effective.history import EMPTY, LOCK, Changes, History
from controller.model import kinds, validate
from controller.model.desired import DesiredState
from controller.model.values import UNSET
from controller.placement import Conflict, Needs, Placement, place_all


@dataclass(frozen=True)
class Subscription:
    """A subscription as tenantctl will make it. ``item`` is the contract's JSON object."""

    name: str
    item: dict[str, Any]
    changes: Changes
    placement: Placement

    @property
    def typed(self) -> spec.Item:
        """``item`` as the read-only, typed item drivers get (the same dict)."""
        return spec.of(self.item)


def _flatten(model: kinds.Strict, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    for name in type(model).model_fields:
        v = getattr(model, name)
        if v is UNSET or v == [] or (isinstance(v, dict) and not v):
            continue
        if isinstance(v, kinds.Strict):
            _flatten(v, f"{prefix}{name}.", out)
        elif name == "settings" and isinstance(v, dict):
            out.update({f"php:{k}": val for k, val in merge.php_settings(v).items()})
        else:
            out[f"{prefix}{name}"] = list(v) if isinstance(v, list) else v
    return out


def customer_values(cs: kinds.CustomerSettings) -> dict[str, Any]:
    """customerSettings as ``path -> value`` (``php:<directive>`` for PHP)."""
    out: dict[str, Any] = {f"php:{k}": v for k, v in merge.php_settings(cs.php).items()}
    for group in ("hosting", "mail", "dns", "performance", "logs"):
        _flatten(getattr(cs, group), f"{group}.", out)
    return out


def _base(
    name: str, spec: kinds.SubscriptionSpec, ds: DesiredState, hist: History, memo: dict[Any, dict[str, Any]],
    changes: Changes,
) -> tuple[dict[str, Any], str]:
    """The spec before customer settings and placement, and the sync state so far."""
    sticky = hist.sticky.get(name, {})
    customised = spec.customizations is not None and validate.has_values(spec.customizations)
    transferred = name in hist.transfers or (
        name in hist.customers and hist.customers[name] != spec.customer
    )
    if transferred:  # PLAN-7: detached from its plans, keeping its current values
        frozen = hist.transfers.get(name)
        if frozen is None:
            frozen = merge.clone(hist.last_effective.get(name) or _current(spec, ds, sticky, customised, memo))
            changes.transfer = frozen
        base = merge.clone(frozen)
        sync = "custom"
    elif spec.plan is None:  # PLAN-2: custom
        base = fresh()
        sync = "custom"
    else:
        base = _plan_based(spec, ds, memo)
        if customised:  # SYNC-2: locked keeps what it had when customised
            if LOCK in sticky:
                base = merge.clone(sticky[LOCK])
            else:
                changes.sticky_set[LOCK] = merge.clone(base)
            sync = "locked"
        else:
            if LOCK in sticky:  # unlock & sync
                changes.sticky_drop.append(LOCK)
            sync = "synced"
    if customised:
        assert spec.customizations is not None
        base = merge.customise(base, spec.customizations)
    return base, sync


def _current(
    spec: kinds.SubscriptionSpec, ds: DesiredState, sticky: Mapping[str, dict[str, Any]], customised: bool,
    memo: dict[Any, dict[str, Any]],
) -> dict[str, Any]:
    """The base a subscription has before a transfer, when no effective spec was recorded:
    the defaults for a custom one, the locked spec for a locked one, else its plan's."""
    if spec.plan is None:
        return fresh()
    if customised and LOCK in sticky:
        return merge.clone(sticky[LOCK])
    return _plan_based(spec, ds, memo)


def _plan_based(spec: kinds.SubscriptionSpec, ds: DesiredState, memo: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    key = (spec.plan, tuple(spec.addons))
    if key not in memo:
        assert spec.plan is not None
        memo[key] = merge.plan_effective(ds.plans[spec.plan], [ds.addons[a] for a in spec.addons])
    return merge.clone(memo[key])


def _customer_groups(
    eff: dict[str, Any], spec: kinds.SubscriptionSpec, sticky: Mapping[str, dict[str, Any]], changes: Changes,
) -> list[str]:
    """SYNC-4: granted groups keep the customer's values. Returns ignored setting paths."""
    # Fast path: most subscriptions carry no customer settings at all.
    wanted = customer_values(spec.customerSettings) if spec.customerSettings.model_fields_set else {}
    perms = eff["permissions"]
    for perm in groups.GROUPS:
        if perms.get(perm):
            recorded = sticky.get(perm)
            if recorded is None:
                recorded = groups.extract(eff, perm)
                changes.sticky_set[perm] = recorded
            mine = {p: v for p, v in wanted.items() if groups.permission_of(p) == perm}
            groups.restore(eff, perm, {**recorded, **mine})
        elif perm in sticky:
            changes.sticky_drop.append(perm)
    return sorted(p for p in wanted if not perms.get(groups.permission_of(p) or ""))


def _access(spec: kinds.SubscriptionSpec, perms: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Issue 14: the subscription's SSH keys, then the customer's while manageSSH is
    granted (else they are ignored, SYNC-4), each once; its FTPS accounts (the
    subscription's own only: an account is a resource of the plan). Returns the ignored
    paths too."""
    keys = list(spec.access.sshKeys)
    ignored = []
    if spec.customerSettings.access.ftpUsers:
        ignored.append("access.ftpUsers")
    if spec.customerSettings.access.sshKeys:
        if perms.get("manageSSH"):
            keys += spec.customerSettings.access.sshKeys
        else:
            ignored.append("access.sshKeys")
    unique: dict[str, str] = {}
    for k in keys:  # a key once (type and blob), with its first comment
        unique.setdefault(" ".join(k.split()[:2]), k)
    out: dict[str, Any] = {"sshKeys": list(unique.values())}
    if spec.access.ftpUsers:  # absent when none: effective specs recorded before issue 14 stay equal
        out["ftpUsers"] = [{"name": u.name, "passwordRef": u.passwordRef} for u in spec.access.ftpUsers]
    return out, ignored


def placed_region(ds: DesiredState, name: str, hist: History) -> str:
    """The region a subscription is placed in: its move's target server's region (issue
    13), its document's region's evacuation target (DR-1), else its document's region."""
    spec = ds.subscriptions[name]
    target = hist.moves.get(name)
    if target is not None and target in ds.servers:
        return ds.servers[target].region
    return hist.evacuated.get(spec.region, spec.region)


def _needs(name: str, spec: kinds.SubscriptionSpec, eff: dict[str, Any], ds: DesiredState, hist: History) -> Needs:
    h = eff["hosting"]
    region = placed_region(ds, name, hist)
    return Needs(
        name=name,
        customer=spec.customer,
        region=region,
        evacuated_from=spec.region if region != spec.region else None,
        moving=name in hist.moves,
        web=bool(h["enabled"]),
        php_version=h["php"]["version"],
        php_handler=h["php"]["handler"],
        hard_quota=bool(h["hardQuota"]),
        ip_type=spec.ipType,
        ip=spec.ip,
        server=hist.moves.get(name, spec.server),
        databases=tuple((d.name, d.engine) for d in spec.databases),
    )


def _set_path(eff: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = eff
    for p in parents:
        node = node[p]
    node[leaf] = value


def _today(ds: DesiredState, region: str, now: dt.datetime, cache: dict[str, dt.date]) -> dt.date:
    if region not in cache:
        tz = ds.regions[region].timezone if region in ds.regions else "UTC"
        cache[region] = now.astimezone(zoneinfo.ZoneInfo(tz)).date()
    return cache[region]


def _condition(type_: str, status: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message}


def compute(
    ds: DesiredState, now: dt.datetime, hist: History = EMPTY, names: Collection[str] | None = None,
    *, override_windows: bool = False,
) -> dict[str, Subscription]:
    """Every subscription of ``ds`` (or only ``names``), by name (sorted).

    Subscriptions left out keep their recorded placement, which still counts toward
    server capacity and dedicated-IP ownership. ``override_windows``: disruptive
    changes run now, whatever the regions' maintenance windows (``apply --now``).
    """
    memo: dict[Any, dict[str, Any]] = {}
    pre: dict[str, tuple[dict[str, Any], str, Changes, list[str]]] = {}
    chosen = set(ds.subscriptions) if names is None else set(names) & set(ds.subscriptions)
    selected = sorted(chosen)
    unchanged = {n: spec.customer for n, spec in ds.subscriptions.items() if n not in chosen}
    for name in selected:
        spec = ds.subscriptions[name]
        changes = Changes()
        basis = sandbox.basis(ds, spec)  # a test copy: its source's plan and settings (PLAT-2)
        eff, sync = _base(name, basis, ds, hist, memo, changes)
        if basis is not spec and spec.customizations is not None and validate.has_values(spec.customizations):
            eff = merge.customise(eff, spec.customizations)  # a copy's own on top (a trial of a version)
        ignored = _customer_groups(eff, basis, hist.sticky.get(name, {}), changes)
        if sandbox.halved(spec):
            sandbox.halve(eff)
        sandbox.mark(eff, spec)
        eff["access"], skipped = _access(spec, eff["permissions"])
        ignored += skipped
        pre[name] = (eff, sync, changes, ignored)
    placements = place_all(
        ds, (_needs(n, ds.subscriptions[n], p[0], ds, hist) for n, p in pre.items()), hist.placements, unchanged
    )
    today_cache: dict[str, dt.date] = {}
    server_php = {s: merge.php_settings(spec.phpDefaults) for s, spec in ds.servers.items()}
    out: dict[str, Subscription] = {}
    for name, (eff, sync, changes, ignored) in pre.items():
        spec = ds.subscriptions[name]
        pl = placements[name]
        for path, value in pl.available.items():  # SYNC-3: run with what is available
            _set_path(eff, path, value)
        placed_in = placed_region(ds, name, hist)  # a move's or an evacuation's target region
        region = ds.regions.get(placed_in)
        pending = None
        if region is not None and region.maintenance is not None and pl.server in ds.servers:  # OPS-2
            pending = maintenance.hold(eff, hist.last_effective.get(name), ds.servers[pl.server].offers.php.versions,
                                       region, now, override=override_windows,
                                       emergency=hist.emergency.get(placed_in, ()))
            rec = hist.placements.get(name)
            if rec is not None and rec.server == pl.server and name not in hist.moves:  # a move changes it itself
                waits = maintenance.hold_ip(rec.ip, pl.ip, [i.address for i in ds.servers[pl.server].ips], region,
                                            now, override=override_windows, emergency=hist.emergency.get(placed_in, ()))
                if waits is not None:
                    pl = dataclasses.replace(pl, ip=rec.ip)
                pending = maintenance.merge([pending, waits])
        settings = eff["hosting"]["php"]["settings"]
        if pl.server is not None:  # PHP-2: server-wide values are the lowest level
            eff["hosting"]["php"]["settings"] = settings = {**server_php[pl.server], **settings}
        eff["hosting"]["php"]["settings"] = settings = dict(sorted(settings.items()))
        eff["sites"] = [
            {
                "name": validate.site_fqdn(name, site),
                "type": site.type,
                "php": {"settings": dict(sorted({**settings, **merge.php_settings(site.php.settings)}.items()))},
            }
            for site in spec.sites
        ]
        eff["databases"] = [
            {"name": d.name, "engine": d.engine, "server": pl.dbServers.get(d.name)} for d in spec.databases
        ]
        plan = sandbox.basis(ds, spec)  # a test copy shows its source's plan (PLAT-2)
        conflicts = [c.as_dict() for c in pl.conflicts]
        if conflicts and sync in ("synced", "locked"):
            sync = "unsynced"
        # A subscription not seen before is created by this pass: today (UTC, as recorded).
        created = hist.created.get(name, now.astimezone(dt.UTC).date())
        expires = lifecycle.expiry(spec, eff, created)
        over, warn = lifecycle.overuse(eff, hist.usage.get(name, {}))
        today = _today(ds, spec.region, now, today_cache)
        state, reason = lifecycle.state(spec, ds.customers.get(spec.customer), expires, today, eff, over)
        conditions = [
            _condition("Placed", pl.server is not None, "Placed" if pl.server else "NoServer",
                       f"on {pl.server}" if pl.server else "no server in the region can take it (SYNC-3)"),
        ]
        if pending is not None:
            conditions.append(pending)
        wrong = sandbox.problem(ds, name, spec) if spec.copyOf is not None or spec.demo is not None else None
        if wrong is not None:  # PLAT-2/3: a sandbox of an unknown source
            conditions.append(_condition("Sandbox", False, "UnknownSource", wrong))
        if ignored:
            conditions.append(_condition("CustomerSettingsApplied", False, "PermissionMissing",
                                         "ignored without the permission (SYNC-4): " + ", ".join(ignored)))
        if over:
            conditions.append(_condition("Overuse", True, "LimitExceeded", "over the limit (RES-2): " + ", ".join(over)))
        elif warn:
            conditions.append(_condition("Overuse", False, "NotifyLevelReached",
                                         "past the notification level (RES-2): " + ", ".join(warn)))
        item: dict[str, Any] = {
            "name": name,
            "customer": spec.customer,
            "plan": plan.plan,
            "addons": list(plan.addons),
            "region": placed_in,
            "server": pl.server,
            "ip": pl.ip,
            "state": state,
            "stateReason": reason,
            "expires": expires.isoformat() if expires else None,
            "sync": sync,
            "conflicts": conflicts,
            "conditions": conditions,
            "overuse": {"over": over, "notify": warn},  # RES-2, from the measured usage
            "effective": eff,
        }
        if name in hist.moves:  # a move of it is recorded (its DNS records' TTL is short)
            item["moving"] = True
        out[name] = Subscription(name, item, changes, pl)
    return out


__all__ = ["Conflict", "Subscription", "compute"]
