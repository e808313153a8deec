"""The db driver under the real reconcile engine (what registry wiring gives): a
subscription's databases on their own servers, suspension through the customer,
drift repair through ``Engine.resync``, deletion with final dumps (LIFE-6)."""

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
from controller.drivers.db import DbDriver, credentials, fence
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
