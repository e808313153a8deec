"""The backup agent's exact restore (the clone of PLAT-2 test copies and PLAT-3 demos),
run on this host: a real restic repository, a real PostgreSQL cluster, FAKE MariaDB
tools (tests/agent/backup_fakes.py). After an exact restore the target holds what the
snapshot holds and nothing else; the source's web space and databases may be another
subscription's (``Part.origin``)."""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.agent import backupjobs
from controller.drivers.backup import agent

from . import backup_fakes
from .test_backup_agent import Env, env, postgres, run  # noqa: F401  (fixtures)

#: the clone's target user (the test runs as root: it can give files away)
TENANT = "daemon"


def _tree(root: Path) -> dict[str, tuple[str, str, str]]:
    """relpath -> (content, owner, group) of every file and directory under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.read_text() if p.is_file() else "<dir>", pwd.getpwuid(st.st_uid).pw_name,
                                         grp.getgrgid(st.st_gid).gr_name)
    return out


@pytest.fixture
def clone_root(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    if os.getuid() != 0:
        pytest.skip("gives files to another user: needs root")
    monkeypatch.setattr(agent, "CLONE_ROOT", str(env.tmp / "clone"))
    return env.tmp / "clone"


def test_files_of_another_web_space_replace_every_entry_but_tmp_and_logs(env: Env, clone_root: Path) -> None:  # noqa: F811
    src, dst = env.tmp / "srv" / "ref.example", env.tmp / "srv" / "demo.example"
    for d in (src / "httpdocs" / "img", src / "logs", src / "sites" / "blog.ref.example", src / "sites" / "alias.example",
              dst / "httpdocs", dst / "logs", dst / "tmp"):
        d.mkdir(parents=True)
    (src / "sites" / "blog.ref.example" / "index.html").write_text("the blog")
    (src / "httpdocs" / "index.php").write_text("reference")
    (src / "httpdocs" / "img" / "a.txt").write_text("image")
    (src / "logs" / "access.log").write_text("the reference's log")
    for p in (src / "httpdocs" / "index.php", src / "httpdocs" / "img"):
        os.chown(p, 65534, 65534)  # the source's user (nobody here)
    os.chown(src / "httpdocs" / "img" / "a.txt", 0, grp.getgrnam("www-data").gr_gid)  # a system owner: kept
    made = run("backup", env, host="web-1", local=env.repo(), units=[backupjobs.Unit("ref.example", [
        backupjobs.Part("files", "webspace", path=str(src), exclude=[str(src / "tmp")])])]).parts[0]
    assert made.ok, made.error

    (dst / "httpdocs" / "index.php").write_text("defaced by a visitor")
    (dst / "httpdocs" / "upload.php").write_text("a visitor's file")
    (dst / "cgi-bin").mkdir()
    (dst / "stray").symlink_to("/etc")
    (dst / "logs" / "access.log").write_text("the demo's own log")
    (dst / "tmp" / "sess_1").write_text("a session")
    part = backupjobs.Part("files", "webspace", path=str(dst), origin=str(src), user=TENANT, exact=True,
                           snapshot=made.snapshot)
    out = run("restore", env, local=env.repo(), units=[backupjobs.Unit("demo.example", [part])]).parts[0]
    assert out.ok, out.error
    assert _tree(dst / "httpdocs") == {"index.php": ("reference", TENANT, TENANT), "img": ("<dir>", TENANT, TENANT),
                                       "img/a.txt": ("image", "root", "www-data")}
    assert sorted(p.name for p in dst.iterdir()) == ["httpdocs", "logs", "sites", "tmp"]  # cgi-bin, stray: gone
    # a subdomain's document root is the target's; an alias domain keeps its name
    assert sorted(p.name for p in (dst / "sites").iterdir()) == ["alias.example", "blog.demo.example"]
    assert (dst / "sites" / "blog.demo.example" / "index.html").read_text() == "the blog"
    assert (dst / "logs" / "access.log").read_text() == "the demo's own log"
    assert (dst / "tmp" / "sess_1").exists() and Path("/etc/passwd").exists()
    assert out.files == 3  # index.php, img/a.txt, the blog's index.html (logs and tmp left out)
    assert list(clone_root.iterdir()) == [] and clone_root.stat().st_mode & 0o777 == 0o700

    # its own snapshot into itself (a reset from its reference copy): the same, exactly
    back = run("restore", env, local=env.repo(), units=[backupjobs.Unit("ref.example", [
        dataclasses.replace(part, path=str(src), origin="")])]).parts[0]
    assert back.ok, back.error
    assert _tree(src / "httpdocs")["index.php"] == ("reference", TENANT, TENANT)


@pytest.mark.parametrize(("part", "problem"), [
    pytest.param(backupjobs.Part("files", "webspace", path="/srv/www/t", origin="/srv/www/s", user="daemon"),
                 "an exact restore", id="origin-without-exact"),
    pytest.param(backupjobs.Part("files", "webspace", path="/srv/www/t", origin="/srv/../etc", user="daemon",
                                 exact=True), "not a snapshot path", id="path-not-normal"),
    pytest.param(backupjobs.Part("files", "webspace", path="/srv/www/t", user="root; rm -rf /", exact=True),
                 "not a system user name", id="user-unchecked"),
    pytest.param(backupjobs.Part("files", "webspace", path="/srv/www/t", user="nosuchuser", exact=True),
                 "no system user", id="user-unknown"),
    pytest.param(backupjobs.Part("db", "t_db", engine="mariadb", origin="shop`; DROP", exact=True),
                 "not a database name", id="origin-db-unchecked"),
])
def test_an_exact_restore_refuses_unchecked_text(env: Env, part: backupjobs.Part, problem: str) -> None:  # noqa: F811
    out = run("restore", env, local=env.repo(), units=[backupjobs.Unit("t.ex", [
        dataclasses.replace(part, snapshot="0123abcd")])]).parts[0]
    assert not out.ok and problem in out.error, out.error


def test_a_mariadb_database_is_dropped_created_and_loaded_from_another_name(env: Env) -> None:  # noqa: F811
    made = run("backup", env, host="db-1", local=env.repo(), units=[backupjobs.Unit("ref.ex", [
        backupjobs.Part("db", "shop", engine="mariadb")])]).parts[0]
    assert made.ok, made.error
    (env.db / "demo_db.sql").write_bytes(b"CREATE TABLE visitors (id int);")  # what a visitor left
    out = run("restore", env, local=env.repo(), units=[backupjobs.Unit("demo.ex", [backupjobs.Part(
        "db", "demo_db", engine="mariadb", origin="shop", exact=True, snapshot=made.snapshot)])]).parts[0]
    assert out.ok, out.error
    statements = (env.db / "statements").read_text().splitlines()
    assert statements == ["DROP DATABASE IF EXISTS `demo_db`",
                          "CREATE DATABASE `demo_db` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"]
    assert (env.db / "demo_db.sql").read_bytes() == backup_fakes.DUMP  # the visitor's table gone with the drop


def test_a_postgresql_database_holds_exactly_the_snapshots_tables(
        env: Env, postgres: Callable[[str, str], str]) -> None:  # noqa: F811
    postgres("postgres", "CREATE ROLE ref_owner NOLOGIN")
    postgres("postgres", "CREATE ROLE demo_owner NOLOGIN")
    postgres("postgres", "CREATE DATABASE ref_db OWNER ref_owner")
    postgres("postgres", "CREATE DATABASE demo_db OWNER demo_owner")
    postgres("ref_db", "SET ROLE ref_owner; CREATE TABLE books (id serial PRIMARY KEY, title text); "
                       "INSERT INTO books (title) SELECT 'book ' || g FROM generate_series(1, 100) g")
    made = run("backup", env, host="db-1", local=env.repo(), units=[backupjobs.Unit("ref.ex", [
        backupjobs.Part("db", "ref_db", engine="postgresql", owner="ref_owner")])]).parts[0]
    assert made.ok, made.error
    postgres("demo_db", "SET ROLE demo_owner; CREATE TABLE books (id serial PRIMARY KEY, title text); "
                        "INSERT INTO books (title) VALUES ('a visitor''s row'); CREATE TABLE guestbook (line text)")
    out = run("restore", env, local=env.repo(), units=[backupjobs.Unit("demo.ex", [backupjobs.Part(
        "db", "demo_db", engine="postgresql", owner="demo_owner", origin="ref_db", exact=True,
        snapshot=made.snapshot)])]).parts[0]
    assert out.ok, out.error
    assert postgres("demo_db", "SELECT string_agg(tablename || ':' || tableowner, ',' ORDER BY tablename) "
                               "FROM pg_tables WHERE schemaname = 'public'") == "books:demo_owner"
    assert postgres("demo_db", "SELECT count(*) || ' ' || max(title) FROM books") == "100 book 99"
    assert postgres("postgres", "SELECT pg_get_userbyid(datdba) || ' ' || coalesce(array_to_string(datacl, ','), '') "
                                "FROM pg_database WHERE datname = 'demo_db'").startswith("demo_owner ")
    assert "=" not in postgres("postgres", "SELECT coalesce(array_to_string(datacl, ','), '') FROM pg_database "
                                           "WHERE datname = 'demo_db'").split(",")[0][:1]


def test_the_clone_fields_travel_in_the_job() -> None:
    from controller.agent import jobs

    part = backupjobs.Part("files", "webspace", path="/srv/www/t.ex", origin="/srv/www/s.ex", user="w0123456789",
                           exact=True, snapshot="0123abcd")
    job = jobs.Job(jobs.VERSION, "restore", backup=backupjobs.BackupJob(units=[backupjobs.Unit("t.ex", [part])]))
    back = jobs.decode(jobs.Job, jobs.encode(job))
    assert back.backup is not None and back.backup.units[0].parts[0] == part
