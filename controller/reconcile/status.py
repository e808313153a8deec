"""What ``status`` shows, for every front-end (the CLI today, the operator next): one
document per subscription from the state store, deleted ones included (LIFE-6).

Three reads of the same documents: ``items`` (every document decoded, for apply's
report and ``urls``), ``stream`` (the same documents one at a time, for ``status -o
json`` at 10,000 subscriptions) and ``rows`` (only what a table shows, extracted by
SQLite without decoding the documents).

``items`` and ``stream`` also say what each live subscription runs (``versions``:
software -> version, ``metrics.versions_in_use``) and flag PLAT-5: a version older than
the last ``kinds.SUPPORTED_WINDOW`` supported ones gets the condition
``SupportedVersions`` False (reason ``Outdated``) naming it and the versions allowed.
PHP's version is the effective one; a database engine's needs the servers' releases
(``releases``, from the desired state), else it is left out.

A demo platform (PLAT-3) carries ``demo`` (its last reset: ``lastReset``, ``seconds``,
``ok``, ``error``, ``source``, ``snapshots``, ``lastSuccess``) and the condition
``DemoReset`` (``Reset``, ``ResetFailed``, ``NotResetYet``). Sandboxes (test copies and
demos: no backups, no SLA) get no ``BackupReady`` condition.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from controller import metrics
from controller.model import kinds
from controller.state import codec, demos, moves, records
from controller.state import store as state_store

if TYPE_CHECKING:  # imported when used: a status table needs no backup ledger (nor its imports)
    from controller.drivers.backup import view as backup_view


def _deleted(rec: records.SubscriptionRecord) -> dict[str, Any]:
    assert rec.deleted_at is not None
    return {
        "name": rec.name, "customer": rec.customer, "plan": None, "addons": [], "region": None,
        "server": rec.server, "ip": rec.ip, "state": "deleted", "stateReason": None, "sync": "custom",
        "conflicts": [], "conditions": [], "effective": {}, "concerns": {},
        "deletedAt": rec.deleted_at.isoformat(),
        "purgeAfter": rec.purge_after.isoformat() if rec.purge_after else None,
    }


def _deleted_records(store: state_store.Store) -> list[records.SubscriptionRecord]:
    return store.list_deleted()


def items(store: state_store.Store, *, releases: Mapping[str, kinds.Release] | None = None) -> list[dict[str, Any]]:
    """Every subscription's status document, sorted by name: live ones as the last pass
    recorded them, deleted ones with their deletion and purge dates."""
    out = store.get_status()
    out.extend(_deleted(rec) for rec in _deleted_records(store))
    _with_backups(store, out)
    going = moves.all_moves(store)
    resets = demos.all_resets(store)
    for item in out:
        merge_versions(item, releases)
        merge_move(item, going)
        merge_demo(item, resets)
    return sorted(out, key=lambda i: i["name"])


def stream(store: state_store.Store, *, releases: Mapping[str, kinds.Release] | None = None
           ) -> Iterator[dict[str, Any]]:
    """``items``, one document at a time (in name order): never all of them decoded at once."""
    facts = _facts(store)
    now = store.now()
    going = moves.all_moves(store)
    resets = demos.all_resets(store)
    gone = {rec.name: rec for rec in _deleted_records(store)}
    texts = ((row[0], row[1]) for row in store.iter_status_raw())
    for name, text in heapq.merge(texts, ((n, "") for n in sorted(gone)), key=lambda t: t[0]):
        item = codec.loads(text) if text else _deleted(gone[name])
        _merge_backup(facts, now, item)
        merge_versions(item, releases)
        merge_move(item, going)
        merge_demo(item, resets)
        yield item


#: the condition of PLAT-5 (present only when a version is outdated)
VERSIONS_CONDITION = "SupportedVersions"


def outdated(versions: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``versions`` (software -> version) older than the last
    ``kinds.SUPPORTED_WINDOW`` supported ones (PLAT-5)."""
    return {sw: v for sw, v in sorted(versions.items()) if sw in kinds.SUPPORTED_VERSIONS and kinds.outdated(sw, v)}


def merge_versions(item: dict[str, Any], releases: Mapping[str, kinds.Release] | None = None) -> None:
    """``item``'s ``versions`` and, when one is outdated, its ``SupportedVersions`` False
    condition (PLAT-5). Deleted subscriptions are left alone."""
    if item.get("state") == "deleted":
        return
    versions = metrics.versions_in_use(item, releases)
    item["versions"] = versions
    conditions = [c for c in item.get("conditions") or [] if c.get("type") != VERSIONS_CONDITION]
    old = outdated(versions)
    if old:
        message = "; ".join(f"{sw} {v} is older than the last {kinds.SUPPORTED_WINDOW} supported versions "
                            f"({', '.join(kinds.current_versions(sw))})" for sw, v in old.items())
        conditions.append({"type": VERSIONS_CONDITION, "status": "False", "reason": "Outdated",
                           "message": f"{message} (PLAT-5)"})
    item["conditions"] = conditions


#: the condition of a subscription with a move in progress or in its substitute period (issue 13)
MOVE_CONDITION = "Moving"


