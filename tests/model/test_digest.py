"""``digest.canonical`` (one C encoder built once) makes exactly the text ``json.dumps``
makes with the same arguments, whatever the values: digests recorded before stay equal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from controller import digest
from controller.model import loader, parse

from .cli_run import BASE, CORPUS, EXAMPLES


def dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


@pytest.mark.parametrize("data", [
    pytest.param({"b": 1, "a": [True, False, None, 1.5, -0.0, 10**30]}, id="scalars-and-order"),
    pytest.param({"name": "h\u00e9llo \u2603 \"quoted\" \\ \n\t", "x": {"z": {}, "y": []}}, id="text"),
    pytest.param({"expires": dt.date(2027, 2, 28), "at": dt.datetime(2026, 12, 1, 3, 4, 5)}, id="dates"),
    pytest.param({"spec": {"n": float("inf"), "m": float("nan")}}, id="non-finite"),
    pytest.param({}, id="empty"),
])
def test_the_canonical_text_of_a_value_is_json_dumps(data: dict[str, Any]) -> None:
    assert digest.canonical(data) == dumps(data)


def test_every_document_of_the_examples_and_the_corpus_keeps_its_digest() -> None:
    files = sorted({*EXAMPLES.rglob("*.yaml"), *CORPUS.glob("*.yaml"), *BASE.glob("*.yaml")})
    seen = 0
    for f in files:
        for _, data, _, _ in parse.documents(Path(f).read_text(encoding="utf-8"), str(f), []):
            if isinstance(data, dict):
                assert digest.canonical(data) == dumps(data), f
                seen += 1
    assert seen > 100
    docs, _ = loader.load([EXAMPLES])
    assert docs and all(len(d.digest) == 32 for d in docs)
