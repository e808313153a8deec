"""Region evacuations and subscription generations in the store (schema v5, DR-1)."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.state import regions, store

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def test_an_evacuation_is_recorded_repointed_and_ended(st: store.Store) -> None:
    assert regions.targets(st) == {} and regions.targets(None) == {}
    regions.start(st, "eu-west", "us-east", T0)
    regions.start(st, "eu-west", "ap-southeast", T0.replace(hour=11))
    got = regions.evacuations(st)
    assert list(got) == ["eu-west"]
    assert (got["eu-west"].target, got["eu-west"].started_at) == ("ap-southeast", T0)  # the first start is kept
    assert regions.end(st, "eu-west") is True
    assert regions.end(st, "eu-west") is False
    assert regions.targets(st) == {}


def test_a_generation_starts_at_one_and_grows_by_one_per_move(st: store.Store) -> None:
    assert regions.generation(st, "a.example.org") == 1
    assert regions.bump(st, ["a.example.org", "b.example.org"]) == {"a.example.org": 2, "b.example.org": 2}
    assert regions.bump(st, ["a.example.org"]) == {"a.example.org": 3}
    assert regions.generations(st) == {"a.example.org": 3, "b.example.org": 2}
