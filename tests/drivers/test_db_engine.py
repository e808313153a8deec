"""The db driver under the real reconcile engine (what registry wiring gives): a
subscription's databases on their own servers, suspension through the customer,
drift repair through ``Engine.resync``, deletion with final dumps (LIFE-6), a move's
freeze of its databases as their logins see it (issue 13)."""

from __future__ import annotations

import datetime as dt
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest

from controller import model
from controller.drivers import base
from controller.drivers.db import DbDriver, credentials, fence, mariadb, postgresql
from controller.drivers.db import driver as db_driver
from controller.reconcile import engine
from controller.state import regions
from controller.state import store as state_store

from .conftest import SERVERS, Cluster

pytestmark = pytest.mark.embedded

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def desired(tmp: Path, sub: str, customer_state: str, *, with_sub: bool = True) -> model.DesiredState:
    doc = textwrap.dedent(f"""
        apiVersion: tenantctl.io/v1
        kind: Customer
        metadata: {{name: dbcust}}
        spec: {{email: ops@example.test, state: {customer_state}}}
        ---
        apiVersion: tenantctl.io/v1
        kind: ServicePlan
        metadata: {{name: dbplan}}
        spec:
          resources: {{databases: 5, databaseQuotaMB: 512}}
          hosting: {{enabled: true, php: {{handler: fpm, version: "8.2"}}}}
        """)
    if with_sub:
        doc += textwrap.dedent(f"""
            ---
            apiVersion: tenantctl.io/v1
            kind: Subscription
            metadata: {{name: {sub}}}
            spec:
              customer: dbcust
              plan: dbplan
              region: eu-west
              server: drv-b
              databases:
                - {{name: app, engine: mariadb}}
                - {{name: stats, engine: postgresql}}
            """)
    f = tmp / "desired.yaml"
    f.write_text(doc)
    return model.load_desired([SERVERS, f])


@pytest.fixture
def setup(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[str, engine.Engine, DbDriver]]:
    sub = f"e{uuid.uuid4().hex[:10]}.example.test"
    drv = DbDriver(cluster.ctx)
    drivers: dict[str, base.Driver] = {c: base.NotProvisioned(c) for c in base.CONCERNS}
    drivers["db"] = drv
    with state_store.Store(tmp_path / "state.db", now=lambda: NOW) as store:
        yield sub, engine.Engine(store, drivers, clock=lambda: NOW), drv
    drv.apply(None, [base.Change(sub, "delete", {"name": sub})])
    shutil.rmtree(cluster.state_dir / "retained" / sub, ignore_errors=True)


def fence_rows(cluster: Cluster, sub: str) -> dict[str, int | None]:
    """The generation of ``sub`` in each engine's ``tenantctl.fence`` table (drv-b's
    MariaDB, drv-a's PostgreSQL); None: no row (or no table yet)."""
    out: dict[str, int | None] = {}
    my = cluster.ctx.secrets("drv-b")
    conn = pymysql.connect(host=cluster.ctx.servers["drv-b"].address, user=my["mariadb_admin_user"],
                           password=my["mariadb_admin_password"], autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                        (fence.SCHEMA, fence.TABLE))
            row = cur.fetchone()
            if row and row[0]:
                cur.execute(f"SELECT generation FROM `{fence.SCHEMA}`.`{fence.TABLE}` WHERE subscription = %s",
                            (sub,))
                found = cur.fetchone()
                out["mariadb"] = int(found[0]) if found else None
            else:
                out["mariadb"] = None
    finally:
        conn.close()
    pg = cluster.ctx.secrets("drv-a")
    with psycopg.connect(host=cluster.ctx.servers["drv-a"].address, user=pg["postgresql_admin_user"],
                         password=pg["postgresql_admin_password"], dbname="postgres", autocommit=True) as c:
        found = c.execute("SELECT to_regclass('tenantctl.fence') IS NOT NULL").fetchone()
        got = (c.execute("SELECT generation FROM tenantctl.fence WHERE subscription = %s", (sub,)).fetchone()
               if found and found[0] else None)
        out["postgresql"] = int(got[0]) if got else None
    return out


