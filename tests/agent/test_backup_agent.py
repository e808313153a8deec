"""The ``backup`` agent entry run on this host against real restic repositories (local
paths, and a real ``rclone serve restic --append-only`` over TLS on 127.0.0.1), with
FAKE database tools (tests/agent/backup_fakes.py) that inject dump failures. Owner-side
ops run restic as the test itself (``restic.OWNER_USER = ""``): ``runuser`` to
tenantctl-backup needs that user, which servers have and this host does not."""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import hashlib
import http.client
import json
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.agent import backupjobs, bundle, dumpstats, jobs, lock, main, restic
from controller.drivers import transport
from controller.drivers.backup import agent

from . import backup_fakes
from .conftest import stage_job

PW = "repo-secret"


@dataclass
class Env:
    tmp: Path
    stage: Path
    db: Path  # the fake database tools' state

    def repo(self, name: str = "repo", *, owner: bool = False) -> backupjobs.Repo:
        return backupjobs.Repo("region-a", str(self.tmp / name), PW, owner)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    backup_fakes.fake_tools(tmp_path / "bin", tmp_path / "db")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DB_DIR", str(tmp_path / "db"))
    monkeypatch.setattr(restic, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(restic, "OWNER_USER", "")
    monkeypatch.setattr(agent, "DRILL_ROOT", str(tmp_path / "drill"))
    (tmp_path / "stage").mkdir(mode=0o700)
    return Env(tmp_path, tmp_path / "stage", tmp_path / "db")


def run(op: jobs.Op, env: Env, **kw: object) -> backupjobs.BackupOutcome:
    out = agent.handle(jobs.Job(jobs.VERSION, op, backup=backupjobs.BackupJob(**kw)), str(env.stage))  # type: ignore[arg-type]
    assert out.backup is not None
    return out.backup


def listed(repo: Path) -> list[dict[str, Any]]:
    """The repository's snapshots, read with the restic client directly."""
    proc = subprocess.run(["restic", "-r", str(repo), "--no-cache", "-q", "snapshots", "--json"], input=f"{PW}\n",
                          capture_output=True, text=True, check=True)
    docs: list[dict[str, Any]] = json.loads(proc.stdout)
    return docs


def db(name: str) -> backupjobs.Part:
    return backupjobs.Part("db", name, engine="mariadb")


def table_sum(rows: list[bytes]) -> backupjobs.TableSum:
    total = sum(int.from_bytes(hashlib.sha256(r).digest(), "big") for r in rows) % (1 << 256)
    return backupjobs.TableSum(len(rows), f"{total:064x}")


SHOP = {"empty": backupjobs.TableSum(0, f"{0:064x}"), "orders": table_sum(backup_fakes.ROWS)}


# --- dump statistics ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [pytest.param(1, id="byte-by-byte"), pytest.param(7, id="7-byte-chunks"),
                                  pytest.param(1 << 20, id="one-chunk")])
def test_table_sums_of_a_known_dump_whatever_the_chunking(size: int) -> None:
    stats = dumpstats.DumpStats()
    for i in range(0, len(backup_fakes.DUMP), size):
        stats.feed(backup_fakes.DUMP[i:i + size])
    assert stats.tables == SHOP and stats.complete and stats.size == len(backup_fakes.DUMP)


def test_table_sums_ignore_row_order_but_not_changed_rows() -> None:
    def sums(rows: list[bytes]) -> dict[str, backupjobs.TableSum]:
        stats = dumpstats.DumpStats()
        stats.feed(backup_fakes.HEAD + b"\n".join(rows) + b"\n" + backup_fakes.TAIL)
        return stats.tables
    rows = backup_fakes.ROWS
    assert sums(rows[::-1]) == SHOP
    assert sums([*rows[:2], rows[2].replace(b"fig", b"fog")])["orders"] != SHOP["orders"]
    assert sums([*rows, rows[0]])["orders"].rows == 4


