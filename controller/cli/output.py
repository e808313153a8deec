"""Rendering of plan/status rows as tables or JSON, and the filters both commands share.

Tables suit the terminal they are printed on (``kubectl get``'s way): plain aligned
columns, compact by default (name, server, state, sync, READY as provisioned/concerns,
conflicts, age; plan adds the actions), every column with ``-o wide``, and never wider
than ``COLUMNS`` (or the terminal): the widest free-text column is cut with ``...``.
At 10,000 subscriptions only the rows worth a look (changes, conflicts, failures, not
synced) are printed unless ``--all``, then one summary line by state, like terraform's
"N to add, M to change". ``-o json`` always has every row, written one row at a time
(``stream_json``) so that no command holds every document at once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from controller import errors
from controller.effective import maintenance

FORMATS = ("table", "wide", "json")
GAP = "   "
CUT = "..."


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


def print_json(doc: Any) -> None:
    sys.stdout.write(dumps(doc) + "\n")


def stream_json(key: str, rows: Iterable[Mapping[str, Any] | str], tail: Mapping[str, Any] | None = None,
                out: IO[str] | None = None) -> int:
    """``{"<key>": [row, ...], **tail}`` written row by row, one row a line (compact JSON,
    the C encoder); a ``str`` row is already JSON text. Returns the number of rows."""
    w = out if out is not None else sys.stdout
    w.write(f'{{"{key}": [')
    n = 0
    for row in rows:
        w.write("\n" if n == 0 else ",\n")
        w.write(row if isinstance(row, str) else json.dumps(row, default=str))
        n += 1
    w.write("\n]" if n else "]")
    for k, v in (tail or {}).items():
        w.write(f",\n{json.dumps(k)}: {json.dumps(v, default=str)}")
    w.write("}\n")
    return n


# -- filters ------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_EQ = re.compile(rf"({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)")
_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)")
_HAS = re.compile(rf"(!?)\s*({_KEY})")


def _requirements(text: str) -> list[str]:
    """``a=b,c in (d,e)`` -> ``["a=b", "c in (d,e)"]``: commas inside parentheses stay."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def parse_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A label selector in kubectl's syntax: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``,
    ``k in (a,b)``, ``k notin (a,b)``, comma-separated (all must hold)."""
    reqs: list[tuple[str, str, frozenset[str]]] = []  # (operator, key, values)
    for req in (r.strip() for r in _requirements(text)):
        if m := _EQ.fullmatch(req):
            reqs.append(("!=" if m[2] == "!=" else "in", m[1], frozenset([m[3]])))
        elif m := _SET.fullmatch(req):
            reqs.append((m[2], m[1], frozenset(v.strip() for v in m[3].split(",") if v.strip())))
        elif m := _HAS.fullmatch(req):
            reqs.append(("absent" if m[1] else "exists", m[2], frozenset()))
        else:
            raise errors.TenantctlError(
                f"tenantctl: --selector: cannot parse {req!r} in {text!r} (expected k=v, k!=v, k, !k, k in (a,b))")

    def matches(labels: Mapping[str, str]) -> bool:
        for op, key, values in reqs:
            value = labels.get(key)
            ok = {"in": value in values, "!=": value not in values, "notin": value not in values,
                  "exists": key in labels, "absent": key not in labels}[op]
            if not ok:
                return False
        return True

    return matches


def select(items: Iterable[Mapping[str, Any]], *, customer: str | None = None, server: str | None = None,
           names: frozenset[str] | set[str] | None = None) -> list[Mapping[str, Any]]:
    """The items of this customer, on this server, among ``names`` (each if given)."""
    return [it for it in items if wanted(it, customer=customer, server=server, names=names)]


def wanted(it: Mapping[str, Any], *, customer: str | None = None, server: str | None = None,
           names: frozenset[str] | set[str] | None = None) -> bool:
    return ((customer is None or it.get("customer") == customer) and (server is None or it.get("server") == server)
            and (names is None or it.get("name") in names))


# -- tables -------------------------------------------------------------------------


def waiting(it: Mapping[str, Any]) -> bool:
    """A disruptive change of it waits for its region's maintenance window (OPS-2)."""
    return any(c.get("type") == maintenance.CONDITION and c.get("status") == "True"
               for c in it.get("conditions") or ())


def notable(it: Mapping[str, Any]) -> bool:
    """A row worth showing without ``--all``: it will change, has conflicts, a failed
    concern, is not synced with its plan, or has a change waiting for a window."""
    concerns = it.get("concerns") or {}
    return (bool(it.get("actions")) or bool(it.get("conflicts")) or "failed" in concerns.values()
            or "drifted" in concerns.values() or (it.get("sync") not in ("synced", None)
            and it.get("state") != "deleted") or waiting(it))


def summary(items: Sequence[Mapping[str, Any]], shown: int) -> str:
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
    if held := sum(1 for it in items if waiting(it)):
        parts.append(f"{held} waiting for a maintenance window")
    if shown < len(items):
        parts.append(f"{shown} shown (--all for every row)")
    return "; ".join(p for p in parts if p)


