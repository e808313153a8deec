"""What ``status`` shows, for every front-end (the CLI today, the operator next): one
document per subscription from the state store, deleted ones included (LIFE-6)."""

from __future__ import annotations

from typing import Any

from controller.drivers.backup import view as backup_view
from controller.state import store as state_store


def items(store: state_store.Store) -> list[dict[str, Any]]:
    """Every subscription's status document, sorted by name: live ones as the last pass
    recorded them, deleted ones with their deletion and purge dates."""
    out = store.get_status()
    for rec in store.list_subscriptions(include_deleted=True):
        if rec.deleted_at is not None:
            out.append({
                "name": rec.name, "customer": rec.customer, "plan": None, "addons": [], "region": None,
                "server": rec.server, "ip": rec.ip, "state": "deleted", "stateReason": None, "sync": "custom",
                "conflicts": [], "conditions": [], "effective": {}, "concerns": {},
                "deletedAt": rec.deleted_at.isoformat(),
                "purgeAfter": rec.purge_after.isoformat() if rec.purge_after else None,
            })
    _with_backups(store, out)
    return sorted(out, key=lambda i: i["name"])


def _with_backups(store: state_store.Store, items: list[dict[str, Any]]) -> None:
    """Each subscription's ``backup`` object and ``BackupReady`` condition, computed from
    the backup ledger now (never stored twice: status, conditions and metrics agree)."""
    facts = backup_view.Facts.read(store)
    now = store.now()
    for item in items:
        obj = backup_view.subscription(facts, item["name"])
        if obj is not None:
            item["backup"] = obj
        if item.get("state") == "deleted" or (item.get("concerns") or {}).get("backup") != "provisioned":
            continue
        c = backup_view.condition(facts, item["name"], now)
        cond = {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
        item["conditions"] = [x for x in item.get("conditions") or [] if x.get("type") != c.type] + [cond]
