"""``tenantctl report usage``: periods (day, ISO week, month), customer totals, and the
real CLI's table, JSON and CSV over a state store filled as a collection would."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.cli import report
from controller.state import records, usage
from controller.state import store as state_store

CLI = str(Path(sys.executable).parent / "tenantctl")
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
OWNERS = {"a.test": "acme", "b.test": "acme", "c.test": "zeta"}


def row(sub: str, day: str, requests: int = 0, nbytes: int = 0, disk: float | None = None,
        db: float | None = None) -> usage.Row:
    return usage.Row(sub, dt.date.fromisoformat(day), requests, nbytes, disk, db)


ROWS = [row("a.test", "2026-11-23", 1, 100, 10.0), row("a.test", "2026-11-29", 2, 200, 12.0, 3.0),
        row("a.test", "2026-11-30", 4, 400, 11.0), row("b.test", "2026-11-30", 8, 800, 1.0, 2.0),
        row("c.test", "2026-11-01", 16, 1600)]


@pytest.mark.parametrize(("period", "expect"), [
    pytest.param("day", {("a.test", "2026-11-23"): (1, 100, 10.0), ("a.test", "2026-11-29"): (2, 200, 12.0),
                         ("a.test", "2026-11-30"): (4, 400, 11.0)}, id="day"),
    # 2026-11-23 and 29 are Monday and Sunday of one ISO week; the 30th a Monday
    pytest.param("week", {("a.test", "2026-11-23"): (3, 300, 12.0), ("a.test", "2026-11-30"): (4, 400, 11.0)},
                 id="week"),
    pytest.param("month", {("a.test", "2026-11-01"): (7, 700, 12.0)}, id="month"),
])
def test_periods_sum_traffic_and_keep_the_largest_size(period: str, expect: dict[tuple[str, str], tuple[int, ...]]) -> None:
    lines, _ = report.summarise(ROWS, OWNERS, period)
    got = {(x.domain, x.period.isoformat()): (x.requests, x.bytes, x.disk_mb) for x in lines if x.domain == "a.test"}
    assert got == expect


def test_customer_totals_add_their_subscriptions() -> None:
    lines, totals = report.summarise(ROWS, OWNERS, "month")
    assert [(t.customer, t.domain, t.requests, t.bytes, t.disk_mb, t.databases_mb) for t in totals] == [
        ("acme", "*", 15, 1500, 13.0, 5.0), ("zeta", "*", 16, 1600, None, None)]
    only, _ = report.summarise(ROWS, OWNERS, "month", customer="zeta")
    assert [x.domain for x in only] == ["c.test"] and len(lines) == 3


def test_the_table_fits_the_width_and_shows_totals() -> None:
    lines, totals = report.summarise(ROWS, {**OWNERS, "a.test": "a-customer-with-a-very-long-name"}, "day")
    out = report.table(lines, totals, 80)
    assert out[0].split()[:4] == ["CUSTOMER", "DOMAIN", "PERIOD", "REQUESTS"]
    assert all(len(x) <= 80 for x in out) and any("(total)" in x for x in out)


@pytest.mark.parametrize(("n", "text"), [pytest.param(512, "512 B", id="bytes"),
                                         pytest.param(3 * 1024 * 1024, "3.0 MiB", id="mib")])
def test_human_sizes(n: int, text: str) -> None:
    assert report.human(n) == text


@pytest.fixture
def state(tmp_path: Path) -> Path:
    st = state_store.Store(tmp_path / "state.db", now=lambda: NOW)
    with st:
        st.upsert_subscriptions([records.SubscriptionRecord(n, c, NOW, server="web-1") for n, c in OWNERS.items()])
        for r in ROWS:
            usage.record(st, "web-1", dt.datetime.combine(r.day, dt.time(12), dt.UTC),
                         [usage.Figures(r.subscription, {r.day.isoformat(): (r.requests, r.bytes)},
                                        disk=int(r.disk_mb * usage.MB) if r.disk_mb is not None else None)],
                         disk=r.disk_mb is not None)
    return tmp_path


def cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TENANTCTL_STATE_DIR=str(state), TENANTCTL_NOW=NOW.isoformat(), COLUMNS="100")
    return subprocess.run([CLI, "report", "usage", *args], capture_output=True, text=True, env=env, timeout=60,
                          check=False)


def test_json_and_csv_hold_the_same_figures(state: Path) -> None:
    done = cli(state, "--period", "week", "-o", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["period"] == "week" and doc["since"] == "2026-09-07"
    a = {x["period"]: x for x in doc["subscriptions"] if x["domain"] == "a.test"}
    assert a["2026-11-23"] == {"customer": "acme", "domain": "a.test", "period": "2026-11-23", "requests": 3,
                               "bytes": 300, "diskMB": 12.0, "databasesMB": None}
    done = cli(state, "--period", "week", "-o", "csv")
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(io.StringIO(done.stdout)))
    assert tuple(table[0]) == report.COLUMNS
    assert {(r["domain"], r["period"], r["requests"], r["bytes"]) for r in table} == {
        (x["domain"], x["period"], str(x["requests"]), str(x["bytes"])) for x in doc["subscriptions"] + doc["customers"]}


def test_since_and_customer_filter_and_bad_input_exits_2(state: Path) -> None:
    doc = json.loads(cli(state, "--since", "2026-11-29", "--customer", "acme", "-o", "json").stdout)
    assert {(x["domain"], x["period"]) for x in doc["subscriptions"]} == {
        ("a.test", "2026-11-29"), ("a.test", "2026-11-30"), ("b.test", "2026-11-30")}
    assert cli(state, "--period", "year").returncode == 2
    assert cli(state, "--since", "yesterday").returncode == 2
    assert cli(state, "--collect").returncode == 2  # needs -f
    table = cli(state, "--period", "month")
    assert table.returncode == 0 and "(total)" in table.stdout and "1.5 KiB" in table.stdout


@pytest.mark.parametrize("day", [pytest.param(d, id=d) for d in (
    "2026-01-01", "2026-12-31", "2027-01-03", "2027-01-04", "2024-02-29", "2026-11-30")])
def test_weeks_are_iso_weeks_and_months_calendar_months(day: str) -> None:
    d = dt.date.fromisoformat(day)
    year, week, _ = d.isocalendar()
    assert usage.period_start(d, "week") == dt.date.fromisocalendar(year, week, 1)
    assert usage.period_start(d, "month") == dt.date(d.year, d.month, 1)
    assert usage.period_start(d, "day") == d
    with pytest.raises(ValueError, match="not a period"):
        usage.period_start(d, "year")


def test_the_reports_month_is_the_month_res2_counts(tmp_path: Path) -> None:
    """The report's month row and ``trafficMB`` (what RES-2's overuse decision reads) sum
    the same days: the last day of October in neither, the 1st and 30th of November in both."""
    days = {"2026-10-31": (1, usage.MB), "2026-11-01": (2, 2 * usage.MB), "2026-11-30": (1, usage.MB)}
    with state_store.Store(tmp_path / "state.db", now=lambda: NOW) as st:
        usage.record(st, "web-1", NOW, [usage.Figures("a.test", days)], disk=False)
        usage.refresh(st, NOW)
        traffic = st.all_usage()["a.test"]["trafficMB"]
        lines, _ = report.summarise(usage.rows(st), OWNERS, "month")
    november = [x for x in lines if x.period == usage.period_start(usage.utc_day(NOW), "month")]
    assert [(x.domain, x.bytes) for x in november] == [("a.test", 3 * usage.MB)] and traffic == 3.0


def test_the_default_span_starts_from_the_utc_day(state: Path) -> None:
    """23:30 at UTC-2 on 30 November is 1 December in UTC: 12 months back from there."""
    env = dict(os.environ, TENANTCTL_STATE_DIR=str(state), TENANTCTL_NOW="2026-11-30T23:30:00-02:00")
    done = subprocess.run([CLI, "report", "usage", "--period", "month", "-o", "json"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["since"] == "2025-12-01"
