"""`tenantctl state backup|restore`, `tenantctl events`, and what every command says
about an unusable state store: one line, exit 2, no traceback, no file created
(issue 7 points 6 and 7). Planning mode (TENANTCTL_DRIVERS=none): no servers."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.state import migrations, store

from .conftest import ROOT, Cli, Result

SIDE = ("state.db-wal", "state.db-shm", "state.db-journal")


def state(cli: Cli, *args: str, check: int | None = 0) -> Result:
    """``tenantctl state ...``"""
    return cli("state", *args, check=check)


@pytest.fixture(scope="module")
def applied_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One apply of examples/, copied for each test (an apply costs seconds)."""
    root = tmp_path_factory.mktemp("applied")
    desired = root / "desired"
    shutil.copytree(ROOT / "examples", desired)
    Cli(root / "state", desired).apply()
    return root


@pytest.fixture
def applied(cli: Cli, applied_once: Path) -> Cli:
    shutil.copytree(applied_once / "state", cli.state, dirs_exist_ok=True)
    return cli


def one_line_error(res: Result, *needles: str) -> str:
    assert res.rc == 2, (res.rc, res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err and "Traceback" not in res.out
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def truncate_half(db: Path) -> None:
    os.truncate(db, os.path.getsize(db) // 2)


def text_file(db: Path) -> None:
    db.write_text("hello, I am not a database\n" * 50)


def foreign(db: Path) -> None:
    db.unlink()
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE wp_posts (id INTEGER PRIMARY KEY); PRAGMA user_version = 7;")
    conn.close()


def newer(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {migrations.latest() + 1}")
    conn.close()


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        pytest.param(truncate_half, "truncated state store", id="truncated"),
        pytest.param(text_file, "not an SQLite database", id="text-file"),
        pytest.param(foreign, "another application", id="foreign-db"),
        pytest.param(newer, "is newer than this tenantctl supports", id="newer-schema"),
    ],
)
def test_status_on_an_unusable_store_is_one_line_and_exit_2(applied: Cli, damage: object, says: str) -> None:
    db = applied.state / "state.db"
    damage(db)  # type: ignore[operator]
    before = db.read_bytes()
    line = one_line_error(applied("status", check=None), str(db), says)
    assert "tenantctl state restore" in line or "TENANTCTL_STATE_DIR" in line or "upgrade" in line
    assert not any((applied.state / s).exists() for s in SIDE), "a read-only command created -wal/-shm"
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("events",), id="events"),
        pytest.param(("events", "--runs"), id="events-runs"),
        pytest.param(("effective", "shop.example.com"), id="effective"),
        pytest.param(("apply", "-f", "{desired}"), id="apply"),
    ],
)
def test_other_commands_on_a_truncated_store(applied: Cli, args: tuple[str, ...]) -> None:
    db = applied.state / "state.db"
    truncate_half(db)
    before = db.read_bytes()
    res = applied(*(a.format(desired=applied.desired) for a in args), check=None)
    one_line_error(res, str(db), "truncated state store")
    assert db.read_bytes() == before
    assert not any((applied.state / s).exists() for s in SIDE)


def test_read_only_commands_create_no_files(applied: Cli) -> None:
    before = sorted(p.name for p in applied.state.iterdir())
    assert not any(s in before for s in SIDE)
    applied("status")
    applied("events", "-o", "json")
    applied("plan", "-f", str(applied.desired))
    assert sorted(p.name for p in applied.state.iterdir()) == before