def age(since: dt.datetime | dt.date | None, now: dt.datetime) -> str:
    """``kubectl get``'s AGE: 45s, 12m, 5h, 3d, 2y."""
    if since is None:
        return "-"
    if not isinstance(since, dt.datetime):
        since = dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    secs = max(0, int((now - since).total_seconds()))
    for unit, n in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n * (2 if unit == "y" else 1):
            return f"{secs // n}{unit}"
    return f"{secs}s"


def terminal_width() -> int | None:
    """``COLUMNS`` if set, else the terminal's width when stdout is one; None: no limit
    (a pipe or a file gets whole rows, as from ``kubectl get``)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return int(cols)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - len(CUT))] + CUT


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None,
           flexible: Sequence[int] = (), *, only_flexible: bool = False) -> list[str]:
    """Aligned columns separated by three spaces; when wider than ``width``, the
    ``flexible`` columns (then, unless ``only_flexible``, the others, widest first) are
    cut down, none below its header nor 8 characters, and never the first, the name
    (what still does not fit overflows, as in ``kubectl get``)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    if width is not None:
        excess = sum(widths) + len(GAP) * (len(widths) - 1) - width
        order = list(flexible) + ([] if only_flexible else sorted(
            (i for i in range(1, len(widths)) if i not in flexible), key=lambda i: -widths[i]))
        for i in order:
            if excess <= 0:
                break
            floor = max(len(headers[i]), min(widths[i], 8))
            take = min(excess, widths[i] - floor)
            widths[i] -= take
            excess -= take
    last = len(headers) - 1
    out = [GAP.join(h.upper().ljust(widths[i]) if i < last else h.upper() for i, h in enumerate(headers))]
    for row in rows:
        out.append(GAP.join(_cut(c, widths[i]).ljust(widths[i]) if i < last else _cut(c, widths[i])
                            for i, c in enumerate(row)).rstrip())
    return out


def _ready(it: Mapping[str, Any]) -> str:
    concerns = it.get("concerns") or {}
    if not concerns:
        return "-"
    return f"{sum(1 for v in concerns.values() if v == 'provisioned')}/{len(concerns)}"


def subscriptions_table(items: Iterable[Mapping[str, Any]], *, title: str, with_actions: bool = False,
                        wide: bool = False, show_all: bool = True, ages: Mapping[str, str] | None = None,
                        out: IO[str] | None = None) -> None:
    """The table of plan/status/apply rows, then the summary line. ``ages``: name -> AGE."""
    w = out if out is not None else sys.stdout
    rows = list(items)
    shown = rows if show_all else [it for it in rows if notable(it)]
    ages = ages or {}
    if wide:
        headers = ["name", "customer", "plan", "server", "ip", "state", "sync", "ready", "conflicts", "age",
                   "actions" if with_actions else "concerns"]
        flexible = [len(headers) - 1, 8]
    else:
        headers = ["name", "server", "state", "sync", "ready", "conflicts", "age"] + (["actions"] if with_actions else [])
        flexible = [len(headers) - 1] if with_actions else []
    cells: list[list[str]] = []
    for it in shown:
        state = it["state"] + (f" ({it['stateReason']})" if it.get("stateReason") else "")
        conflicts = it.get("conflicts") or []
        actions = ", ".join(it.get("actions") or []) or "-"
        when = ages.get(it["name"], "-")
        if wide:
            detail = ", ".join(f"{c['property']}: {c['planValue']}->{c['availableValue']}" for c in conflicts)
            last = actions if with_actions else ", ".join(
                f"{k}={v}" for k, v in (it.get("concerns") or {}).items()) or "-"
            cells.append([it["name"], it.get("customer") or "-", it.get("plan") or "-", it.get("server") or "-",
                          it.get("ip") or "-", state, str(it.get("sync") or "-"), _ready(it), detail or "-", when,
                          last])
        else:
            cells.append([it["name"], it.get("server") or "-", state, str(it.get("sync") or "-"), _ready(it),
                          str(len(conflicts)) if conflicts else "-", when, *([actions] if with_actions else [])])
    width = terminal_width()
    w.write(f"{title if width is None else _cut(title, width)}\n")
    if cells:
        # -o wide asks for every column: only its free-text ones (concerns or actions,
        # conflicts) are cut to the terminal; server, IP, ... stay whole
        w.write("\n".join(render(headers, cells, width, flexible, only_flexible=wide)) + "\n")
    w.write("\n".join(_wrap(summary(rows, len(shown)), width)) + "\n")


def _wrap(text: str, width: int | None) -> list[str]:
    """The summary on as many lines as the width needs, broken after its ``;``."""
    if width is None or len(text) <= width:
        return [text]
    lines = [""]
    for part in text.split("; "):
        joined = f"{lines[-1]}; {part}" if lines[-1] else part
        if len(joined) <= width or not lines[-1]:
            lines[-1] = joined
        else:
            lines[-1] += ";"
            lines.append(part)
    return lines
