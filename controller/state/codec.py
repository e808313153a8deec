"""How values are encoded in SQLite columns: canonical JSON and ISO-8601 UTC text.

Canonical JSON (sorted keys, no spaces) makes "did it change?" a string comparison.
Datetimes are stored with a fixed width (microseconds, ``Z``) so that text order is time
order and ``WHERE purge_after < ?`` works on the column.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def dumps(value: Any) -> str:
    """Canonical JSON text of ``value``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def loads(text: str) -> Any:
    """Inverse of ``dumps``."""
    return json.loads(text)


def dt_to_text(value: datetime) -> str:
    """``2025-01-31T12:00:00.000000Z``; refuses naive datetimes."""
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use an aware one (UTC)")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def text_to_dt(text: str) -> datetime:
    """Inverse of ``dt_to_text``; always returns an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:  # tolerate hand-edited rows
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def opt_dt_to_text(value: datetime | None) -> str | None:
    return None if value is None else dt_to_text(value)


def opt_text_to_dt(text: str | None) -> datetime | None:
    return None if text is None else text_to_dt(text)


def utcnow() -> datetime:
    """The default clock of the store."""
    return datetime.now(UTC)
