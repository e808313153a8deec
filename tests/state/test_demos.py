"""Demo resets in the state store (schema v9, PLAT-3): the last reset of each demo and
its last success, kept across reopening the store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from controller.state import demos, migrations
from controller.state import store as state_store

T0 = dt.datetime(2026, 12, 1, 9, 44, tzinfo=dt.UTC)


def test_the_last_reset_and_the_last_success_are_kept(tmp_path: Path) -> None:
    with state_store.Store(tmp_path / "state.db", now=lambda: T0) as st:
        assert demos.all_resets(st) == {} and migrations.latest() >= 9
        demos.record(st, "demo.example.org", T0, seconds=2.51, error=None, source="ref.example.org",
                     snapshots=["aa", "bb"], actor="run")
        later = T0 + dt.timedelta(hours=1)
        demos.record(st, "demo.example.org", later, seconds=0.4, error="no backup", source="ref.example.org",
                     snapshots=[], actor="cli:ops")
    with state_store.Store(tmp_path / "state.db", now=lambda: T0) as st:
        r = demos.get(st, "demo.example.org")
        assert r == demos.Reset("demo.example.org", later, 0.4, False, "ref.example.org", (), "no backup", "cli:ops",
                                T0)
        demos.record(st, "demo.example.org", later, seconds=3.0, error=None, source="ref.example.org",
                     snapshots=["cc"], actor="run")
        assert demos.all_resets(st)["demo.example.org"].last_ok_at == later
        demos.forget(st, ["demo.example.org"])
        assert demos.get(st, "demo.example.org") is None
