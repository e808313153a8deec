"""Fingerprints: a stable hash of canonical JSON, so "nothing changed" costs one compare."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def of(doc: Any) -> str:
    return hashlib.blake2b(canonical(doc), digest_size=16).hexdigest()
