"""Rendering of plan/status items as tables or JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


def print_json(doc: Any) -> None:
    sys.stdout.write(dumps(doc) + "\n")


def subscriptions_table(items: Iterable[Mapping[str, Any]], *, title: str, with_actions: bool = False) -> None:
    table = Table(title=title)
    for col in ("name", "customer", "plan", "server", "ip", "state", "sync", "conflicts"):
        table.add_column(col)
    if with_actions:
        table.add_column("actions")
    else:
        table.add_column("concerns")
    for it in items:
        state = it["state"] + (f" ({it['stateReason']})" if it.get("stateReason") else "")
        conflicts = ", ".join(
            f"{c['property']}: {c['planValue']}->{c['availableValue']}" for c in it.get("conflicts", [])
        )
        row = [it["name"], it["customer"], it.get("plan") or "-", it.get("server") or "-", it.get("ip") or "-",
               state, it["sync"], conflicts or "-"]
        if with_actions:
            row.append(", ".join(it.get("actions", [])) or "-")
        else:
            concerns = it.get("concerns", {})
            row.append(", ".join(f"{k}={v}" for k, v in concerns.items()) or "-")
        table.add_row(*row)
    Console(width=200).print(table)