def merge_move(item: dict[str, Any], going: Mapping[str, moves.Move]) -> None:
    """``item``'s ``Moving`` condition (reason: the move's last step done; message: its
    source and target) and ``move`` object, while it has a move."""
    mv = going.get(item.get("name", ""))
    if mv is None or item.get("state") == "deleted":
        return
    special = moves.describe(mv)  # scheduled, aborting
    if special is not None:
        cond = special
    elif mv.step == "removed":
        cond = {"type": MOVE_CONDITION, "status": "True", "reason": "RegionToEdit",
                "message": f"moved from {mv.source} to {mv.target}, source removed; placed in {mv.target}'s "
                           "region until its document's spec.region names it"}
    elif mv.step == "switched":
        until = mv.substitute_until.isoformat() if mv.substitute_until else "?"
        cond = {"type": MOVE_CONDITION, "status": "True", "reason": "Substitute",
                "message": f"moved from {mv.source} to {mv.target}; {mv.source} serves as read-only substitute "
                           f"until {until} (DNS-4), then is removed"}
    else:
        cond = {"type": MOVE_CONDITION, "status": "True", "reason": mv.step,
                "message": f"moving from {mv.source} to {mv.target}: step {mv.step} done "
                           f"(`tenantctl move {mv.subscription} --to {mv.target}` resumes)"}
    item["conditions"] = [c for c in item.get("conditions") or [] if c.get("type") != MOVE_CONDITION] + [cond]
    item["move"] = {"source": mv.source, "target": mv.target, "step": mv.step,
                    "startedAt": mv.started_at.isoformat(),
                    "substituteUntil": mv.substitute_until.isoformat() if mv.substitute_until else None}


#: the condition of a demo platform (PLAT-3): its last reset
DEMO_CONDITION = "DemoReset"


def merge_demo(item: dict[str, Any], resets: Mapping[str, demos.Reset]) -> None:
    """A demo's ``DemoReset`` condition and ``demo`` object (its last reset, PLAT-3)."""
    box = (item.get("effective") or {}).get("sandbox") or {}
    if box.get("kind") != "demo" or item.get("state") == "deleted":
        return
    r = resets.get(item.get("name", ""))
    if r is None:
        cond = {"type": DEMO_CONDITION, "status": "Unknown", "reason": "NotResetYet",
                "message": f"reset from {box.get('source')} at the next '{box.get('schedule')}' (PLAT-3)"}
    elif r.ok:
        cond = {"type": DEMO_CONDITION, "status": "True", "reason": "Reset",
                "message": f"reset from {r.source} at {r.at.isoformat()} in {r.seconds:.1f} s"}
    else:
        cond = {"type": DEMO_CONDITION, "status": "False", "reason": "ResetFailed",
                "message": f"reset from {r.source} at {r.at.isoformat()} failed: {r.error}"}
    item["conditions"] = [c for c in item.get("conditions") or [] if c.get("type") != DEMO_CONDITION] + [cond]
    item["demo"] = None if r is None else {
        "lastReset": r.at.isoformat(), "seconds": r.seconds, "ok": r.ok, "error": r.error, "source": r.source,
        "snapshots": list(r.snapshots), "lastSuccess": r.last_ok_at.isoformat() if r.last_ok_at else None}


def rows(store: state_store.Store) -> list[dict[str, Any]]:
    """What a status table shows of every subscription (name, customer, plan, server, ip,
    state, stateReason, sync, concerns, conflicts, ``createdAt`` for its AGE, and
    ``drDrill``: its latest disaster-recovery drill or None, DR-1), in name order; the
    documents themselves are not decoded."""
    from controller.state import drills

    dr = drills.latest(store)
    out: list[dict[str, Any]] = [
        {"name": r.name, "customer": r.customer, "plan": r.plan, "server": r.server, "ip": r.ip,
         "state": r.state, "stateReason": r.state_reason, "sync": r.sync, "concerns": r.concerns,
         "conflicts": r.conflicts, "createdAt": r.created_at,
         "drDrill": dr[r.name].as_dict() if r.name in dr else None}
        for r in store.status_rows()
    ]
    for rec in _deleted_records(store):
        out.append({**_deleted(rec), "createdAt": rec.created_at})
    out.sort(key=lambda i: i["name"])
    return out


def _with_backups(store: state_store.Store, items: list[dict[str, Any]]) -> None:
    """Each subscription's ``backup`` object and ``BackupReady`` condition, computed from
    the backup ledger now (never stored twice: status, conditions and metrics agree)."""
    facts = _facts(store)
    now = store.now()
    for item in items:
        _merge_backup(facts, now, item)


def _facts(store: state_store.Store) -> backup_view.Facts:
    from controller.drivers.backup import view

    return view.Facts.read(store)


def _merge_backup(facts: backup_view.Facts, now: dt.datetime, item: dict[str, Any]) -> None:
    from controller.drivers.backup import view as backup_view

    obj = backup_view.subscription(facts, item["name"])
    if obj is not None:
        item["backup"] = obj
    dr = facts.dr.get(item["name"])
    item["drDrill"] = dr.as_dict() if dr is not None else None  # DR-1: the latest drill on a spare
    if item.get("state") == "deleted" or (item.get("concerns") or {}).get("backup") != "provisioned":
        return
    if (item.get("effective") or {}).get("sandbox"):  # PLAT-2/3: no backups, no SLA
        return
    c = backup_view.condition(facts, item["name"], now)
    cond = {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
    item["conditions"] = [x for x in item.get("conditions") or [] if x.get("type") != c.type] + [cond]
