"""``defaults.copy`` (``merge.clone``, ``defaults.fresh``): every effective spec starts
as one, so it must be a true deep copy of its containers while sharing its scalars (a
pickle round trip made a new string of every key and value: 7 KB per subscription)."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import pytest

from controller.effective import defaults, merge

SPEC: dict[str, Any] = {
    **defaults.DEFAULTS,
    "sites": [{"name": "a.example.org", "php": {"settings": {"memory_limit": "128M"}}}],
    "databases": [{"name": "db1", "engine": "mariadb", "server": None}],
    "expires": dt.date(2027, 1, 31),
    "nested": [[1, 2], [{"x": [3]}]],
}


def _containers(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [doc, *(c for v in doc.values() for c in _containers(v))]
    if isinstance(doc, list):
        return [doc, *(c for v in doc for c in _containers(v))]
    return []


@pytest.mark.parametrize("copy", [
    pytest.param(defaults.copy, id="defaults.copy"),
    pytest.param(merge.clone, id="merge.clone"),
])
def test_a_copy_is_equal_with_new_containers_and_the_same_scalars(copy: Any) -> None:
    got = copy(SPEC)
    assert got == SPEC == pickle.loads(pickle.dumps(SPEC))
    originals = {id(c) for c in _containers(SPEC)}
    assert len(_containers(got)) == len(originals)
    assert not {id(c) for c in _containers(got)} & originals
    assert got["hosting"]["php"]["handler"] is SPEC["hosting"]["php"]["handler"]
    assert got["expires"] is SPEC["expires"]


def test_changing_a_copy_leaves_the_original_and_other_copies() -> None:
    a, b = defaults.fresh(), defaults.fresh()
    a["hosting"]["php"]["settings"]["memory_limit"] = "1G"
    a["dns"]["primaries"].append("192.0.2.1")
    a["resources"]["diskMB"] = 10
    assert b == defaults.DEFAULTS
    assert defaults.DEFAULTS["hosting"]["php"]["settings"] == {}
    assert defaults.DEFAULTS["dns"]["primaries"] == []
    assert merge.clone(a) == a and merge.clone(a)["dns"]["primaries"] is not a["dns"]["primaries"]
