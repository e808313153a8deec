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

import pymysql
import pytest

from controller import model
from controller.drivers import base
from controller.drivers.db import DbDriver, credentials
from controller.reconcile import engine
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
