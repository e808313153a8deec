"""What the audit log says a driver did (OPS-5): pure functions from old and new slices.

Every change a driver makes is recorded with its actor, subscription, concern, an
action (create, update, suspend, activate, delete) and a summary of what changed, e.g.
``databases: +shop, -old`` or ``hosting.php.settings.memory_limit: 128M -> 256M``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: the longest summary recorded in an event message (the data keeps every path)
MAX_SUMMARY = 400


def action(*, first: bool, suspending: bool, was_suspended: bool) -> str:
    if first:
        return "create"
    if suspending and not was_suspended:
        return "suspend"
    if was_suspended and not suspending:
        return "activate"
    return "update"


def _named(values: list[Any]) -> dict[str, Any] | None:
    """A list of objects with a ``name`` each, as a mapping (to diff by name)."""
    if values and all(isinstance(v, Mapping) and "name" in v for v in values):
        return {str(v["name"]): v for v in values}
    return None


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON-like values."""
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: set to {new[key]!r}")
            elif key not in new:
                out.append(f"{sub}: removed")
            else:
                out += diff(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list):
        a, b = _named(old), _named(new)
        if a is not None and b is not None:
            added = sorted(set(b) - set(a))
            removed = sorted(set(a) - set(b))
            parts = [f"+{n}" for n in added] + [f"-{n}" for n in removed]
            out = [f"{path}: {', '.join(parts)}"] if parts else []
            for n in sorted(set(a) & set(b)):
                out += diff(a[n], b[n], f"{path}[{n}]")
            return out
        if all(isinstance(v, str | int | float) for v in [*old, *new]):
            added = [v for v in new if v not in old]
            removed = [v for v in old if v not in new]
            parts = [f"+{v}" for v in added] + [f"-{v}" for v in removed]
            return [f"{path}: {', '.join(parts) or 'reordered'}"]
    return [f"{path or 'value'}: {old!r} -> {new!r}"]


def summary(old: Mapping[str, Any] | None, new: Mapping[str, Any], act: str) -> tuple[str, list[str]]:
    """``(one-line summary, every changed path)`` for an event."""
    if old is None:
        return f"{act}d" if act != "create" else "created", []
    changes = diff(old, new)
    if not changes:
        return "re-applied unchanged (drift repair, replaced server or new driver version)", []
    text = "; ".join(changes)
    if len(text) > MAX_SUMMARY:
        text = text[: MAX_SUMMARY - 1] + "…"
    return text, changes
