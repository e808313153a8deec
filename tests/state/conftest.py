"""Fixtures for the state store: a fresh store in a temp dir, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.state import store

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


class FakeNow:
    """A settable wall clock for the store (kopf-style fake time: tests never sleep)."""

    def __init__(self, start: datetime = T0) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeNow:
    return FakeNow()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def st(db_path: Path, clock: FakeNow) -> Iterator[store.Store]:
    with store.Store(db_path, now=clock) as s:
        yield s


def populate(path: Path, n: int = 40) -> None:
    """A store with ``n`` subscriptions, their fingerprints and an event each (several pages)."""
    from controller.state import events, records

    with store.Store(path, now=FakeNow()) as st, st.transaction():
        for i in range(n):
            name = f"s{i:03d}.example"
            st.upsert_subscription(records.SubscriptionRecord(name, "c1", T0, server="eu1", ip="127.0.10.2"))
            st.set_fingerprints(name, {r: f"{r}{i}" * 8 for r in ("*", "web", "php", "db", "dns", "tls")})
            events.record(st, actor="controller", action="create", subject=name, message="created " * 20)


def side_files(path: Path) -> set[str]:
    """Files SQLite or the store may create next to ``path``."""
    return {p.name for p in path.parent.iterdir() if p.name != path.name and p.name.startswith(path.name)}
