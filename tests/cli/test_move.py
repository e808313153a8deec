"""``tenantctl move SUB --to SERVER`` (issue 13 item 2) through the real CLI: every check
that refuses a move exits 2 with one clear line and changes nothing in the state store;
a changed ``spec.server`` of a placed subscription is a pending move, not an empty
re-placement. (The moves themselves: tests/reconcile/test_move.py, tests/trixie.)"""

from __future__ import annotations

import sqlite3

import pytest

from .conftest import Cli

SAINT_EX = "saint-ex.example.net"
HANGAR = "hangar.example.com"


def _snapshot(cli: Cli) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(cli.state / "state.db") as db:
        return {t: list(db.execute(f"SELECT * FROM {t} ORDER BY 1"))
                for t in ("events", "subscriptions", "subscription_moves", "subscription_generations")}


@pytest.mark.parametrize(("args", "error"), [
    pytest.param(["nobody.example.org", "--to", "eu-west-2"], "unknown subscription 'nobody.example.org'",
                 id="unknown-subscription"),
    pytest.param([SAINT_EX, "--to", "eu-west-9"], "unknown server 'eu-west-9' (servers: ap-southeast-1,",
                 id="unknown-server"),
    pytest.param([SAINT_EX, "--to", "ap-southeast-1"], "ap-southeast-1 has no web role", id="no-web-role"),
    pytest.param([SAINT_EX, "--to", "us-east-1"], f"{SAINT_EX} is on us-east-1 already", id="same-server"),
    pytest.param(["vol-de-nuit.example.org", "--to", "eu-west-2"],
                 "eu-west-2 cannot provide what vol-de-nuit.example.org needs (SYNC-3): hosting.php.version: "
                 "plan 8.4, available 8.2", id="php-84-on-a-82-server"),
    pytest.param([SAINT_EX, "--to", "eu-west-2"], "drivers are off (TENANTCTL_DRIVERS=none)", id="drivers-off"),
])
def test_a_move_that_cannot_start_exits_2_and_changes_nothing(cli: Cli, args: list[str], error: str) -> None:
    cli.apply()
    before = _snapshot(cli)
    res = cli("move", "-f", str(cli.desired), *args, check=2)
    assert error in res.err, res.err
    assert _snapshot(cli) == before


def test_spec_server_pinning_another_server_is_refused(cli: Cli) -> None:
    cli.apply()
    assert cli.status()[HANGAR]["server"] == "eu-west-2"
    cli.edit("subscriptions.yaml", "metadata: {name: hangar.example.com}\nspec:\n",
             "metadata: {name: hangar.example.com}\nspec:\n  server: eu-west-2\n")
    before = _snapshot(cli)
    res = cli("move", "-f", str(cli.desired), HANGAR, "--to", "eu-west-1", check=2)
    assert f"spec.server pins {HANGAR} to eu-west-2: edit spec.server instead" in res.err
    assert _snapshot(cli) == before


def test_a_changed_spec_server_is_a_pending_move_not_an_empty_re_placement(cli: Cli) -> None:
    cli.apply()
    assert cli.status()[HANGAR]["server"] == "eu-west-2"
    cli.edit("subscriptions.yaml", "metadata: {name: hangar.example.com}\nspec:\n",
             "metadata: {name: hangar.example.com}\nspec:\n  server: eu-west-1\n")
    planned = cli.plan()[HANGAR]
    assert planned["server"] == "eu-west-2"
    cli.apply(check=None)
    item = cli.status()[HANGAR]
    assert item["server"] == "eu-west-2" and item["sync"] == "unsynced"
    assert {"property": "server", "availableValue": None,
            "planValue": f"eu-west-1: a pending move (run `tenantctl move {HANGAR} --to eu-west-1`)"} in item["conflicts"]


def test_a_move_outside_the_window_is_scheduled_shown_and_can_be_aborted(cli: Cli) -> None:
    """OPS-2: a move freezes the site's databases until its switch, so outside the windows
    of its regions it is recorded ``scheduled`` (nothing else changes), shown in status
    with the time it will run; --now overrides (here the drivers are off, so it is refused
    next, nothing changed); --abort drops it, and a second --abort says it was aborted."""
    cli.env["TENANTCTL_NOW"] = "2026-12-01T10:00:00+00:00"  # a Tuesday
    cli.apply()
    cli.edit("regions-servers.yaml", "  timezone: Europe/Paris\n",
             '  timezone: Europe/Paris\n  maintenance: {window: "MON 22:00-23:00"}\n')
    before = _snapshot(cli)
    res = cli("move", "-f", str(cli.desired), SAINT_EX, "--to", "eu-west-2")
    waits = ("eu-west: the maintenance window (MON 22:00-23:00, every week, Europe/Paris): next at "
             "2026-12-07T21:00Z")
    assert f"{SAINT_EX}: us-east-1 -> eu-west-2: scheduled, waits for {waits} (OPS-2)" in res.out, res.out
    scheduled = _snapshot(cli)
    assert [r[:4] for r in scheduled["subscription_moves"]] == [(SAINT_EX, "us-east-1", "eu-west-2", "scheduled")]
    assert {t: v for t, v in scheduled.items() if t not in ("events", "subscription_moves")} == {
        t: v for t, v in before.items() if t not in ("events", "subscription_moves")}
    item = cli.status()[SAINT_EX]
    moving = next(c for c in item["conditions"] if c["type"] == "Moving")
    assert moving["reason"] == "scheduled" and item["move"]["step"] == "scheduled", moving
    assert item["server"] == "us-east-1"
    again = cli("move", "-f", str(cli.desired), SAINT_EX, "--to", "eu-west-2", "-o", "json").json()
    assert again["step"] == "scheduled" and again["waitsFor"] == waits
    assert _snapshot(cli)["subscription_moves"] == scheduled["subscription_moves"]
    res = cli("move", "-f", str(cli.desired), SAINT_EX, "--to", "eu-west-2", "--now", check=2)
    assert "drivers are off" in res.err, res.err
    cli.env["TENANTCTL_NOW"] = "2026-12-07T21:30:00+00:00"  # inside the window: only the drivers stop it
    res = cli("move", "-f", str(cli.desired), SAINT_EX, "--to", "eu-west-2", check=2)
    assert "drivers are off" in res.err, res.err
    assert _snapshot(cli)["subscription_moves"] == scheduled["subscription_moves"]
    res = cli("move", "-f", str(cli.desired), SAINT_EX, "--abort")
    assert f"{SAINT_EX}: move us-east-1 -> eu-west-2: aborted" in res.out, res.out
    aborted = _snapshot(cli)
    assert aborted["subscription_moves"] == []
    assert {t: v for t, v in aborted.items() if t != "events"} == {t: v for t, v in before.items() if t != "events"}
    assert cli("move", "-f", str(cli.desired), SAINT_EX, "--abort", "-o", "json").json()["step"] == "aborted"
    assert _snapshot(cli) == aborted
    res = cli("move", "-f", str(cli.desired), HANGAR, "--abort", check=2)
    assert f"{HANGAR} has no move in progress: nothing to abort" in res.err, res.err


def test_a_move_needs_to_or_abort(cli: Cli) -> None:
    cli.apply()
    res = cli("move", "-f", str(cli.desired), SAINT_EX, check=2)
    assert "--to SERVER is needed (or --abort)" in res.err, res.err