class TestEvents:
    def test_json_fields_and_filters(self, applied: Cli) -> None:
        evs = applied("events", "-o", "json", "--limit", "1000").json()
        assert evs and all(set(e) == {"at", "actor", "action", "subject", "concern", "run", "message", "data"}
                           for e in evs)
        subject = evs[0]["subject"]
        mine = applied("events", "-o", "json", "--subscription", subject).json()
        assert mine and {e["subject"] for e in mine} == {subject}
        assert applied("events", "-o", "json", "--subject", subject).json() == mine
        action = evs[0]["action"]
        assert {e["action"] for e in applied("events", "-o", "json", "--action", action).json()} == {action}
        assert applied("events", "-o", "json", "--concern", "no-such-concern").json() == []
        assert len(applied("events", "-o", "json", "--limit", "2").json()) == 2

    def test_since_a_duration_or_a_time(self, applied: Cli) -> None:
        everything = applied("events", "-o", "json", "--limit", "1000").json()
        assert applied("events", "-o", "json", "--limit", "1000", "--since", "1h").json() == everything
        assert applied("events", "-o", "json", "--since", "2026-11-22T12:00:01").json() == []  # TENANTCTL_NOW + 1 s
        one_line_error(applied("events", "--since", "yesterday-ish", check=None), "--since expects")

    def test_runs_show_an_unfinished_one(self, applied: Cli) -> None:
        with store.Store(applied.state / "state.db") as st:
            st.begin_run("operator", "apply")  # as a killed apply leaves it
        runs = applied("events", "--runs", "-o", "json").json()
        assert [r["unfinished"] for r in runs] == [False, True]
        assert set(runs[0]) == {"run", "actor", "command", "startedAt", "finishedAt", "unfinished", "summary"}
        assert runs[0]["command"] == "apply" and runs[0]["finishedAt"] is not None
        table = applied("events", "--runs").out.splitlines()
        assert len(table) == 2 and "unfinished" in table[1] and "unfinished" not in table[0]

    def test_no_store_yet(self, cli: Cli) -> None:
        assert cli("events", "-o", "json").json() == []
        assert not cli.state.exists() or not (cli.state / "state.db").exists()


HOLDER = textwrap.dedent(
    """
    import sys, pathlib
    from controller.state import store
    with store.Store(pathlib.Path(sys.argv[1])) as st:
        print("open", flush=True)
        sys.stdin.readline()
    """
)


class TestBackupRestore:
    def test_backup_to_the_default_folder(self, applied: Cli) -> None:
        res = state(applied, "backup")
        [copy] = (applied.state / "backups").iterdir()
        assert copy.name == "state-20261122T120000Z.db" and str(copy) in res.out
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        assert "subscriptions" in res.out and "events" in res.out
        assert not any((applied.state / s).exists() for s in SIDE)

    def test_backup_then_restore(self, applied: Cli, tmp_path: Path) -> None:
        copy = tmp_path / "copy.db"
        state(applied, "backup", "--to", str(copy))
        before = {s["name"] for s in applied.status().values() if s["state"] != "deleted"}
        (applied.desired / "subscriptions.yaml").write_text("")  # everything goes
        applied("apply", "-f", str(applied.desired), "--allow-mass-delete")
        assert {s["state"] for s in applied.status().values()} == {"deleted"}
        res = state(applied, "restore", str(copy))
        assert f"{len(before)} subscriptions" in res.out and "events" in res.out
        kept = list(applied.state.glob("state.db.before-restore-*"))
        assert len(kept) == 1 and str(kept[0]) in res.out
        assert {s["name"] for s in applied.status().values() if s["state"] != "deleted"} == before

    def test_restore_is_refused_while_a_controller_holds_the_store(self, applied: Cli, tmp_path: Path) -> None:
        copy = tmp_path / "copy.db"
        state(applied, "backup", "--to", str(copy))
        db = applied.state / "state.db"
        with subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) as holder:
            assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
            one_line_error(state(applied, "restore", str(copy), check=None), "another process holds the state store")
            assert holder.stdin is not None
            holder.stdin.write(b"\n")
            holder.stdin.flush()
            assert holder.wait(30) == 0
        assert not list(applied.state.glob("state.db.before-restore-*"))

    def test_restore_refuses_a_file_that_is_not_a_store(self, applied: Cli, tmp_path: Path) -> None:
        bad = tmp_path / "bad.db"
        bad.write_text("nope")
        one_line_error(state(applied, "restore", str(bad), check=None), str(bad), "not a tenantctl state store")
        one_line_error(state(applied, "restore", str(tmp_path / "missing.db"), check=None), "no such file")
