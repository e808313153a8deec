"""Rendering of plan/status items as tables or JSON.

Tables suit the terminal they are printed on (``kubectl get``'s way): compact columns by
default (name, server, state, sync, READY as provisioned/concerns, conflicts, actions),
every column with ``-o wide``; and at 10,000 subscriptions only the rows worth a look
(changes, conflicts, failures, not synced) unless ``--all``, then a one-line summary by
state, like terraform's "N to add, M to change". ``-o json`` always has every row.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

FORMATS = ("table", "wide", "json")


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


def print_json(doc: Any) -> None:
    sys.stdout.write(dumps(doc) + "\n")


def notable(it: Mapping[str, Any]) -> bool:
    """A row worth showing without ``--all``: it will change, has conflicts, a failed
    concern, or is not synced with its plan."""
    concerns = it.get("concerns") or {}
    return (bool(it.get("actions")) or bool(it.get("conflicts")) or "failed" in concerns.values()
            or "drifted" in concerns.values() or (it.get("sync") not in ("synced", None)
            and it.get("state") != "deleted"))


def select(items: Iterable[Mapping[str, Any]], *, customer: str | None = None, server: str | None = None
           ) -> list[Mapping[str, Any]]:
    return [it for it in items
            if (customer is None or it.get("customer") == customer) and (server is None or it.get("server") == server)]


def summary(items: list[Mapping[str, Any]], shown: int) -> str:
    """One line: how many subscriptions, by sync and by state, and what is failing."""
    sync = Counter(str(it.get("sync")) for it in items if it.get("state") != "deleted")
    state = Counter(str(it.get("state")) for it in items)
    failed = sum(1 for it in items if "failed" in (it.get("concerns") or {}).values())
    changes = sum(1 for it in items if it.get("actions"))
    parts = [f"{len(items)} subscriptions", ", ".join(f"{n} {k}" for k, n in sorted(sync.items())),
             ", ".join(f"{n} {k}" for k, n in sorted(state.items()))]
    if changes:
        parts.append(f"{changes} to change")
    if failed:
        parts.append(f"{failed} with a failed concern")
    if shown < len(items):
        parts.append(f"{shown} shown (--all for every row)")
    return "; ".join(p for p in parts if p)


def _ready(it: Mapping[str, Any]) -> str:
    concerns = it.get("concerns") or {}
    if not concerns:
        return "-"
    return f"{sum(1 for v in concerns.values() if v == 'provisioned')}/{len(concerns)}"


def subscriptions_table(items: Iterable[Mapping[str, Any]], *, title: str, with_actions: bool = False,
                        wide: bool = False, show_all: bool = True) -> None:
    rows = list(items)
    shown = rows if show_all else [it for it in rows if notable(it)]
    table = Table(title=title)
    if wide:
        cols = ["name", "customer", "plan", "server", "ip", "state", "sync", "conflicts",
                "actions" if with_actions else "concerns"]
    else:
        cols = ["name", "server", "state", "sync", "ready", "conflicts"] + (["actions"] if with_actions else [])
    for col in cols:
        table.add_column(col, overflow="fold")
    for it in shown:
        state = it["state"] + (f" ({it['stateReason']})" if it.get("stateReason") else "")
        actions = ", ".join(it.get("actions", [])) or "-"
        if wide:
            conflicts = ", ".join(
                f"{c['property']}: {c['planValue']}->{c['availableValue']}" for c in it.get("conflicts", []))
            last = actions if with_actions else ", ".join(
                f"{k}={v}" for k, v in (it.get("concerns") or {}).items()) or "-"
            table.add_row(it["name"], it["customer"], it.get("plan") or "-", it.get("server") or "-",
                          it.get("ip") or "-", state, it["sync"], conflicts or "-", last)
        else:
            row = [it["name"], it.get("server") or "-", state, it["sync"], _ready(it),
                   str(len(it.get("conflicts", []))) if it.get("conflicts") else "-"]
            table.add_row(*row, *([actions] if with_actions else []))
    console = Console()
    if shown:
        console.print(table)
    else:
        console.print(title)
    console.print(summary(rows, len(shown)), highlight=False)
