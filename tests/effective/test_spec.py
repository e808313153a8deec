"""The typed effective spec (issue 8 point 4): every item ``compute`` makes is an
``effective.spec.Item`` (checked at run time here; mypy checks the drivers against the
type), and each concern's slice is cut from it in one place (``drivers.slices``)."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from controller import model
from controller.drivers import base, slices
from controller.effective import spec
from controller.reconcile import engine
from effective import strategies as gen
from effective.builder import SUB

from .test_properties import PROPS, _world

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)


def example_items() -> list[dict[str, Any]]:
    planned = engine.plan(model.load_desired([ROOT / "examples"]), NOW, None)
    return [s.item for s in planned.subscriptions.values()]


def test_every_example_item_is_a_typed_item_and_slices_as_before() -> None:
    for item in example_items():
        typed = spec.check(item)
        for concern in base.CONCERNS:
            sl = base.SLICES[concern](typed)
            assert sl, concern
        web = slices.web(typed)
        assert web["sites"] == [s["name"] for s in item["effective"]["sites"]]
        assert web["hosting"] == {k: v for k, v in item["effective"]["hosting"].items() if k != "php"}
        assert slices.db(typed)["databases"] == item["effective"]["databases"]


@PROPS
@given(plan=gen.bodies(), addon=gen.bodies(addon=True))
def test_every_computed_item_is_a_typed_item(plan: dict[str, Any], addon: dict[str, Any]) -> None:
    w = _world(plan, {"extra": addon})
    w.subs[SUB]["addons"] = ["extra"]
    item = w.item()
    spec.check(item)
    for concern in base.CONCERNS:
        base.SLICES[concern](spec.of(item))


@pytest.mark.parametrize(("path", "value"), [
    pytest.param(("effective", "hosting", "ssl"), "perhaps", id="a-bool-that-is-not"),
    pytest.param(("effective", "databases"), [{"name": "x"}], id="a-database-without-engine"),
    pytest.param(("state",), None, id="no-state"),
])
def test_a_malformed_item_is_refused_naming_the_field(path: tuple[str, ...], value: Any) -> None:
    item = copy.deepcopy(example_items()[0])
    target = item
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=path[-1] if path[-1] != "databases" else "engine"):
        spec.check(item)


def test_a_sketch_fills_in_the_defaults() -> None:
    item = spec.sketch({"name": "a.example.org", "region": "eu-west",
                        "effective": {"sites": [{"name": "b.example.net", "type": "alias"}]}})
    assert slices.tls(item)["siteTypes"] == {"b.example.net": "alias"}
    assert slices.php(item)["php"]["version"] == "8.2"
