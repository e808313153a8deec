"""Digests of JSON-like data: a stable hash of canonical JSON.

The bottom layer, beside ``errors``: the loader digests documents, the planner
digests effective specs and inputs, with the same function.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(doc: Any) -> bytes:
    """Sorted keys, no spaces, dates and other scalars as their ``str``."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def of(doc: Any) -> str:
    return hashlib.blake2b(canonical(doc), digest_size=16).hexdigest()
