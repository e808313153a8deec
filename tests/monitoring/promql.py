"""The names a PromQL expression uses: metrics, and label names by where they appear.

Not a PromQL parser (promtool checks the syntax): a tokenizer that knows where names
sit. Strings, ranges and durations are skipped; ``name{a="x"}`` is a selector with its
matcher labels; ``by (...)``/``without (...)`` after or before an aggregation's
argument are grouping labels for the metrics in that argument; ``on``, ``ignoring``,
``group_left`` and ``group_right`` lists are vector-matching labels; any other bare
name not followed by ``(`` is a metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TOKEN = re.compile(
    r"""(?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
      | (?P<range>\[[^\]]*\])
      | (?P<dur>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)
      | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>{}(),])
      | (?P<space>\s+)""",
    re.X,
)
GROUPING = ("by", "without")
MATCHING = ("on", "ignoring", "group_left", "group_right")
AGGREGATIONS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                          "bottomk", "topk", "quantile"})
SELECTING = frozenset({"topk", "bottomk"})
"""Aggregations that keep the labels of the series they select."""
KEYWORDS = frozenset({"bool", "and", "or", "unless", "offset", "inf", "nan", "atan2", *GROUPING, *MATCHING})


@dataclass
class Aggregation:
    op: str
    modifier: str  # by | without | "" (none)
    labels: list[str]
    metrics: set[str]
    matching: bool  # the argument joins vectors on/ignoring some labels


@dataclass
class Names:
    metrics: set[str] = field(default_factory=set)
    selectors: list[tuple[str, list[str]]] = field(default_factory=list)
    aggregations: list[Aggregation] = field(default_factory=list)
    matching: list[str] = field(default_factory=list)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "space":
            out.append((kind, m.group()))
    return out


def _close(toks: list[tuple[str, str]], i: int) -> int:
    """Index of the ``)`` that closes the ``(`` at ``i``."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j][1] == "(":
            depth += 1
        elif toks[j][1] == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


def _list(toks: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    """The names in the ``( a, b )`` starting at ``i``, and the index after it."""
    end = _close(toks, i)
    return [v for k, v in toks[i + 1:end] if k in ("name", "str")], end + 1


def names(expr: str) -> Names:
    toks = tokens(expr)
    out = Names()
    i = 0
    while i < len(toks):
        kind, value = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "name" and value in MATCHING and nxt == "(":
            labels, i = _list(toks, i + 1)
            out.matching += labels
            continue
        if kind == "name" and value in GROUPING and nxt == "(":
            i = _list(toks, i + 1)[1]  # read with its aggregation
            continue
        if kind == "name" and value in AGGREGATIONS and nxt in ("(", *GROUPING):
            out.aggregations.append(_aggregation(toks, i))
        elif kind == "name" and nxt == "{":
            end = next(j for j in range(i, len(toks)) if toks[j][1] == "}")
            matchers = [v for j, (k, v) in enumerate(toks[i + 2:end], start=i + 2)
                        if k == "name" and toks[j + 1][1] in ("=", "!=", "=~", "!~")]
            out.metrics.add(value)
            out.selectors.append((value, matchers))
            i = end + 1
            continue
        elif kind == "name" and nxt != "(" and value.lower() not in KEYWORDS:
            out.metrics.add(value)
            out.selectors.append((value, []))
        i += 1
    return out


def _aggregation(toks: list[tuple[str, str]], i: int) -> Aggregation:
    op = toks[i][1]
    modifier = ""
    labels: list[str] = []
    j = i + 1
    if toks[j][1] in GROUPING:  # sum by (a) (x)
        modifier = toks[j][1]
        labels, j = _list(toks, j + 1)
    end = _close(toks, j)
    arg = toks[j + 1:end]
    if not modifier and end + 1 < len(toks) and toks[end + 1][1] in GROUPING:  # sum (x) by (a)
        modifier = toks[end + 1][1]
        labels = _list(toks, end + 2)[0]
    inner = names(" ".join(v if k != "str" else '""' for k, v in arg))
    return Aggregation(op, modifier, labels, inner.metrics, bool(inner.matching))


def output_labels(expr: str, labels_of: dict[str, set[str]]) -> set[str] | None:
    """Labels the result of ``expr`` can carry (for legends and ``$labels``); None when
    they cannot be told from the names alone (``without``)."""
    n = names(expr)
    if any(a.modifier == "without" for a in n.aggregations):
        return None
    dropping = [a for a in n.aggregations if a.op not in SELECTING]
    if dropping:
        return {label for a in dropping for label in a.labels}
    sets = [labels_of.get(m, set()) for m in n.metrics]
    return set.intersection(*sets) if sets else set()