def test_postgresql_copy_blocks_count_per_table() -> None:
    stats = dumpstats.DumpStats()
    stats.feed(b"CREATE TABLE public.t (\n    id integer\n);\nCREATE TABLE public.e (\n    id integer\n);\n"
               b"COPY public.t (id, v) FROM stdin;\n1\ta\n2\tb\n\\.\n\n-- PostgreSQL database dump complete\n\n")
    assert stats.tables == {"public.e": backupjobs.TableSum(0, f"{0:064x}"),
                            "public.t": table_sum([b"1\ta", b"2\tb"])} and stats.complete
    restricted = dumpstats.DumpStats()  # pg_dump 15.14+
    restricted.feed(b"\\restrict K1\nSET x = 1;\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict K1\n\n")
    assert restricted.complete


@pytest.mark.parametrize("text", [
    pytest.param(b"COPY public.t (id) FROM stdin;\n1\n", id="cut-in-a-copy-block"),
    pytest.param(b"COPY public.t (v) FROM stdin;\n-- PostgreSQL database dump complete\n", id="marker-as-row-data"),
    pytest.param(b"-- Dump completed on 2026-11-30\nINSERT INTO `t` VALUES (1);\n", id="more-after-the-marker"),
    pytest.param(b"", id="empty"),
])
def test_a_dump_without_a_final_marker_is_not_complete(text: bytes) -> None:
    stats = dumpstats.DumpStats()
    stats.feed(text)
    assert not stats.complete


# --- backup ------------------------------------------------------------------------------------


def test_a_failed_killed_or_cut_dump_leaves_no_snapshot_and_the_other_units_succeed(env: Env) -> None:
    (env.stage / "settings-a").write_bytes(b'{"plan": "s"}')
    out = run("backup", env, host="web-1", time="2026-11-30 02:00:00", local=env.repo(), concurrency=2, units=[
        backupjobs.Unit("a.example", [db("shop"), backupjobs.Part("settings", "settings", path="settings-a")]),
        backupjobs.Unit("b.example", [db("broken")]),
        backupjobs.Unit("c.example", [db("killed")]),
        backupjobs.Unit("d.example", [db("cut")])])
    got = {p.subscription + "/" + p.kind: p for p in out.parts}
    assert got["a.example/db"].ok and got["a.example/db"].tables == SHOP
    assert got["a.example/db"].total == len(backup_fakes.DUMP) and got["a.example/db"].added > 0
    assert got["a.example/settings"].digest == hashlib.sha256(b'{"plan": "s"}').hexdigest()
    assert not got["b.example/db"].ok and "mariadb-dump exited 2: mariadb-dump: Got error: 1049" in got[
        "b.example/db"].error
    assert not got["c.example/db"].ok and "killed by signal 9" in got["c.example/db"].error
    assert not got["d.example/db"].ok and "completion marker" in got["d.example/db"].error
    snaps = listed(env.tmp / "repo")
    assert sorted((s["paths"], sorted(s["tags"]), s["hostname"], s["time"]) for s in snaps) == [
        (["/settings.json"], ["kind=settings", "sub=a.example"], "web-1", "2026-11-30T02:00:00Z"),
        (["/shop.sql"], ["db=shop", "engine=mariadb", "kind=db", "sub=a.example"], "web-1", "2026-11-30T02:00:00Z")]
    assert {s["id"] for s in snaps} == {got["a.example/db"].snapshot, got["a.example/settings"].snapshot}
    secrets = list((env.stage / ".restic").iterdir())
    assert secrets and all(p.stat().st_mode & 0o777 == 0o600 for p in secrets)


