"""Disruptive changes wait for the region's maintenance window (OPS-2, PLAT-4), through
the real CLI (drivers off: these are decisions and records, the PHP driver's pool move
is tested live elsewhere): a PHP version change of a running subscription is planned,
waits with the condition MaintenancePending naming when it will run, costs nothing while
it waits, and goes through inside the window; a first placement never waits; a region
without a window makes nothing wait."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli.conftest import Cli

DOCS = """\
apiVersion: tenantctl.io/v1
kind: Region
metadata: {name: eu-west}
spec:
  timezone: Europe/Paris
  maintenance: {window: "MON 22:00-23:00"}
---
apiVersion: tenantctl.io/v1
kind: Region
metadata: {name: us-east}
spec: {timezone: America/New_York}
---
apiVersion: tenantctl.io/v1
kind: Server
metadata: {name: web-1}
spec:
  region: eu-west
  provider: docker
  address: 127.0.250.1
  ips: [{address: 127.0.250.1, type: shared}]
  roles: [web]
  capacity: {sites: 10, diskMB: 10000}
  offers: {php: {versions: ["8.2", "8.3"], handlers: [fpm]}}
---
apiVersion: tenantctl.io/v1
kind: Server
metadata: {name: web-2}
spec:
  region: us-east
  provider: docker
  address: 127.0.250.2
  ips: [{address: 127.0.250.2, type: shared}]
  roles: [web]
  capacity: {sites: 10, diskMB: 10000}
  offers: {php: {versions: ["8.2", "8.3"], handlers: [fpm]}}
---
apiVersion: tenantctl.io/v1
kind: ServicePlan
metadata: {name: basic}
spec:
  hosting: {enabled: true, php: {handler: fpm, version: "8.2"}}
