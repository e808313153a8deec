"""Mutations of an alert rule that its ``promtool test rules`` cases must catch.

Every alert expression ends in a threshold comparison (``... > 0.1``, ``up == 0``); a
mutation changes one thing: the expression never returns anything, the comparison is
inverted, the threshold is made stricter (the alert fires less) or looser (it fires
more), the ``for`` duration is dropped or halved, or the severity is changed. A rule file with
one mutated alert is written next to a copy of the unit tests, so that promtool runs
the project's own cases against it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

THRESHOLD = re.compile(r"^(?P<lhs>.*?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<n>-?[0-9.]+(?:e[+-]?[0-9]+)?)\s*$", re.S)
INVERSE = {">": "<=", "<=": ">", "<": ">=", ">=": "<", "==": "!=", "!=": "=="}
SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True)
class Threshold:
    lhs: str
    op: str
    n: float

    def expr(self, op: str | None = None, n: float | None = None) -> str:
        return f"{self.lhs} {op or self.op} {_num(self.n if n is None else n)}"


def _num(n: float) -> str:
    return str(int(n)) if n == int(n) else repr(n)


def threshold(expr: str) -> Threshold:
    """The comparison an alert expression ends with; ValueError if there is none."""
    m = THRESHOLD.match(expr.strip())
    if m is None:
        raise ValueError(f"alert expression does not end in a threshold comparison: {expr!r}")
    return Threshold(m["lhs"], m["op"], float(m["n"]))


def seconds(duration: str) -> int:
    """A Prometheus duration (``90s``, ``15m``, ``1h30m``) in seconds."""
    parts = re.findall(r"(\d+)([smhdwy])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(int(n) * unit[u] for n, u in parts)


def alerts(rules: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                yield rule


def mutations(rule: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, mutated rule)`` for every mutation that applies to ``rule``."""

    def with_(**changes: Any) -> dict[str, Any]:
        out = copy.deepcopy(rule)
        out.update(changes)
        return out

    t = threshold(rule["expr"])
    yield "never", with_(expr="absent(vector(1))")
    yield "inverted", with_(expr=t.expr(op=INVERSE[t.op]))
    if t.op in (">", ">="):
        yield "stricter", with_(expr=t.expr(n=t.n * 2 if t.n > 0 else 1))
        yield "looser", with_(expr=t.expr(n=t.n / 2 if t.n > 0 else -1))
    elif t.op in ("<", "<="):
        yield "stricter", with_(expr=t.expr(n=t.n / 2 if t.n > 0 else -1))
        yield "looser", with_(expr=t.expr(n=t.n * 2 if t.n > 0 else 1))
    if "for" in rule:
        out = copy.deepcopy(rule)
        del out["for"]
        yield "no-for", out
        yield "halved-for", with_(**{"for": f"{seconds(rule['for']) // 2}s"})
    other = next(s for s in SEVERITIES if s != rule["labels"]["severity"])
    yield "severity", with_(labels={**rule["labels"], "severity": other})


def replace_alert(rules: dict[str, Any], name: str, new: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``rules`` with alert ``name`` replaced by ``new``."""
    out = copy.deepcopy(rules)
    for group in out["groups"]:
        group["rules"] = [new if r.get("alert") == name else r for r in group["rules"]]
    return out
