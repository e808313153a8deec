"""Issue 15, output at scale, through the real CLI: tables that fit the terminal, only the
rows worth a look unless ``--all``, a summary line, filters, ``-o json`` streamed row by
row and equal to what the planner computes."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from controller import errors
from controller.cli import output
from controller.reconcile import engine
from controller.reconcile import status as status_mod
from controller.state import store as state_store

from .conftest import NOW, Cli

LABELS = {"mermoz.example.org": "tier: gold, team: blue", "shop.example.com": "tier: silver, team: blue"}


def _label(cli: Cli) -> None:
    """metadata.labels on two subscriptions of the examples."""
    for name, labels in LABELS.items():
        cli.edit("subscriptions.yaml", f"metadata: {{name: {name}}}", f"metadata: {{name: {name}, labels: {{{labels}}}}}")


def _table_names(text: str) -> list[str]:
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
    end = next(i for i, line in enumerate(lines) if " subscriptions; " in line)
    return [line.split()[0] for line in lines[header + 1:end]]


def test_tables_fit_columns_and_show_only_rows_worth_a_look(cli: Cli) -> None:
    cli.apply()
    status = cli.status()
    worth = sorted(n for n, it in status.items() if output.notable(it))
    assert 0 < len(worth) < len(status), "the examples have synced and unsynced subscriptions"
    cli.env["COLUMNS"] = "100"
    for cmd in (["status"], ["plan", "-f", str(cli.desired)]):
        table = cli(*cmd).out
        assert max(len(line) for line in table.splitlines()) <= 100, table
        assert _table_names(table) == worth
        summary = table[table.index(f"{len(status)} subscriptions; "):]
        assert f"{len(worth)} shown (--all for every row)" in summary.replace("\n", " ")
        every = cli(*cmd, "--all").out
        assert _table_names(every) == sorted(status)
        header = next(line for line in table.splitlines() if line.startswith("NAME"))
        assert header.split()[:7] == ["NAME", "SERVER", "STATE", "SYNC", "READY", "CONFLICTS", "AGE"]
        wide = next(line for line in cli(*cmd, "-o", "wide").out.splitlines() if line.startswith("NAME"))
        assert {"CUSTOMER", "PLAN", "IP"} <= set(wide.split())
    cli.env["COLUMNS"] = "60"
    narrow = cli("status", "--all", "-o", "wide").out
    assert "..." in narrow  # the free-text columns are cut, the names, servers and IPs are whole
    assert all(f"{n} " in narrow and f" {s['server']} " in narrow and f" {s['ip']} " in narrow
               for n, s in status.items() if s.get("ip"))


def test_ready_and_age_columns(cli: Cli) -> None:
    cli.apply()
    row = next(line for line in cli("status", "--all").out.splitlines() if line.startswith("mermoz.example.org"))
    assert "0/6" in row.split()  # drivers off: no concern provisioned of six
    cli.env["TENANTCTL_NOW"] = (dt.datetime.fromisoformat(NOW) + dt.timedelta(days=3)).isoformat()
    row = next(line for line in cli("status", "--all").out.splitlines() if line.startswith("mermoz.example.org"))
    assert row.split()[6] == "3d"


def test_filters_customer_server_selector(cli: Cli) -> None:
    _label(cli)
    cli.apply()
    status = cli.status()
    one = status["mermoz.example.org"]
    by_customer = cli("status", "-o", "json", "--customer", one["customer"]).json()["subscriptions"]
    assert {s["name"] for s in by_customer} == {n for n, s in status.items() if s["customer"] == one["customer"]}
    by_server = cli("plan", "-f", str(cli.desired), "-o", "json", "--server", one["server"]).json()["subscriptions"]
    assert {s["name"] for s in by_server} == {n for n, s in status.items() if s["server"] == one["server"]}
    for sel, want in [("team=blue", set(LABELS)), ("tier!=gold,team=blue", {"shop.example.com"}),
                      ("tier in (gold, bronze)", {"mermoz.example.org"}), ("!tier", set(status) - set(LABELS))]:
        got = cli("plan", "-f", str(cli.desired), "-o", "json", "--selector", sel).json()["subscriptions"]
        assert {s["name"] for s in got} == want, sel
        got = cli("status", "-f", str(cli.desired), "-o", "json", "-l", sel).json()["subscriptions"]
        assert {s["name"] for s in got} == want, sel
    res = cli("status", "--selector", "team=blue", check=2)
    assert "needs the desired state" in res.err and "Traceback" not in res.err
    res = cli("plan", "-f", str(cli.desired), "--selector", "team=(", check=1)
    assert "--selector: cannot parse" in res.err


@pytest.mark.parametrize("text,labels,want", [
    pytest.param("a=b", {"a": "b"}, True, id="equals"),
    pytest.param("a==b", {"a": "c"}, False, id="double-equals"),
    pytest.param("a!=b", {}, True, id="not-equals-absent"),
    pytest.param("a,!c", {"a": "x"}, True, id="exists-and-absent"),
    pytest.param("a notin (x, y)", {"a": "x"}, False, id="notin"),
    pytest.param("app.kubernetes.io/part-of=shop,a in (x,y)", {"app.kubernetes.io/part-of": "shop", "a": "y"}, True,
                 id="prefixed-key-and-set"),
])
def test_selector_syntax(text: str, labels: dict[str, str], want: bool) -> None:
    assert output.parse_selector(text)(labels) is want


@pytest.mark.parametrize("text", [pytest.param(t, id=t or "empty") for t in ("", "a=b,,c", "a in b", "=b", "a=b=c")])
def test_selector_errors(text: str) -> None:
    with pytest.raises(errors.TenantctlError, match="--selector"):
        output.parse_selector(text)


def test_plan_json_rows_equal_the_planner_items(cli: Cli) -> None:
    """Unchanged subscriptions' rows come from the store as SQLite rewrites them, the
    others from the planner: both must be exactly what the planner computes."""
    cli.apply()
    cli.edit("plans.yaml", "memory_limit: 128M", "memory_limit: 192M")  # some recomputed, some not
    rows = {r["name"]: r for r in cli.plan().values()}
    from controller.model import load_desired

    ds = load_desired([cli.desired])
    with state_store.Store.open_readonly(cli.state / "state.db") as st:
        planned = engine.plan(ds, dt.datetime.fromisoformat(NOW), st)
    assert planned.unchanged and len(planned.unchanged) < len(rows)
    for name in planned.subscriptions:
        want = json.loads(json.dumps({**planned.subscriptions[name].item, "actions": planned.actions[name]},
                                     default=str))
        assert rows[name] == want, name


def test_status_reads_agree(cli: Cli) -> None:
    """``rows`` (SQLite extracts) and ``stream`` (one at a time) say what ``items`` says."""
    cli.apply()
    with sqlite3.connect(cli.state / "state.db") as db:  # one deleted subscription too
        db.execute("UPDATE subscriptions SET deleted_at = '2026-11-20T00:00:00.000000Z', "
                   "purge_after = '2027-01-19T00:00:00.000000Z' WHERE name = 'shop.example.com'")
        db.execute("DELETE FROM status WHERE name = 'shop.example.com'")
    with state_store.Store.open_readonly(cli.state / "state.db") as st:
        items = status_mod.items(st)
        assert list(status_mod.stream(st)) == items
        rows = status_mod.rows(st)
    assert [r["name"] for r in rows] == [i["name"] for i in items]
    for row, item in zip(rows, items, strict=True):
        assert {k: v for k, v in row.items() if k != "createdAt"} == {k: item[k] for k in row if k != "createdAt"}
        assert isinstance(row["createdAt"], dt.datetime)
    assert cli("status", "-o", "json").json()["subscriptions"] == json.loads(json.dumps(items, default=str))


def test_help_lists_each_command_once() -> None:
    import subprocess

    from .conftest import CLI

    out = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True,
                         env={"COLUMNS": "120", "PATH": str(Path(CLI).parent)}).stdout
    assert "events-" not in out
    assert sum(1 for line in out.splitlines() if line.strip("│ ").startswith("events ")) == 1


LIGHT_PROBE = ("import sys\n"
               "from controller.cli import main\n"
               "sys.argv = ['tenantctl', *sys.argv[1:]]\n"
               "try:\n"
               "    main.main()\n"
               "except SystemExit as exc:\n"
               "    code = exc.code\n"
               "else:\n"
               "    code = 0\n"
               "print('commands imported:', 'controller.cli.commands' in sys.modules, 'exit:', code)\n")


@pytest.mark.parametrize(("args", "light"), [
    pytest.param(["validate", "-f", "{desired}"], True, id="validate"),
    pytest.param(["validate", "-f", "{desired}/nothing.yaml"], True, id="validate-missing-file"),
    pytest.param(["plan", "-f", "{desired}", "-o", "json"], False, id="plan"),
    pytest.param(["--help"], False, id="help"),
])
def test_validate_runs_without_the_other_command_groups(cli: Cli, args: list[str], light: bool) -> None:
    """``tenantctl validate`` starts with ``common``'s app alone (issue 15: a cold
    validate is measured against a bare parse); its output and exit are those of the
    full app, and every other command line registers every group."""
    import subprocess
    import sys

    from controller.cli import main

    argv = [a.format(desired=cli.desired) for a in args]
    probe = subprocess.run([sys.executable, "-c", LIGHT_PROBE, *argv], capture_output=True, text=True,
                           env=cli.env, timeout=120)
    assert f"commands imported: {not light}" in probe.stdout, probe.stderr
    full = cli(*argv, check=None)
    out, _, tail = probe.stdout.rpartition("commands imported:")
    assert (out, tail.split()[-1]) == (full.out, str(full.rc))
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in main.app.registered_commands}
    assert {"validate", "plan", "apply", "status"} <= names