def test_files_manifest_is_stable_and_drops_files_changed_during_the_backup(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    home = env.tmp / "home"
    (home / "web" / "img").mkdir(parents=True)
    (home / "tmp").mkdir()
    (home / "web" / "index.php").write_text("<?php echo 1;")
    (home / "web" / "img" / "a.png").write_bytes(os.urandom(3000))
    (home / "web" / "log.txt").write_text("line 1\n")
    (home / "tmp" / "junk").write_text("excluded")
    part = backupjobs.Part("files", "webspace", path=str(home), exclude=[str(home / "tmp")])
    first = run("backup", env, host="web-1", local=env.repo(), units=[backupjobs.Unit("a.example", [part])]).parts[0]
    again = run("backup", env, host="web-1", local=env.repo(), units=[backupjobs.Unit("a.example", [part])]).parts[0]
    assert first.ok and first.files == 3 and first.unstable == [] and again.digest == first.digest
    assert json.loads(subprocess.run(["restic", "-r", str(env.tmp / "repo"), "--no-cache", "-q", "ls", "--json",
                                      first.snapshot], input=PW, capture_output=True, text=True, check=True)
                      .stdout.splitlines()[0])["tags"] == ["sub=a.example", "kind=files"]

    real = restic.Restic.backup_paths

    def appends_while_restic_reads(self: restic.Restic, *args: object, **kw: object) -> restic.Summary:
        done = real(self, *args, **kw)  # type: ignore[arg-type]
        with (home / "web" / "log.txt").open("a") as fh:
            fh.write("line 2\n")
        return done
    monkeypatch.setattr(restic.Restic, "backup_paths", appends_while_restic_reads)
    moving = run("backup", env, host="web-1", local=env.repo(), units=[backupjobs.Unit("a.example", [part])]).parts[0]
    assert moving.ok and moving.files == 2 and moving.unstable == ["web/log.txt"] and moving.digest != first.digest

    # a drill restores the snapshot elsewhere and recomputes the digest the backup recorded
    drilled = run("drill", env, local=env.repo(), scratch="t1", units=[backupjobs.Unit("a.example", [
        backupjobs.Part("files", "webspace", path=str(home), snapshot=moving.snapshot, unstable=moving.unstable)])])
    assert drilled.parts[0].ok and drilled.parts[0].digest == moving.digest and drilled.parts[0].files == 2
    assert not any((env.tmp / "drill").iterdir()) and (env.tmp / "drill").stat().st_mode & 0o777 == 0o700

    # a restore puts back what the snapshot holds and leaves the rest (BKP-5)
    (home / "web" / "index.php").write_text("defaced")
    (home / "web" / "new.txt").write_text("uploaded since")
    back = run("restore", env, local=env.repo(), units=[backupjobs.Unit("a.example", [
        backupjobs.Part("files", "webspace", path=str(home), snapshot=first.snapshot)])]).parts[0]
    assert back.ok, back.error
    assert (home / "web" / "index.php").read_text() == "<?php echo 1;" and (home / "web" / "log.txt").read_text() == (
        "line 1\n")
    assert (home / "web" / "new.txt").exists() and (home / "tmp" / "junk").exists()


def test_an_unreachable_repository_fails_every_part_fast(env: Env) -> None:
    port = backup_fakes.free_port()
    down = backupjobs.Repo("region-a", f"rest:http://u:p@127.0.0.1:{port}/u/main/", PW)
    out = run("backup", env, local=down, units=[backupjobs.Unit("a.example", [db("shop")])])
    assert not out.repos[0].ok and "repository region-a (127.0.0.1:" in out.repos[0].error
    assert "unreachable" in out.parts[0].error and not out.parts[0].ok and "p@" not in out.parts[0].error


# --- copy over the append-only REST server -------------------------------------------------------


def test_copy_to_an_append_only_server_lists_originals_and_the_client_cannot_delete(env: Env) -> None:
    certs = env.tmp / "certs"
    ca = backup_fakes.make_certs(certs)
    (env.stage / "ca.pem").write_bytes(ca.read_bytes())
    (env.stage / "s").write_bytes(b"{}")
    src = env.repo("source")
    with backup_fakes.rclone_server(env.tmp / "rclone", {"web-1": "login-pw"}, certs) as port:
        base = f"rest:https://web-1:login-pw@127.0.0.1:{port}/web-1/main/"
        units = [backupjobs.Unit(s, [backupjobs.Part("settings", "settings", path="s")]) for s in ("a.ex", "b.ex")]
        made = run("backup", env, host="web-1", time="2026-11-30 02:00:00", local=src, units=units)
        assert all(p.ok for p in made.parts)
        good = backupjobs.Repo("region-b", base, PW)
        wrong_login = backupjobs.Repo("region-c", base.replace("login-pw", "nope"), PW)
        down = backupjobs.Repo("region-d", f"rest:https://web-1:x@127.0.0.1:{backup_fakes.free_port()}/web-1/main/", PW)
        out = run("copy", env, cacert="ca.pem", local=src, targets=[wrong_login, down, good], units=units[:1])
        by = {r.region: r for r in out.repos}
        assert "refused the login (HTTP 401)" in by["region-c"].error and "unreachable" in by["region-d"].error
        assert by["region-b"].ok and [s.original for s in by["region-b"].snapshots] == [made.parts[0].snapshot]
        assert by["region-c"].seconds < 5 and by["region-d"].seconds < 5
        # copying everything again adds the other subscription only
        out = run("copy", env, cacert="ca.pem", local=src, targets=[good])
        assert sorted(s.original for s in out.repos[0].snapshots) == sorted(p.snapshot for p in made.parts)
        listed_ = run("snapshots", env, cacert="ca.pem", targets=[good], units=units[1:]).repos[0]
        assert [s.tags for s in listed_.snapshots] == [["sub=b.ex", "kind=settings"]]
        # a backup straight into the REST repository answers the snapshot's full id
        direct = run("backup", env, host="web-1", cacert="ca.pem", local=good, units=units[:1]).parts[0]
        assert direct.ok and len(direct.snapshot) == 64
        # append-only: the client's login cannot remove a snapshot
        ctx = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        auth = base64.b64encode(b"web-1:login-pw").decode()
        conn.request("DELETE", f"/web-1/main/snapshots/{listed_.snapshots[0].id}",
                     headers={"Authorization": f"Basic {auth}"})
        assert conn.getresponse().status == 403
        conn.close()
        # the owner side (the repository's path on the server) sees the copies
        owned = env.tmp / "rclone" / "web-1" / "main"
        assert len(listed(owned)) == 3


# --- rotation and checks (owner side) ----------------------------------------------------------


def _nightly(env: Env, days: dict[int, list[str]], extra: list[str] | None = None) -> dict[str, list[str]]:
    """One backup job a day (fake times) of the settings of each subscription listed
    for that day: the short snapshot ids per subscription, oldest first."""
    (env.stage / "s").write_bytes(b"{}")
    ids: dict[str, list[str]] = {}
    for day, subs in sorted(days.items()):
        out = run("backup", env, host="web-1", time=f"2026-11-{day:02d} 02:00:00", local=env.repo(), tags=extra or [],
                  concurrency=3, units=[backupjobs.Unit(s, [backupjobs.Part("settings", "settings", path="s")])
                                        for s in subs])
        for p in out.parts:
            assert p.ok, p.error
            ids.setdefault(p.subscription, []).append(p.snapshot)
    return ids


def test_forget_keeps_daily_per_group_and_never_protected_or_kept_tags(env: Env) -> None:
    made = _nightly(env, {1: ["a", "b", "c"], 2: ["a", "b", "c"], 3: ["a", "b", "c"], 4: ["a", "b"], 5: ["a"],
                          6: ["a"]})
    final = _nightly(env, {7: ["a"]}, ["final"])["a"]
    a, b, c = made["a"], made["b"], made["c"]
    owner = env.repo(owner=True)
    units = [backupjobs.Unit(s, []) for s in ("a", "b", "c")]
    # ids the controller sends may be short
    out = run("forget", env, targets=[owner], keep_daily=2, protect=[a[0][:8]], keep_tags=["final"], skip=["b", "c"],
              forget_ids=[c[0][:8]], units=units).repos[0]
    assert out.ok, out.error
    # group {sub=a, kind=settings}: days 5 and 6 kept, day 1 protected; {sub=a, kind=settings, final}: its own
    # group; b and c are skipped (their latest backup failed) but c[0] is purged exactly
    assert sorted(out.removed) == sorted([*a[1:4], c[0]])
    remaining = {s.id for s in out.snapshots}
    assert remaining == {a[0], a[4], a[5], *final, *b, c[1], c[2]}
    assert {s["id"] for s in listed(env.tmp / "repo")} == remaining
    # a second pass (with prune) removes nothing more
    again = run("forget", env, targets=[owner], keep_daily=2, protect=[a[0]], keep_tags=["final"], skip=["b", "c"],
                prune=True, units=units).repos[0]
    assert again.ok and again.removed == [] and {s.id for s in again.snapshots} == remaining


def test_forget_refuses_a_rotation_that_keeps_nothing(env: Env) -> None:
    _nightly(env, {1: ["a"], 2: ["a"]})
    out = run("forget", env, targets=[env.repo(owner=True)], keep_daily=0, units=[backupjobs.Unit("a", [])])
    assert not out.repos[0].ok and "keep nothing" in out.repos[0].error and len(listed(env.tmp / "repo")) == 2


def test_the_newest_snapshot_of_a_group_is_never_proposed_for_removal() -> None:
    def snap(sid: str, day: int) -> dict[str, object]:
        return {"id": sid, "time": f"2026-11-{day:02d}T02:00:00Z", "tags": ["sub=a"], "paths": ["/s"]}
    with pytest.raises(agent.Problem, match="newest snapshot"):
        agent.proposal([{"tags": ["sub=a"], "keep": [snap("k", 1)], "remove": [snap("r", 2)]}],
                       backupjobs.BackupJob())


def test_check_finds_one_flipped_bit_in_a_pack(env: Env) -> None:
    (env.stage / "s").write_bytes(os.urandom(20000))
    run("backup", env, local=env.repo(), units=[backupjobs.Unit("a.ex", [backupjobs.Part("settings", "settings",
                                                                                          path="s")])])
    owner = env.repo(owner=True)
    assert run("check", env, targets=[owner], subset="1/1").repos[0].ok
    pack = max((env.tmp / "repo" / "data").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    assert run("check", env, targets=[owner]).repos[0].ok  # structure only: the bit is not read
    bad = run("check", env, targets=[owner], subset="1/1").repos[0]
    assert not bad.ok and "restic check found errors" in bad.error and "repository contains errors" in bad.error


# --- restore and drill ---------------------------------------------------------------------------


def test_restore_and_drill_of_a_database_and_settings(env: Env) -> None:
    (env.stage / "s").write_bytes(b'{"plan": "m"}')
    made = run("backup", env, local=env.repo(), units=[
        backupjobs.Unit("a.ex", [db("shop"), backupjobs.Part("settings", "settings", path="s")])]).parts
    snap = {p.kind: p.snapshot for p in made}
    drilled = run("drill", env, local=env.repo(), scratch="n7", units=[
        backupjobs.Unit("a.ex", [backupjobs.Part("db", "shop", engine="mariadb", snapshot=snap["db"])])]).parts[0]
    assert drilled.ok and drilled.tables == made[0].tables == SHOP
    statements = (env.db / "statements").read_text().splitlines()
    assert statements[-1] == "DROP DATABASE IF EXISTS `tenantctl_drill_n7_0`" and not (env.db / "shop.sql").exists()
    out = run("restore", env, local=env.repo(), units=[backupjobs.Unit("a.ex", [
        backupjobs.Part("db", "shop", engine="mariadb", snapshot=snap["db"]),
        backupjobs.Part("settings", "settings", snapshot=snap["settings"])])]).parts
    assert out[0].ok and (env.db / "shop.sql").read_bytes() == backup_fakes.DUMP
    assert (env.db / "statements").read_text().splitlines()[-1] == "CREATE DATABASE IF NOT EXISTS `shop`"
    assert out[1].ok and out[1].content == '{"plan": "m"}' and out[1].digest == made[1].digest
    gone = run("restore", env, local=env.repo(), units=[backupjobs.Unit("a.ex", [
        backupjobs.Part("db", "shop", engine="mariadb", snapshot="deadbeef")])]).parts[0]
    assert not gone.ok and "restic dump exited 1" in gone.error and "no matching ID found" in gone.error


@pytest.mark.parametrize(("part", "problem"), [
    pytest.param(backupjobs.Part("db", "shop`; DROP", engine="mariadb", snapshot="x"), "not a database name",
                 id="database-name"),
    pytest.param(backupjobs.Part("db", "shop", engine="postgresql", owner='u"; x', snapshot="x"), "not a role name",
                 id="postgresql-owner"),
    pytest.param(backupjobs.Part("db", "shop", engine="mariadb"), "no snapshot given", id="no-snapshot"),
])
def test_restore_refuses_unchecked_names(env: Env, part: backupjobs.Part, problem: str) -> None:
    (env.tmp / "repo").mkdir()
    (env.tmp / "repo" / "config").write_text("")
    out = run("restore", env, local=env.repo(), units=[backupjobs.Unit("a.ex", [part])]).parts[0]
    assert not out.ok and problem in out.error


# --- logins and the agent's main ---------------------------------------------------------------


@pytest.mark.parametrize(("job", "problem"), [
    pytest.param(jobs.Job(jobs.VERSION, "apply", backup=backupjobs.BackupJob()), "does not do 'apply'",
                 id="not-a-backup-op"),
    pytest.param(jobs.Job(jobs.VERSION, "backup"), "no backup section", id="no-backup-section"),
    pytest.param(jobs.Job(jobs.VERSION, "drill", backup=backupjobs.BackupJob(scratch="../x")), "not a scratch name",
                 id="scratch-path"),
    pytest.param(jobs.Job(jobs.VERSION, "drill", backup=backupjobs.BackupJob(scratch="abc", dr="clean")),
                 "the drdrill entry's", id="dr-phase"),
])
def test_the_entry_refuses_a_job_it_cannot_do(env: Env, job: jobs.Job, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        agent.handle(job, str(env.stage))


def test_logins_rewrite_the_htpasswd_only_when_it_differs(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    path = env.tmp / "etc" / "htpasswd"
    monkeypatch.setattr(agent, "HTPASSWD", str(path))
    monkeypatch.setattr(agent, "HTGROUP", __import__("grp").getgrgid(os.getgid()).gr_name)
    assert run("logins", env, logins={"web-2": "$2y$h2", "web-1": "$2y$h1"}).changed
    assert path.read_text() == "web-1:$2y$h1\nweb-2:$2y$h2\n" and path.stat().st_mode & 0o777 == 0o640
    assert not run("logins", env, logins={"web-1": "$2y$h1", "web-2": "$2y$h2"}).changed
    with pytest.raises(ValueError, match="not a login"):
        run("logins", env, logins={"web-1:x": "h"})


def test_main_runs_a_backup_job_without_the_lock(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    (env.stage / "s").write_bytes(b"{}")
    stage_job(env.stage, jobs.Job(jobs.VERSION, "backup", backup=backupjobs.BackupJob(
        host="web-1", local=env.repo(), units=[backupjobs.Unit("a.ex", [backupjobs.Part("settings", "settings",
                                                                                         path="s")])])))
    assert main.main("backup", str(env.stage)) == 0
    out = jobs.decode(jobs.Outcome, json.loads(capsys.readouterr().out))
    assert out.backup is not None and out.backup.parts[0].ok and len(out.backup.parts[0].snapshot) == 64
    assert not os.path.exists(lock.path())
    assert PW not in " ".join(restic.Restic(env.repo(), str(env.stage)).argv(["snapshots"]))


def test_agents_creating_one_repository_at_once_make_one_key_and_a_readable_repository(env: Env) -> None:
    """Two jobs of one server reaching a missing repository together (a CLI backup while
    the schedule's runs, or a job run again after its session was cut) once made two
    ``restic init`` at once: two master keys, one config, and restic later said "config
    or key ... is damaged". One creates it now; the others find it made."""
    repo = env.repo("fresh")
    start = threading.Barrier(4)

    def ensure(i: int) -> bool:
        r = restic.Restic(repo, str(env.stage))
        start.wait()
        return r.ensure()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        created = list(pool.map(ensure, range(4)))
    assert created.count(True) == 1, created
    assert len(list((env.tmp / "fresh" / "keys").iterdir())) == 1
    assert listed(env.tmp / "fresh") == []  # the restic client opens it: no damaged config


def test_the_zipapp_runs_a_backup_with_the_servers_bare_python(env: Env) -> None:
    pyz = env.tmp / "agent.pyz"
    pyz.write_bytes(bundle.current().data)
    (env.stage / "s").write_bytes(b"{}")
    stage_job(env.stage, jobs.Job(jobs.VERSION, "backup", backup=backupjobs.BackupJob(
        host="web-1", local=env.repo(), units=[backupjobs.Unit("a.ex", [db("shop")])])))
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    # what the controller's launcher runs, with a prelude pointing restic's cache and the
    # agent's state directory (its locks) here
    prelude = (f"from controller.agent import lock, restic; restic.CACHE_DIR = {str(env.tmp / 'c')!r}; "
               f"lock.STATE_DIR = {str(env.tmp / 'state')!r}; ")
    launch = transport.LAUNCH.format(prelude=prelude)
    proc = subprocess.run([python, "-I", "-S", "-c", launch, str(pyz), "backup", str(env.stage)], capture_output=True,
                          text=True, check=False, cwd=env.tmp)
    assert proc.returncode == 0, proc.stderr
    out = jobs.decode(jobs.Outcome, json.loads(proc.stdout)).backup
    assert out is not None and out.parts[0].ok and out.parts[0].tables == SHOP


# --- a real PostgreSQL (a private cluster on a Unix socket) --------------------------------------


@pytest.fixture
def postgres(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], str]]:
    """A throwaway PostgreSQL cluster run as user postgres on a socket in a private
    directory (PGHOST/PGPORT point the agent's ``runuser -u postgres`` clients at it);
    yields ``sql(database, statement) -> output`` run as the superuser."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("needs the postgres user (the agent runs PostgreSQL tools as postgres)")
    if initdb is None or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL server binaries (initdb) and runuser")
    bindir = Path(initdb).resolve().parent
    d = Path(tempfile.mkdtemp(prefix="tenantctl-pg-"))
    d.chmod(0o755)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    port = str(backup_fakes.free_port())
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(d / "data"), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(d / "data"), "-w", "-l", str(d / "log"), "-o",
                    f"-k {d} -c listen_addresses='' -p {port} -c fsync=off", "start"], check=True, capture_output=True)
    monkeypatch.setenv("PGHOST", str(d))
    monkeypatch.setenv("PGPORT", port)

    def sql(database: str, statement: str) -> str:
        return subprocess.run([*as_pg, "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", database, "-c",
                               statement], check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield sql
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(d / "data"), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def test_postgresql_backup_drill_and_restore_as_the_tenants_role(env: Env, postgres: Callable[[str, str], str]) -> None:
    postgres("postgres", "CREATE ROLE tenant_a NOLOGIN")
    postgres("postgres", "CREATE DATABASE shop_a OWNER tenant_a")
    postgres("shop_a", "SET ROLE tenant_a; CREATE TABLE orders (id serial PRIMARY KEY, item text); "
                       "INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 500) g; "
                       "CREATE TABLE empty (id int)")
    part = backupjobs.Part("db", "shop_a", engine="postgresql", owner="tenant_a")
    made = run("backup", env, host="db-1", local=env.repo(), units=[backupjobs.Unit("a.ex", [part])]).parts[0]
    assert made.ok, made.error
    assert made.tables["public.orders"].rows == 500 and made.tables["public.empty"].rows == 0
    snap = dataclasses.replace(part, snapshot=made.snapshot)
    drilled = run("drill", env, local=env.repo(), scratch="p1", units=[backupjobs.Unit("a.ex", [snap])]).parts[0]
    assert drilled.ok and drilled.tables == made.tables, drilled.error
    assert postgres("postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'tenantctl_drill_%'") == "0"
    postgres("shop_a", "DELETE FROM orders WHERE id > 10; DROP TABLE empty")
    back = run("restore", env, local=env.repo(), units=[backupjobs.Unit("a.ex", [snap])]).parts[0]
    assert back.ok, back.error
    assert postgres("shop_a", "SELECT count(*) FROM orders") == "500"
    assert postgres("shop_a", "SELECT string_agg(tableowner, ',' ORDER BY tablename) FROM pg_tables "
                              "WHERE schemaname = 'public'") == "tenant_a,tenant_a"
    # a dump of a database that does not exist: pg_dump fails, no snapshot
    gone = run("backup", env, host="db-1", local=env.repo(), units=[backupjobs.Unit("a.ex", [
        backupjobs.Part("db", "nosuch", engine="postgresql")])]).parts[0]
    assert not gone.ok and "pg_dump exited 1" in gone.error and 'database "nosuch" does not exist' in gone.error
    assert len(listed(env.tmp / "repo")) == 1
