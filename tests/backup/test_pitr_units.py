"""Which database servers archive for point-in-time recovery (BKP-4): those holding a
database of a subscription whose plan has ``backup.pitr`` (drivers/backup/pitr.py)."""

from __future__ import annotations

from typing import Any

from controller.drivers.backup import pitr


def item(name: str, pitr_on: bool, *dbs: tuple[str, str, str | None], state: str = "active") -> dict[str, Any]:
    return {"name": name, "state": state, "effective": {
        "backup": {"pitr": pitr_on},
        "databases": [{"name": n, "engine": e, "server": s} for n, e, s in dbs]}}


def test_only_the_servers_of_pitr_subscriptions_databases_archive() -> None:
    items = [
        item("a.example.org", True, ("shop", "mariadb", "db-1"), ("ledger", "postgresql", "db-2")),
        item("b.example.org", False, ("shop", "mariadb", "db-3")),
        item("c.example.org", True, ("x", "postgresql", "db-2"), ("unplaced", "mariadb", None)),
        item("d.example.org", True, ("gone", "mariadb", "db-4"), state="deleted"),
    ]
    assert pitr.servers(items) == {"postgresql": ["db-2"], "mariadb": ["db-1"]}
    assert pitr.wanted(items[0]) and not pitr.wanted(items[1]) and not pitr.wanted({"name": "x"})
