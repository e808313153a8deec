"""Usage figures in a real state store (schema v6): counts and cursors in one
transaction, a collection overtaken by another dropped whole, the month's traffic and
the day's sizes where RES-2 reads them, and the overuse decision made from them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.effective import lifecycle
from controller.state import migrations, usage
from controller.state import store as state_store

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[state_store.Store]:
    s = state_store.Store(tmp_path / "state.db", now=lambda: NOW)
    try:
        yield s
    finally:
        s.close()


def cur(offset: int) -> dict[str, object]:
    return {"inode": 7, "head": "h", "offset": offset, "last": ""}


def test_v6_is_a_migration_of_its_own() -> None:
    assert usage.__name__ and "CREATE TABLE usage_traffic" in migrations.MIGRATIONS[5]


def test_counts_add_up_per_day_and_the_cursor_moves_with_them(store: state_store.Store) -> None:
    usage.record(store, "web-1", NOW, [usage.Figures("a.test", {"2026-11-29": (3, 300), "2026-11-30": (1, 10)},
                                                     cur(10), None, disk=5 * usage.MB)], disk=True)
    usage.record(store, "web-1", NOW, [usage.Figures("a.test", {"2026-11-30": (2, 20)}, cur(20), cur(10))], disk=False)
    rows = usage.rows(store)
    assert [(r.day.isoformat(), r.requests, r.bytes, r.disk_mb) for r in rows] == [
        ("2026-11-29", 3, 300, None), ("2026-11-30", 3, 30, 5.0)]
    assert usage.cursors(store, "web-1") == {"a.test": cur(20)}
    assert usage.disk_measured(store, "web-1") == NOW and usage.disk_measured(store, "web-2") is None
    assert store.get_usage("a.test")["diskMB"] == 5.0


def test_a_collection_overtaken_by_another_is_dropped_whole(store: state_store.Store) -> None:
    usage.record(store, "web-1", NOW, [usage.Figures("a.test", {"2026-11-30": (1, 10)}, cur(10), None)], disk=False)
    # two collectors started from offset 10; the first records, the second must not
    first = usage.Figures("a.test", {"2026-11-30": (5, 50)}, cur(60), cur(10))
    second = usage.Figures("a.test", {"2026-11-30": (5, 50)}, cur(60), cur(10))
    other = usage.Figures("b.test", {"2026-11-30": (1, 1)}, cur(1), None)
    assert usage.record(store, "web-1", NOW, [first], disk=False) == []
    assert usage.record(store, "web-1", NOW, [second, other], disk=False) == ["a.test"]
    totals = {(r.subscription, r.requests, r.bytes) for r in usage.rows(store)}
    assert totals == {("a.test", 6, 60), ("b.test", 1, 1)}


def test_month_traffic_and_database_sizes_feed_res2(store: state_store.Store) -> None:
    usage.record(store, "web-1", NOW, [usage.Figures(
        "a.test", {"2026-10-31": (1, 900 * usage.MB), "2026-11-01": (1, 200 * usage.MB), "2026-11-30": (1, 100 * usage.MB)},
        cur(3), None)], disk=False)
    store.put_usage("a.test", {"databaseMB": 12.5})  # what the db driver measured
    assert usage.refresh(store, NOW) == {"a.test": 300.0}
    used = store.all_usage()["a.test"]
    assert used["trafficMB"] == 300.0  # November only
    [today] = [r for r in usage.rows(store, NOW.date())]
    assert today.database_mb == 12.5
    eff = {"overuse": {"notifyAtPercent": 90},
           "resources": {"diskMB": "unlimited", "trafficMBPerMonth": 250, "databaseQuotaMB": 100}}
    assert lifecycle.overuse(eff, used) == (["trafficMBPerMonth"], [])
    # a new month starts from nothing
    assert usage.refresh(store, dt.datetime(2026, 12, 1, 0, 5, tzinfo=dt.UTC)) == {}
    assert store.all_usage()["a.test"]["trafficMB"] == 0.0


def test_the_daily_size_is_the_days_maximum(store: state_store.Store) -> None:
    for mb in (5, 9, 7):
        usage.record(store, "web-1", NOW, [usage.Figures("a.test", disk=mb * usage.MB)], disk=True)
    [row] = usage.rows(store)
    assert row.disk_mb == 9.0 and store.get_usage("a.test")["diskMB"] == 7.0


@pytest.mark.parametrize(("nbytes", "over"), [
    pytest.param(250 * usage.MB, False, id="at-the-limit"),
    pytest.param(250 * usage.MB + 1, True, id="one-byte-over"),
])
def test_rounding_up_to_whole_mib_decides_like_the_exact_figure(store: state_store.Store, nbytes: int,
                                                                  over: bool) -> None:
    usage.record(store, "web-1", NOW, [usage.Figures("a.test", {"2026-11-30": (1, nbytes)}, cur(1), None)], disk=False)
    usage.refresh(store, NOW)
    eff = {"overuse": {"notifyAtPercent": 100}, "resources": {"diskMB": None, "trafficMBPerMonth": 250,
                                                              "databaseQuotaMB": None}}
    assert lifecycle.overuse(eff, store.all_usage()["a.test"])[0] == (["trafficMBPerMonth"] if over else [])