---
apiVersion: tenantctl.io/v1
kind: Customer
metadata: {name: acme}
spec: {email: ops@acme.example.org, state: active}
---
apiVersion: tenantctl.io/v1
kind: Subscription
metadata: {name: paris.example.org}
spec: {customer: acme, plan: basic, region: eu-west}
---
apiVersion: tenantctl.io/v1
kind: Subscription
metadata: {name: boston.example.org}
spec: {customer: acme, plan: basic, region: us-east}
"""

#: Monday 30 Nov 2026: Paris is UTC+1, the window is 21:00-22:00 UTC
NOON, IN_WINDOW, AFTER = "2026-11-30T12:00:00+00:00", "2026-11-30T21:30:00+00:00", "2026-11-30T22:30:00+00:00"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "all.yaml").write_text(DOCS)
    return Cli(tmp_path / "state", desired)


def at(cli: Cli, when: str) -> Cli:
    cli.env["TENANTCTL_NOW"] = when
    return cli


def php(item: dict[str, Any]) -> str:
    return str(item["effective"]["hosting"]["php"]["version"])


def pending(item: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in item["conditions"] if c["type"] == "MaintenancePending"), None)


def test_a_php_version_change_waits_for_the_window_then_runs_in_it(cli: Cli) -> None:
    at(cli, NOON).apply()
    assert {n: php(s) for n, s in cli.status().items()} == {"paris.example.org": "8.2", "boston.example.org": "8.2"}

    cli.edit("all.yaml", 'version: "8.2"', 'version: "8.3"')
    planned = cli.plan()
    assert php(planned["paris.example.org"]) == "8.2"  # waits
    cond = pending(planned["paris.example.org"])
    assert cond is not None and cond["status"] == "True", planned["paris.example.org"]["conditions"]
    assert "PHP 8.2 -> 8.3" in cond["message"] and "next at 2026-11-30T21:00Z" in cond["message"], cond
    assert php(planned["boston.example.org"]) == "8.3" and pending(planned["boston.example.org"]) is None
    table = cli("plan", "-f", str(cli.desired)).out
    assert "paris.example.org" in table and "1 waiting for a maintenance window" in table, table

    cli.apply()
    status = cli.status()
    assert php(status["paris.example.org"]) == "8.2" and pending(status["paris.example.org"]) is not None
    assert php(status["boston.example.org"]) == "8.3"
    # waiting costs nothing: a re-run has nothing to do
    assert cli("plan", "-f", str(cli.desired), "--detailed-exitcode", check=None).rc == 0

    at(cli, IN_WINDOW).apply()
    status = cli.status()
    assert php(status["paris.example.org"]) == "8.3" and pending(status["paris.example.org"]) is None

    # after the window nothing goes back
    assert at(cli, AFTER)("plan", "-f", str(cli.desired), "--detailed-exitcode", check=None).rc == 0
    assert php(cli.status()["paris.example.org"]) == "8.3"


def test_a_first_placement_never_waits(cli: Cli) -> None:
    cli.edit("all.yaml", 'version: "8.2"', 'version: "8.3"')
    at(cli, NOON).apply()
    status = cli.status()
    assert php(status["paris.example.org"]) == "8.3" and pending(status["paris.example.org"]) is None


def test_a_bad_window_is_a_load_error_naming_the_field(cli: Cli) -> None:
    cli.edit("all.yaml", "MON 22:00-23:00", "MON 23:00-22:00")
    res = at(cli, NOON)("validate", "-f", str(cli.desired), check=None)
    assert res.rc != 0
    assert "all.yaml:6: spec.maintenance.window: the window must end after it starts" in res.err, res.err


def test_apply_now_runs_the_change_outside_the_window_and_says_who(cli: Cli) -> None:
    at(cli, NOON).apply()
    cli.edit("all.yaml", 'version: "8.2"', 'version: "8.3"')
    dry = cli("apply", "-f", str(cli.desired), "--dry-run", "--now").out
    assert "paris.example.org" in dry and "update:php" in dry, dry
    res = cli("apply", "-f", str(cli.desired), "--now")
    assert "1 disruptive change(s) run outside the maintenance window" in res.err, res.err
    status = cli.status()
    assert php(status["paris.example.org"]) == "8.3" and pending(status["paris.example.org"]) is None
    events = cli("events", "-o", "json").json()
    override = [e for e in events if e["action"] == "maintenance-override"]
    assert len(override) == 1 and override[0]["subject"] == "paris.example.org", override
    assert override[0]["actor"].startswith("cli:"), override
    # stays applied once the override is over, window still closed
    assert cli("plan", "-f", str(cli.desired), "--detailed-exitcode", check=None).rc == 0
    assert cli("apply", "-f", str(cli.desired), "--now").err.count("disruptive") == 0


# --- emergency windows (OPS-2: 24 h notice) ----------------------------------------------

#: Tuesday 1 Dec 2026: the regular window (Monday) is a week away
TUESDAY = "2026-12-01T10:00:00+00:00"
EMERGENCY = "2026-12-02T12:00:00Z"  # 26 h later
IN_EMERGENCY, AFTER_EMERGENCY = "2026-12-02T12:30:00+00:00", "2026-12-02T13:30:00+00:00"


def announce(cli: Cli, start: str, *extra: str, check: int | None = 0) -> Any:
    return cli("maintenance", "announce", "-f", str(cli.desired), "eu-west", "--start", start,
               "--reason", "kernel upgrade", *extra, check=check)


def test_an_emergency_window_needs_24_h_notice_and_nothing_is_recorded_without_it(cli: Cli) -> None:
    at(cli, TUESDAY).apply()
    res = announce(cli, "2026-12-02T09:00:00Z", check=None)  # 23 h ahead
    assert res.rc == 2 and "needs 24 h notice (OPS-2)" in res.err and "earliest 2026-12-02T10:00" in res.err, res.err
    for bad, what in [("2026-12-02T12:00:00", "with its zone"), ("tomorrow", "ISO-8601")]:
        res = announce(cli, bad, check=None)
        assert res.rc == 2 and what in res.err, res.err
    res = announce(cli, EMERGENCY, "--duration", "13h", check=None)
    assert res.rc == 2 and "at most 12 h" in res.err, res.err
    res = cli("maintenance", "announce", "-f", str(cli.desired), "mars", "--start", EMERGENCY, "--reason", "x",
              check=None)
    assert res.rc == 2 and "unknown region 'mars'" in res.err, res.err
    assert cli("maintenance", "list", "-o", "json").json() == {"emergencyWindows": []}
    assert not [e for e in cli("events", "-o", "json").json() if e["action"].startswith("maintenance")]


def test_a_change_waits_for_an_announced_emergency_window_and_runs_in_it(cli: Cli) -> None:
    at(cli, TUESDAY).apply()
    cli.edit("all.yaml", 'version: "8.2"', 'version: "8.3"')
    cli.apply()
    cond = pending(cli.status()["paris.example.org"])
    assert cond is not None and "next at 2026-12-07T21:00Z" in cond["message"], cond  # next Monday

    out = announce(cli, EMERGENCY, "--duration", "90m").out
    assert "emergency maintenance of eu-west announced: 2026-12-02T12:00Z to 2026-12-02T13:30Z" in out, out
    listed = cli("maintenance", "list", "-o", "json").json()["emergencyWindows"]
    assert [(w["region"], w["start"], w["end"], w["reason"]) for w in listed] == [
        ("eu-west", "2026-12-02T12:00:00+00:00", "2026-12-02T13:30:00+00:00", "kernel upgrade")]
    assert listed[0]["actor"].startswith("cli:")
    status_table = cli("status").out
    assert "emergency maintenance: eu-west 2026-12-02T12:00Z to 2026-12-02T13:30Z" in status_table, status_table
    announced = [e for e in cli("events", "-o", "json").json() if e["action"] == "maintenance-announced"]
    assert len(announced) == 1 and "kernel upgrade" in announced[0]["message"], announced

    cli.apply()  # still waiting, now for the emergency window, which says so
    status = cli.status()
    cond = pending(status["paris.example.org"])
    assert php(status["paris.example.org"]) == "8.2" and cond is not None, status["paris.example.org"]
    assert "emergency maintenance window announced for 2026-12-02T12:00Z" in cond["message"], cond

    at(cli, IN_EMERGENCY).apply()
    status = cli.status()
    assert php(status["paris.example.org"]) == "8.3" and pending(status["paris.example.org"]) is None
    # once it is over, nothing goes back and it is no longer listed
    assert at(cli, AFTER_EMERGENCY)("plan", "-f", str(cli.desired), "--detailed-exitcode", check=None).rc == 0
    assert cli("maintenance", "list", "-o", "json").json() == {"emergencyWindows": []}


def test_a_cancelled_emergency_window_opens_nothing(cli: Cli) -> None:
    at(cli, TUESDAY).apply()
    cli.edit("all.yaml", 'version: "8.2"', 'version: "8.3"')
    announce(cli, EMERGENCY)
    cli("maintenance", "cancel", "eu-west", "--start", EMERGENCY)
    assert cli("maintenance", "cancel", "eu-west", "--start", EMERGENCY, check=None).rc == 2
    at(cli, IN_EMERGENCY).apply()
    assert php(cli.status()["paris.example.org"]) == "8.2"
    actions = sorted(e["action"] for e in cli("events", "-o", "json").json() if e["action"].startswith("maintenance-"))
    assert actions == ["maintenance-announced", "maintenance-cancelled"], actions


def test_an_address_change_waits_for_the_window_then_runs_in_it(cli: Cli) -> None:
    cli.edit("all.yaml", "ips: [{address: 127.0.250.1, type: shared}]",
             "ips: [{address: 127.0.250.1, type: shared}, {address: 127.0.250.3, type: shared}]")
    cli.edit("all.yaml", "spec: {customer: acme, plan: basic, region: eu-west}",
             "spec: {customer: acme, plan: basic, region: eu-west, ip: 127.0.250.1}")
    at(cli, NOON).apply()
    assert cli.status()["paris.example.org"]["ip"] == "127.0.250.1"

    cli.edit("all.yaml", "region: eu-west, ip: 127.0.250.1}", "region: eu-west, ip: 127.0.250.3}")
    cli.apply()
    paris = cli.status()["paris.example.org"]
    cond = pending(paris)
    assert paris["ip"] == "127.0.250.1" and cond is not None, paris["conditions"]
    assert "address 127.0.250.1 -> 127.0.250.3" in cond["message"] and "next at 2026-11-30T21:00Z" in cond["message"]
    assert cli("plan", "-f", str(cli.desired), "--detailed-exitcode", check=None).rc == 0  # waiting costs nothing

    at(cli, IN_WINDOW).apply()
    paris = cli.status()["paris.example.org"]
    assert paris["ip"] == "127.0.250.3" and pending(paris) is None
