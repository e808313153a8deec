"""The db driver against real MariaDB 10.11 and PostgreSQL 15 on the embedded servers,
checked with the real ``mariadb`` and ``psql`` clients (issue 3, points 4-6).

Every test uses its own subscriptions and deletes them at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import typer
from typer.testing import CliRunner

from controller.cli.db import db_app
from controller.drivers import base
from controller.drivers.db import DbDriver, Settings, credentials

from .conftest import Cluster

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[2]
A, B = "drv-a", "drv-b"
ADDR = {A: "127.0.40.1", B: "127.0.41.1"}


# --- helpers ---------------------------------------------------------------------


def db(name: str, engine: str, server: str = A) -> dict[str, Any]:
    return {"name": name, "engine": engine, "server": server}


def slice_(*dbs: dict[str, Any], quota: Any = 256, state: str = "active") -> dict[str, Any]:
    return {"state": state, "databases": list(dbs), "quotaMB": quota}


def ensure(name: str, sl: dict[str, Any]) -> base.Change:
    return base.Change(name, "ensure", sl)


def suspend(name: str, sl: dict[str, Any]) -> base.Change:
    return base.Change(name, "suspend", {**sl, "state": "suspended"})


def delete(name: str) -> base.Change:
    return base.Change(name, "delete", {"name": name})


CLI = typer.Typer()
CLI.add_typer(db_app, name="db")  # as the tenantctl CLI registers it


def cli_credentials(cluster: Cluster, sub: str, dbname: str) -> tuple[int, dict[str, Any]]:
    """``tenantctl db credentials SUB DB -o json``."""
    res = CliRunner().invoke(CLI, ["db", "credentials", sub, dbname, "-o", "json"],
                             env={"TENANTCTL_STATE_DIR": str(cluster.state_dir)})
    return res.exit_code, (json.loads(res.stdout) if res.exit_code == 0 else {})


def mariadb_client(creds: dict[str, Any], sql: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["mariadb", "--protocol=tcp", f"--host={creds['host']}", f"--port={creds['port']}",
            f"--user={creds['user']}", "--batch", "--skip-column-names", f"--execute={sql}"]
    argv.append(database or creds["database"])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "MYSQL_PWD": creds["password"]})


def psql_client(creds: dict[str, Any], sql: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    dsn = f"host={creds['host']} port={creds['port']} user={creds['user']} dbname={database or creds['database']}"
    return subprocess.run(["psql", dsn, "--no-psqlrc", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PGPASSWORD": creds["password"], "PGCONNECT_TIMEOUT": "5"})


def client(creds: dict[str, Any], sql: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    return (mariadb_client if creds["engine"] == "mariadb" else psql_client)(creds, sql, database)


class Admin:
    """Admin sessions on the embedded servers (what an operator would check by hand)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def my(self, server: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        s = self.cluster.ctx.secrets(server)
        conn = pymysql.connect(host=ADDR[server], user=s["mariadb_admin_user"], password=s["mariadb_admin_password"],
                               autocommit=True, connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args or None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def pg(self, sql: str, args: tuple[Any, ...] = (), dbname: str = "postgres") -> list[tuple[Any, ...]]:
        s = self.cluster.ctx.secrets(A)
        with psycopg.connect(host=ADDR[A], user=s["postgresql_admin_user"], password=s["postgresql_admin_password"],
                             dbname=dbname, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql, args)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def exists(self, c: dict[str, Any]) -> tuple[int, int]:
        """(databases, logins) with these names on the credentials' server."""
        if c["engine"] == "mariadb":
            server = A if c["host"] == ADDR[A] else B
            dbs = self.my(server, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                          (c["database"],))[0][0]
            users = self.my(server, "SELECT COUNT(*) FROM mysql.global_priv WHERE User = %s", (c["user"],))[0][0]
            return int(dbs), int(users)
        dbs = self.pg("SELECT COUNT(*) FROM pg_database WHERE datname = %s", (c["database"],))[0][0]
        users = self.pg("SELECT COUNT(*) FROM pg_roles WHERE rolname = %s", (c["user"],))[0][0]
        return int(dbs), int(users)


@pytest.fixture
def admin(cluster: Cluster) -> Admin:
    return Admin(cluster)


@pytest.fixture
def driver(cluster: Cluster) -> DbDriver:
    return DbDriver(cluster.ctx)


@pytest.fixture
def subs(cluster: Cluster) -> Iterator[list[str]]:
    """Fresh subscription names; whatever they still have is deleted at the end."""
    names: list[str] = []
    yield names
    drv = DbDriver(cluster.ctx)
    if names:
        drv.apply(None, [delete(n) for n in names])
    for n in names:
        shutil.rmtree(cluster.state_dir / "retained" / n, ignore_errors=True)
        shutil.rmtree(cluster.state_dir / credentials.DIR / n, ignore_errors=True)


def new_sub(subs: list[str]) -> str:
    name = f"t{uuid.uuid4().hex[:10]}.example.test"
    subs.append(name)
    return name


def ok(results: list[base.Result]) -> list[base.Result]:
    assert [r.outcome for r in results] == ["provisioned"] * len(results), results
    return results


# --- apply, logins, isolation ------------------------------------------------------


def test_apply_creates_databases_where_each_one_lives_and_clients_can_create_tables(
        cluster: Cluster, driver: DbDriver, subs: list[str]) -> None:
    sub = new_sub(subs)
    sl = slice_(db("app", "mariadb"), db("stats", "postgresql"), db("other", "mariadb", B))
    # the engine batches by the web server: drv-b's database must still land on drv-b
    (res,) = ok(driver.apply(A, [ensure(sub, sl)]))
    assert "3 database(s)" in res.message
    for name in ("app", "stats", "other"):
        rc, c = cli_credentials(cluster, sub, name)
        assert rc == 0
        assert len(c["password"]) == 32
        assert c["host"] == (ADDR[B] if name == "other" else ADDR[A])
        made = client(c, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'hello');")
        assert made.returncode == 0, made.stderr
        assert client(c, "SELECT v FROM t WHERE id = 1").stdout.strip() == "hello"
    d = cluster.state_dir / credentials.DIR / sub
    assert d.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in d.iterdir()} == {0o600}


def test_credentials_of_an_unknown_database_exit_2(cluster: Cluster) -> None:
    assert cli_credentials(cluster, "nobody.example.test", "app")[0] == 2
    assert cli_credentials(cluster, "nobody.example.test", "Bad;Name")[0] == 2


def test_tenant_cannot_connect_to_another_tenants_database_on_either_engine(
        cluster: Cluster, driver: DbDriver, subs: list[str]) -> None:
    a, b = new_sub(subs), new_sub(subs)
    sl = slice_(db("app", "mariadb"), db("data", "postgresql"))  # same names: server-wide names differ
    ok(driver.apply(A, [ensure(a, sl), ensure(b, sl)]))
    for name in ("app", "data"):
        ca, cb = cli_credentials(cluster, a, name)[1], cli_credentials(cluster, b, name)[1]
        assert ca["database"] != cb["database"]
        assert client(ca, "SELECT 1").returncode == 0
        denied = client(ca, "SELECT 1", database=cb["database"])
        assert denied.returncode != 0
        assert ("Access denied" if name == "app" else "permission denied for database") in denied.stderr
    # nor can it see the other's database in the catalogue (MariaDB)
    ca = cli_credentials(cluster, a, "app")[1]
    cb = cli_credentials(cluster, b, "app")[1]
    shown = mariadb_client(ca, "SHOW DATABASES").stdout.split()
    assert ca["database"] in shown and cb["database"] not in shown


# --- lifecycle ----------------------------------------------------------------------


def test_suspend_refuses_logins_and_activation_restores_them(
        cluster: Cluster, driver: DbDriver, subs: list[str]) -> None:
    sub = new_sub(subs)
    sl = slice_(db("app", "mariadb"), db("stats", "postgresql"))
    ok(driver.apply(A, [ensure(sub, sl)]))
    creds = {n: cli_credentials(cluster, sub, n)[1] for n in ("app", "stats")}
    for c in creds.values():
        assert client(c, "CREATE TABLE kept (id INT); INSERT INTO kept VALUES (7);").returncode == 0
    s = creds["stats"]
    session = psycopg.connect(host=s["host"], port=s["port"], user=s["user"], password=s["password"],
                              dbname=s["database"], autocommit=True)
    try:
        (res,) = ok(driver.apply(A, [suspend(sub, sl)]))
        assert "locked" in res.message
        refused = mariadb_client(creds["app"], "SELECT 1")
        assert refused.returncode != 0 and "locked" in refused.stderr
        refused = psql_client(creds["stats"], "SELECT 1")
        assert refused.returncode != 0 and "not permitted to log in" in refused.stderr
        with pytest.raises(psycopg.OperationalError):  # the open session was ended too
            session.execute("SELECT 1")
    finally:
        session.close()
    assert driver.drifted(A, [suspend(sub, sl)]) == {}
    ok(driver.apply(A, [ensure(sub, sl)]))
    for c in creds.values():  # same password, data intact (LIFE-2)
        assert client(c, "SELECT id FROM kept").stdout.strip() == "7"
    assert driver.drifted(A, [ensure(sub, sl)]) == {}


def _load_dump(path: Path, engine: str, admin: Admin, cluster: Cluster, table: str) -> str:
    """Restore a retained dump into a scratch database and read ``table`` back."""
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    sql = subprocess.run(["zstd", "-dc", str(path)] if path.suffix == ".zst" else ["gzip", "-dc", str(path)],
                         capture_output=True, check=True).stdout
    s = cluster.ctx.secrets(A)
    if engine == "mariadb":
        admin.my(A, f"CREATE DATABASE {scratch}")
        try:
            subprocess.run(["mariadb", "--protocol=tcp", f"--host={ADDR[A]}", f"--user={s['mariadb_admin_user']}",
                            scratch], input=sql, check=True, capture_output=True,
                           env={**os.environ, "MYSQL_PWD": s["mariadb_admin_password"]})
            return str(admin.my(A, f"SELECT v FROM {scratch}.{table}")[0][0])
        finally:
            admin.my(A, f"DROP DATABASE {scratch}")
    admin.pg(f"CREATE DATABASE {scratch}")
    try:
        subprocess.run(["psql", f"host={ADDR[A]} user={s['postgresql_admin_user']} dbname={scratch}", "-X",
                        "-v", "ON_ERROR_STOP=1", "-q"], input=sql, check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": s["postgresql_admin_password"]})
        return str(admin.pg(f"SELECT v FROM {table}", dbname=scratch)[0][0])
    finally:
        admin.pg(f"DROP DATABASE {scratch} WITH (FORCE)")


def test_delete_keeps_a_final_dump_that_restores_then_drops_everything(
        cluster: Cluster, driver: DbDriver, subs: list[str], admin: Admin) -> None:
    sub = new_sub(subs)
    ok(driver.apply(A, [ensure(sub, slice_(db("app", "mariadb"), db("stats", "postgresql")))]))
    creds = {n: cli_credentials(cluster, sub, n)[1] for n in ("app", "stats")}
    for n, c in creds.items():
        assert client(c, f"CREATE TABLE t (v VARCHAR(20)); INSERT INTO t VALUES ('{n}-row');").returncode == 0
    (res,) = ok(driver.apply(None, [delete(sub)]))
    for n, c in creds.items():
        assert admin.exists(c) == (0, 0)
        assert client(c, "SELECT 1").returncode != 0
        assert cli_credentials(cluster, sub, n)[0] == 2
        (dump,) = (cluster.state_dir / "retained" / sub).glob(f"*-{n}.sql.*")
        assert dump.stat().st_size > 0 and dump.stat().st_mode & 0o777 == 0o600
        assert str(dump.relative_to(cluster.state_dir)) in res.message
        assert _load_dump(dump, c["engine"], admin, cluster, "t") == f"{n}-row"
    # deleting again is a no-op
    assert ok(driver.apply(None, [delete(sub)]))[0].message == "no databases on file"


def test_a_failed_final_dump_drops_nothing(
        cluster: Cluster, driver: DbDriver, subs: list[str], admin: Admin, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sub = new_sub(subs)
    ok(driver.apply(A, [ensure(sub, slice_(db("app", "mariadb"), db("stats", "postgresql")))]))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump: error: connection refused' >&2\nexit 1\n")
    (fake / "pg_dump").chmod(0o755)
    with monkeypatch.context() as m:
        m.setenv("PATH", f"{fake}:{os.environ['PATH']}")
        (res,) = driver.apply(None, [delete(sub)])
    assert res.outcome == "failed"
    assert "dump of stats (postgresql) failed: exit status 1" in res.message
    for n in ("app", "stats"):  # the good MariaDB dump does not let anything be dropped either
        c = cli_credentials(cluster, sub, n)[1]
        assert admin.exists(c) == (1, 1)
        assert client(c, "SELECT 1").returncode == 0
    assert not list((cluster.state_dir / "retained" / sub).glob("*.partial"))


def test_a_database_removed_from_the_spec_is_dumped_then_dropped(
        cluster: Cluster, driver: DbDriver, subs: list[str], admin: Admin) -> None:
    sub = new_sub(subs)
    ok(driver.apply(A, [ensure(sub, slice_(db("app", "mariadb"), db("old", "mariadb", B)))]))
    old = cli_credentials(cluster, sub, "old")[1]
    (res,) = ok(driver.apply(A, [ensure(sub, slice_(db("app", "mariadb")))]))
    assert "old (mariadb on drv-b) dumped to retained/" in res.message and "then dropped" in res.message
    assert admin.exists(old) == (0, 0)
    assert cli_credentials(cluster, sub, "old")[0] == 2
    assert len(list((cluster.state_dir / "retained" / sub).glob("*-old.sql.*"))) == 1
    assert cli_credentials(cluster, sub, "app")[0] == 0


# --- idempotence, crash safety, drift, quota ------------------------------------------


def _counters(admin: Admin) -> tuple[Any, ...]:
    names = ("Com_create_db", "Com_create_user", "Com_alter_user", "Com_grant", "Com_drop_user", "Com_drop_db")
    my = tuple(admin.my(s, "SHOW GLOBAL STATUS WHERE Variable_name IN %s", (names,)) for s in (A, B))
    return my


def test_a_second_apply_issues_no_ddl_and_changes_no_password(
        cluster: Cluster, driver: DbDriver, subs: list[str], admin: Admin) -> None:
    sub = new_sub(subs)
    sl = slice_(db("app", "mariadb"), db("stats", "postgresql"), db("other", "mariadb", B))
    ok(driver.apply(A, [ensure(sub, sl)]))
    assert driver.last_changes > 0
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (cluster.state_dir / credentials.DIR / sub).iterdir()}
    stats = cli_credentials(cluster, sub, "stats")[1]
    verifier = admin.pg("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (stats["user"],))
    before = _counters(admin)
    (res,) = ok(driver.apply(A, [ensure(sub, sl)]))
    assert driver.last_changes == 0
    assert _counters(admin) == before  # the servers saw no CREATE/ALTER/GRANT/DROP
    assert admin.pg("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (stats["user"],)) == verifier
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in (cluster.state_dir / credentials.DIR / sub).iterdir()} == files
    assert res.message.startswith("3 database(s)")


CRASH = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from controller import model
    from controller.drivers import base, context
    from controller.drivers.db import DbDriver, mariadb, postgresql

    state, servers, sub, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    done = 0

    def counting(run):
        def wrapper(self, step):
            global done
            run(self, step)
            done += 1
            if done == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return wrapper

    mariadb.MariaDB.run = counting(mariadb.MariaDB.run)
    postgresql.PostgreSQL.run = counting(postgresql.PostgreSQL.run)
    ctx = context.Context.of(model.load_desired([Path(servers)]), Path(state))
    dbs = [{"name": n, "engine": e, "server": s} for n, e, s in
           [("one", "mariadb", "drv-a"), ("two", "mariadb", "drv-a"), ("three", "postgresql", "drv-a"),
            ("four", "postgresql", "drv-a"), ("five", "mariadb", "drv-b")]]
    DbDriver(ctx).apply("drv-a", [base.Change(sub, "ensure", {"state": "active", "databases": dbs, "quotaMB": 100})])
    print("finished without being killed")
""")


@pytest.mark.parametrize("kill_after", [
    pytest.param(1, id="after-the-first-login"),
    pytest.param(4, id="between-login-and-grant-of-the-second"),
    pytest.param(8, id="inside-postgresql"),
])
def test_sigkill_in_the_middle_of_an_apply_then_a_rerun_converges(
        cluster: Cluster, driver: DbDriver, subs: list[str], admin: Admin, kill_after: int) -> None:
    sub = new_sub(subs)
    proc = subprocess.run([sys.executable, "-c", CRASH, str(cluster.state_dir), str(cluster.servers_file), sub,
                           str(kill_after)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    names = ("one", "two", "three", "four", "five")
    sl = slice_(*(db(n, e, s) for n, e, s in [("one", "mariadb", A), ("two", "mariadb", A),
                                              ("three", "postgresql", A), ("four", "postgresql", A),
                                              ("five", "mariadb", B)]))
    ok(driver.apply(A, [ensure(sub, sl)]))
    ok(driver.apply(A, [ensure(sub, sl)]))
    assert driver.last_changes == 0
    for n in names:
        c = cli_credentials(cluster, sub, n)[1]
        assert admin.exists(c) == (1, 1)  # exactly one database and one login
        assert client(c, "CREATE TABLE t (id INT)").returncode == 0
    assert driver.drifted(A, [ensure(sub, sl)]) == {}


def test_a_login_dropped_by_hand_is_reported_as_drift_and_repaired(
        cluster: Cluster, driver: DbDriver, subs: list[str], admin: Admin) -> None:
    sub = new_sub(subs)
    sl = slice_(db("app", "mariadb"), db("stats", "postgresql"))
    ok(driver.apply(A, [ensure(sub, sl)]))
    app, stats = cli_credentials(cluster, sub, "app")[1], cli_credentials(cluster, sub, "stats")[1]
    assert driver.drifted(A, [ensure(sub, sl)]) == {}
    admin.my(A, "DROP USER %s@'127.0.0.0/255.0.0.0'", (app["user"],))
    admin.pg(f'ALTER DATABASE "{stats["database"]}" OWNER TO CURRENT_USER')
    admin.pg(f'DROP ROLE "{stats["user"]}"')
    admin.pg(f'GRANT CONNECT ON DATABASE "{stats["database"]}" TO PUBLIC')
    drift = driver.drifted(A, [ensure(sub, sl)])[sub]
    assert "app: user missing" in drift
    assert "stats: user missing" in drift and "stats: grant on its database missing" in drift
    assert "stats: PUBLIC may connect to it" in drift
    ok(driver.apply(A, [ensure(sub, sl)]))
    assert driver.drifted(A, [ensure(sub, sl)]) == {}
    for c in (app, stats):  # the stored passwords work again
        assert client(c, "CREATE TABLE t (id INT)").returncode == 0


def test_a_password_changed_by_hand_is_drift_and_is_set_back(
        cluster: Cluster, driver: DbDriver, subs: list[str], admin: Admin) -> None:
    sub = new_sub(subs)
    sl = slice_(db("app", "mariadb", B))
    ok(driver.apply(A, [ensure(sub, sl)]))
    app = cli_credentials(cluster, sub, "app")[1]
    admin.my(B, "ALTER USER %s@'127.0.0.0/255.0.0.0' IDENTIFIED BY 'changed'", (app["user"],))
    assert driver.drifted(A, [ensure(sub, sl)]) == {sub: "app: password differs from the stored one"}
    ok(driver.apply(A, [ensure(sub, sl)]))
    assert client(app, "SELECT 1").returncode == 0


def test_size_is_measured_and_over_quota_is_reported_without_deleting(
        cluster: Cluster, driver: DbDriver, subs: list[str]) -> None:
    sub = new_sub(subs)
    sl = slice_(db("stats", "postgresql"), quota=1)  # an empty PostgreSQL database is ~7 MB
    (res,) = ok(driver.apply(A, [ensure(sub, sl)]))
    c = cli_credentials(cluster, sub, "stats")[1]
    assert client(c, "CREATE TABLE t (v INT); INSERT INTO t VALUES (1);").returncode == 0
    (res,) = ok(driver.apply(A, [ensure(sub, sl)]))
    assert "over database quota" in res.message and "of 1 MB" in res.message
    used = driver.last_usage[sub]["databaseMB"]
    assert used > 1
    assert driver.usage([ensure(sub, sl)]) == {sub: {"databaseMB": pytest.approx(used, rel=0.2)}}
    assert client(c, "SELECT v FROM t").stdout.strip() == "1"
    unlimited = slice_(db("stats", "postgresql"), quota="unlimited")
    assert "over" not in ok(driver.apply(A, [ensure(sub, unlimited)]))[0].message


def test_an_unreachable_database_server_is_a_temporary_failure_of_its_subscriptions_only(
        cluster: Cluster, subs: list[str]) -> None:
    down = DbDriver(cluster.ctx, Settings(ports={"mariadb": 1, "postgresql": 5432}, timeout=1))
    a, b = new_sub(subs), new_sub(subs)
    ra, rb = down.apply(A, [ensure(a, slice_(db("app", "mariadb"))), ensure(b, slice_(db("data", "postgresql")))])
    assert ra.outcome == "failed" and ra.retry_after is not None and "mariadb on drv-a" in ra.message
    assert rb.outcome == "provisioned"
    assert down.drifted(A, [ensure(a, slice_(db("app", "mariadb")))]) == {}


def test_timings_of_a_batch(cluster: Cluster, driver: DbDriver, subs: list[str]) -> None:
    """20 subscriptions x 2 databases: apply, no-op re-apply and drift check, printed."""
    changes = [ensure(new_sub(subs), slice_(db("app", "mariadb"), db("data", "postgresql"))) for _ in range(20)]
    t0 = time.perf_counter()
    ok(driver.apply(A, changes))
    t1 = time.perf_counter()
    ok(driver.apply(A, changes))
    t2 = time.perf_counter()
    assert driver.drifted(A, changes) == {}
    t3 = time.perf_counter()
    print(f"\n40 databases: apply {t1 - t0:.2f}s, no-op re-apply {t2 - t1:.3f}s, drift check {t3 - t2:.3f}s")
    assert driver.last_changes == 0
    assert t2 - t1 < 2.0 and t3 - t2 < 2.0