def forget_fence(cluster: Cluster, sub: str) -> None:
    """Remove this test's rows (the servers outlive the test when shared)."""
    my = cluster.ctx.secrets("drv-b")
    conn = pymysql.connect(host=cluster.ctx.servers["drv-b"].address, user=my["mariadb_admin_user"],
                           password=my["mariadb_admin_password"], autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM `{fence.SCHEMA}`.`{fence.TABLE}` WHERE subscription = %s", (sub,))
    finally:
        conn.close()
    pg = cluster.ctx.secrets("drv-a")
    with psycopg.connect(host=cluster.ctx.servers["drv-a"].address, user=pg["postgresql_admin_user"],
                         password=pg["postgresql_admin_password"], dbname="postgres", autocommit=True) as c:
        c.execute("DELETE FROM tenantctl.fence WHERE subscription = %s", (sub,))


def test_a_stale_controller_is_fenced_on_both_database_servers(
        cluster: Cluster, tmp_path: Path, setup: tuple[str, engine.Engine, DbDriver]) -> None:
    """Issue 10 item 4 (DR-1): once a pass of generation 2 wrote the subscription's
    databases, a controller that still has generation 1 (its own state store) changes
    nothing on either server: the logins stay locked."""
    sub, eng, drv = setup
    assert eng.reconcile(desired(tmp_path, sub, "active")).ok
    assert fence_rows(cluster, sub) == {"mariadb": None, "postgresql": None}  # generation 1: nothing written
    regions.bump(eng.store, [sub])
    try:
        assert eng.reconcile(desired(tmp_path, sub, "suspended")).outcomes[sub]["db"] == "provisioned"
        assert fence_rows(cluster, sub) == {"mariadb": 2, "postgresql": 2}
        stale_drv = DbDriver(cluster.ctx)
        drivers: dict[str, base.Driver] = {c: base.NotProvisioned(c) for c in base.CONCERNS}
        drivers["db"] = stale_drv
        with state_store.Store(tmp_path / "stale.db", now=lambda: NOW) as stale_store:
            stale = engine.Engine(stale_store, drivers, clock=lambda: NOW)
            report = stale.reconcile(desired(tmp_path, sub, "active"))
            assert report.outcomes[sub]["db"] == "failed", report.outcomes
            [cond] = [c for c in stale_store.conditions_of([sub])[sub] if c.type == "DbReady"]
            assert "mariadb on drv-b: fenced" in cond.message and "postgresql on drv-a: fenced" in cond.message
            assert "is at generation 2 on this server, the job carries generation 1" in cond.message
        app = {c.db: c for c in credentials.list_for(cluster.state_dir, sub)}["app"]
        with pytest.raises(pymysql.err.OperationalError, match="locked"):
            pymysql.connect(host=app.host, port=app.port, user=app.user, password=app.password, database=app.database)
    finally:
        drv.use_generations({})  # the teardown's deletion raises nothing again
        forget_fence(cluster, sub)


def test_engine_places_creates_locks_repairs_and_deletes(
        cluster: Cluster, tmp_path: Path, setup: tuple[str, engine.Engine, DbDriver]) -> None:
    sub, eng, drv = setup
    report = eng.reconcile(desired(tmp_path, sub, "active"))
    assert report.ok, report.failed
    assert report.outcomes[sub]["db"] == "provisioned"
    found = {c.db: c for c in credentials.list_for(cluster.state_dir, sub)}
    # web lives on drv-b; the PostgreSQL database can only be on drv-a
    assert found["stats"].server == "drv-a" and found["stats"].engine == "postgresql"
    assert drv.last_usage[sub]["databaseMB"] >= 0
    app = found["app"]
    # a second pass does nothing
    assert eng.reconcile(desired(tmp_path, sub, "active")).outcomes == {}
    # suspension through the customer (LIFE-4) locks the logins
    assert eng.reconcile(desired(tmp_path, sub, "suspended")).outcomes[sub]["db"] == "provisioned"
    with pytest.raises(pymysql.err.OperationalError, match="locked"):
        pymysql.connect(host=app.host, port=app.port, user=app.user, password=app.password, database=app.database)
    # drift: unlocked by hand -> resync finds and repairs it
    secrets = cluster.ctx.secrets(app.server)
    conn = pymysql.connect(host=app.host, user=secrets["mariadb_admin_user"],
                           password=secrets["mariadb_admin_password"], autocommit=True)
    with conn.cursor() as cur:
        cur.execute("ALTER USER %s@'127.0.0.0/255.0.0.0' ACCOUNT UNLOCK", (app.user,))
    conn.close()
    found_drift = eng.resync(desired(tmp_path, sub, "suspended"))
    assert found_drift == {sub: {"db": "app: user not locked (suspended)"}}
    # resync only marks it; the repair is an ordinary pass (conditions, status, events)
    assert "update:db" in eng.plan(desired(tmp_path, sub, "suspended")).actions[sub]
    assert eng.reconcile(desired(tmp_path, sub, "suspended")).outcomes[sub]["db"] == "provisioned"
    with pytest.raises(pymysql.err.OperationalError, match="locked"):
        pymysql.connect(host=app.host, port=app.port, user=app.user, password=app.password, database=app.database)
    assert eng.resync(desired(tmp_path, sub, "suspended")) == {}
    # deletion: final dumps, then nothing left
    report = eng.reconcile(desired(tmp_path, sub, "active", with_sub=False))
    assert report.ok, report.failed
    assert report.outcomes[sub]["db"] == "provisioned"
    assert credentials.list_for(cluster.state_dir, sub) == []
    assert sorted(p.name.split("-", 1)[1] for p in (cluster.state_dir / "retained" / sub).iterdir()) == [
        "app.sql.zst" if shutil.which("zstd") else "app.sql.gz",
        "stats.sql.zst" if shutil.which("zstd") else "stats.sql.gz"]


def pg_admin(cluster: Cluster, server: str, query: str, args: tuple[object, ...] = (),
             dbname: str = "postgres") -> list[tuple[object, ...]]:
    secrets = cluster.ctx.secrets(server)
    with psycopg.connect(host=cluster.ctx.servers[server].address, user=secrets["postgresql_admin_user"],
                         password=secrets["postgresql_admin_password"], dbname=dbname, autocommit=True) as c:
        cur = c.execute(query, args)
        return cur.fetchall() if cur.description else []


def as_login(c: credentials.Credentials) -> psycopg.Connection[tuple[object, ...]]:
    """A session of the site's: the database's own login."""
    return psycopg.connect(host=c.host, port=c.port, user=c.user, password=c.password, dbname=c.database,
                           autocommit=True)


def refused(conn: psycopg.Connection[tuple[object, ...]], *statements: str) -> str:
    """Run ``statements`` in order; the last must fail for want of a privilege (its error)."""
    for statement in statements[:-1]:
        conn.execute(statement)
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as exc:
        conn.execute(statements[-1])
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")
    return str(exc.value)


def test_a_move_s_freeze_is_read_only_for_the_login_for_real_and_is_given_back_exactly(
        cluster: Cluster, tmp_path: Path, setup: tuple[str, engine.Engine, DbDriver]) -> None:
    """Issue 13: a frozen database keeps serving reads to its login, which can write in
    no way of its own (PostgreSQL: it owns nothing there while frozen, so neither turning
    the read-only default off nor a read-write transaction nor its SECURITY DEFINER
    function writes); a pass of the engine meanwhile gives nothing back; thawing gives
    back ownership and writes, and leaves no role behind; dropping a frozen copy
    (``drop_copy``) neither."""
    sub, eng, drv = setup
    ds = desired(tmp_path, sub, "active")
    assert eng.reconcile(ds).ok
    found = {c.db: c for c in credentials.list_for(cluster.state_dir, sub)}
    stats, app = found["stats"], found["app"]
    holder = postgresql.holder(stats.database)
    with as_login(stats) as c:
        c.execute("CREATE TABLE t (id serial PRIMARY KEY, v text)")
        c.execute("INSERT INTO t (v) VALUES ('before')")
        c.execute("CREATE FUNCTION add_row() RETURNS void LANGUAGE sql SECURITY DEFINER "
                  "AS $$ INSERT INTO t (v) VALUES ('definer') $$")
    my = pymysql.connect(host=app.host, port=app.port, user=app.user, password=app.password, database=app.database,
                         autocommit=True)
    with my.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO t (v) VALUES ('before')")
    my.close()

    def owners() -> list[tuple[object, ...]]:
        return pg_admin(cluster, stats.server,
                        "SELECT (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()), "
                        "(SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 't'::regclass), "
                        "(SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'add_row'), "
                        "(SELECT count(*) FROM pg_roles WHERE rolname = %s)", (holder,), dbname=stats.database)

    # a crash of an earlier freeze between MariaDB's REVOKE and GRANT: the login has no grant at all
    secrets = cluster.ctx.secrets(app.server)
    with pymysql.connect(host=app.host, user=secrets["mariadb_admin_user"], password=secrets["mariadb_admin_password"],
                         autocommit=True) as m, m.cursor() as cur:
        cur.execute(f"REVOKE ALL PRIVILEGES ON {mariadb.grant_pattern(app.database)}.* FROM %s@%s",
                    (app.user, drv.settings.mariadb_login_host))
    site = as_login(stats)  # open when the move freezes the database
    for frozen in (stats, app, stats, app):  # twice: a re-run of the step
        db_driver.freeze(drv, frozen)
    with pytest.raises(psycopg.OperationalError):
        site.execute("SELECT 1")  # its sessions are ended
    site.close()
    assert owners() == [(holder, holder, stats.user, 1)]

    def read_only() -> None:
        with as_login(stats) as c:
            assert c.execute("SELECT v FROM t").fetchall() == [("before",)]  # the site keeps reading
            refused(c, "INSERT INTO t (v) VALUES ('x')")
            refused(c, "SET default_transaction_read_only = off", "INSERT INTO t (v) VALUES ('x')")
            refused(c, "BEGIN READ WRITE", "INSERT INTO t (v) VALUES ('x')")
            refused(c, "CREATE TABLE u (a int)")
            refused(c, "SELECT add_row()")  # runs as its owner, the login: no write either
            refused(c, f'ALTER DATABASE "{stats.database}" SET default_transaction_read_only = off')
            refused(c, "UPDATE t SET v = 'x'")
        with pymysql.connect(host=app.host, port=app.port, user=app.user, password=app.password,
                             database=app.database) as m, m.cursor() as cur:
            cur.execute("SELECT v FROM t")
            assert cur.fetchall() == (("before",),)
            with pytest.raises(pymysql.err.OperationalError, match="INSERT command denied"):
                cur.execute("INSERT INTO t (v) VALUES ('x')")

    read_only()
    # a pass meanwhile (the planner places it again from the move's ``placing`` on) gives nothing back
    assert eng.reconcile(ds, force=[sub]).ok
    assert eng.resync(ds) == {}
    read_only()
    assert owners() == [(holder, holder, stats.user, 1)]

    for thawed in (stats, app, stats):  # twice: the thaw of an abort re-run
        db_driver.freeze(drv, thawed, read_only=False)
    assert owners() == [(stats.user, stats.user, stats.user, 0)]
    assert pg_admin(cluster, stats.server, "SELECT datacl::text[] FROM pg_database WHERE datname = %s",
                    (stats.database,)) == [([f"{stats.user}=CTc/{stats.user}"],)]
    assert pg_admin(cluster, stats.server, "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d "
                    "ON d.oid = s.setdatabase WHERE d.datname = %s", (stats.database,)) == [(0,)]
    with as_login(stats) as c:
        c.execute("INSERT INTO t (v) VALUES ('after')")
        c.execute("SELECT add_row()")
        c.execute("CREATE TABLE u (a int)")
        assert c.execute("SELECT v FROM t ORDER BY id").fetchall() == [("before",), ("after",), ("definer",)]
    with pymysql.connect(host=app.host, port=app.port, user=app.user, password=app.password,
                         database=app.database, autocommit=True) as m, m.cursor() as cur:
        cur.execute("INSERT INTO t (v) VALUES ('after')")
    assert eng.reconcile(ds, force=[sub]).ok and eng.resync(ds) == {}

    # the source's copy of a moved database: frozen, then dropped with its holder
    db_driver.freeze(drv, stats)
    assert "then dropped" in db_driver.drop_copy(drv, stats)
    assert pg_admin(cluster, stats.server, "SELECT rolname FROM pg_roles WHERE rolname IN (%s, %s)",
                    (holder, stats.user)) == []
