"""Digests of JSON-like data: a stable hash of canonical JSON.

The bottom layer, beside ``errors``: the loader digests documents, the planner
digests effective specs and inputs, with the same function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


def _reference(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def _encoder() -> Callable[[Any], str]:
    """``_reference``'s text made by one C encoder built once, not one per call
    (``json.dumps`` builds an encoder each time: half the cost of a small document's
    digest, and the planner digests several values per subscription). Same arguments;
    no circular-reference check (documents and effective specs have no cycle: recursive
    YAML aliases are refused by the parser)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython without _json
        return _reference
    encode = make(None, str, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
    return lambda doc: "".join(encode(doc, 0))


_ENCODE = _encoder()


def canonical(doc: Any) -> bytes:
    """Sorted keys, no spaces, dates and other scalars as their ``str``."""
    return _ENCODE(doc).encode()


def of(doc: Any) -> str:
    return hashlib.blake2b(canonical(doc), digest_size=16).hexdigest()
