"""``tenantctl apply --force [SUB]...`` (issue 15): what an upgrade triggers, every
concern handed to the drivers again; with nothing to change it writes nothing but the
run, and says how many it re-checked."""

from __future__ import annotations

import sqlite3

from .conftest import Cli

HANGAR = "hangar.example.com"


QUERIES = {t: f"SELECT * FROM {t} ORDER BY 1" for t in ("events", "conditions", "fingerprints", "subscriptions")}


def rows(cli: Cli, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(cli.state / "state.db") as db:
        return list(db.execute(QUERIES[table]))


def test_a_forced_apply_of_unchanged_subscriptions_rechecks_them_and_writes_nothing(cli: Cli) -> None:
    cli.apply()
    before = {t: rows(cli, t) for t in ("events", "conditions", "fingerprints")}
    status = cli("status", "-o", "json").out
    res = cli("apply", "--force", "-f", str(cli.desired))
    subs = len(cli.status())
    assert f"apply: 0 changed, {subs} re-checked, 0 failed" in res.out, res.out
    assert {t: rows(cli, t) for t in before} == before
    assert cli("status", "-o", "json").out == status


def test_force_takes_the_subscriptions_named(cli: Cli) -> None:
    cli.apply()
    res = cli("apply", "--force", "-f", str(cli.desired), HANGAR)
    assert "apply: 0 changed, 1 re-checked, 0 failed" in res.out, res.out


def test_an_unknown_name_is_refused_before_anything_is_done(cli: Cli) -> None:
    res = cli("apply", "--force", "-f", str(cli.desired), "nosuch.example.org", check=2)
    assert "no such subscription in the desired state: nosuch.example.org" in res.err
    assert not (cli.state / "state.db").exists() or rows(cli, "subscriptions") == []


def test_names_without_force_or_retry_now_are_refused(cli: Cli) -> None:
    res = cli("apply", "-f", str(cli.desired), HANGAR, check=2)
    assert "go with --retry-now or --force" in res.err


def test_a_dry_run_shows_what_force_would_hand_over_and_changes_nothing(cli: Cli) -> None:
    cli.apply()
    before = rows(cli, "events")
    res = cli("apply", "--dry-run", "--force", "-f", str(cli.desired), HANGAR)
    line = next(ln for ln in res.out.splitlines() if HANGAR in ln)
    assert "force:web" in line, res.out
    assert not any("force:" in ln for ln in res.out.splitlines() if HANGAR not in ln), res.out
    assert rows(cli, "events") == before
