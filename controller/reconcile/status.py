"""What ``status`` shows, for every front-end (the CLI today, the operator next): one
document per subscription from the state store, deleted ones included (LIFE-6)."""

from __future__ import annotations

from typing import Any

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
    return sorted(out, key=lambda i: i["name"])
