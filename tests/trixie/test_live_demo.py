"""A demo platform reset at minute 44 on a fake clock (issue 13 item 4, PLAT-3), for real:
a reference subscription and a demo of it on the trixie server (tx-13, addresses
127.0.115.x), each with a MariaDB and a PostgreSQL database and a page. The reference is
backed up; ``tenantctl demo reset`` fills the demo from it (measured); a visitor adds a
file and rows; ``tenantctl run --once`` with the clock at 10:44:10 in Paris (the region's
time zone) resets the demo: the visitor's file and rows are gone, the reference's content
is back, owned by the demo's own user, and ``status`` shows the reset. Then a test copy
of the reference (PLAT-2): ``tenantctl copy --as --on`` writes its document, ``apply``
creates it at half the reference's resources, ``copy refresh`` fills it exactly (twice:
what was written on the copy in between is gone).

The environment is the one test_live.py used (the ``live`` fixture is the package's: one
environment for both modules; this one runs after it): its documents plus this module's
(``DEMO_DOCS``), so that the other tests' subscriptions stay as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import E2E, curl

from controller.drivers import naming

pytestmark = pytest.mark.embedded

REF, DEMO = "ref.dm.example.org", "play.dm.example.org"
TRIXIE = "127.0.115.1"
#: the fake clock, after every time the other trixie tests used (test_live.py's move is
#: removed 8 days ahead): an hour 9 days ahead; Paris is a whole number of hours from UTC,
#: so minute 44 in UTC is minute 44 there
_HOUR = (dt.datetime.now(dt.UTC) + dt.timedelta(days=9)).replace(minute=0, second=0, microsecond=0)
BACKED_UP, FIRST_RESET, VERIFIED, AT_44, COPIED = (
    (_HOUR + dt.timedelta(seconds=s)).isoformat() for s in (20 * 60, 30 * 60, 35 * 60, 44 * 60 + 10, 50 * 60))
#: a test copy of the reference (PLAT-2), written by ``tenantctl copy``
COPY = "copy.dm.example.org"
PAGE = b"<html>the reference demo shop</html>\n"

DEMO_DOCS = f"""
apiVersion: tenantctl.io/v1
kind: ServicePlan
metadata: {{name: demo-plan}}
spec:
  resources: {{diskMB: 512, databases: 2}}
  hosting: {{ssl: false, php: {{handler: fpm, version: "8.4"}}}}
---
apiVersion: tenantctl.io/v1
kind: Customer
metadata: {{name: demo-customer}}
spec: {{email: ops@dm.example.org, state: active}}
---
apiVersion: tenantctl.io/v1
kind: Subscription
metadata: {{name: {REF}}}
spec:
  customer: demo-customer
  plan: demo-plan
  region: eu-west
  server: tx-13
  databases: [{{name: shop, engine: mariadb}}, {{name: books, engine: postgresql}}]
---
apiVersion: tenantctl.io/v1
kind: Subscription
metadata: {{name: {DEMO}}}
spec:
  customer: demo-customer
  plan: demo-plan
  region: eu-west
  server: tx-13
  databases: [{{name: shop, engine: mariadb}}, {{name: books, engine: postgresql}}]
  demo: {{resetFrom: {REF}}}
"""


@pytest.fixture(scope="module")
def demo_env(live: E2E) -> E2E:
    """``live`` (the environment test_live.py used: this module runs after it) with its
    documents plus ``DEMO_DOCS``: the other tests' subscriptions stay as they are."""
    d = live.desired.parent / "demo-desired"
    d.mkdir(exist_ok=True)
    for f in live.desired.glob("*.yaml"):
        (d / f.name).write_text(f.read_text())
    (d / "demo.yaml").write_text(DEMO_DOCS)
    return dataclasses.replace(live, desired=d)


def at(env: E2E, when: str) -> E2E:
    """``env`` with the controller's clock fixed at ``when`` (TENANTCTL_NOW)."""
    return dataclasses.replace(env, env={**env.env, "TENANTCTL_NOW": when})


def _sql(env: E2E, sub: str, db: str, sql: str) -> str:
    c = {k: str(v) for k, v in env("db", "credentials", sub, db, "-o", "json").json().items()}
    if db == "shop":
        argv = ["mariadb", "-N", "-B", "-h", c["host"], "-P", c["port"], "-u", c["user"], f"-p{c['password']}",
                c["database"], "-e", sql]
        penv = None
    else:
        argv = ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", c["host"], "-p", c["port"], "-U", c["user"],
                "-d", c["database"], "-c", sql]
        penv = {"PGPASSWORD": c["password"], "PATH": "/usr/bin:/bin"}
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=penv)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def as_user(env: E2E, sub: str, script: str, *args: str, stdin: bytes | None = None) -> Any:
    done = env.on("tx-13", "runuser", "-u", naming.system_user(sub), "--", "sh", "-c", script, "sh", *args,
                  stdin=stdin)
    assert done.returncode == 0, done.error
    return done


SUMS = {"shop": "SELECT COUNT(*), MD5(GROUP_CONCAT(id, ':', name ORDER BY id SEPARATOR ',')) FROM items",
        "books": "SELECT count(*) || ' ' || md5(string_agg(id || ':' || title, ',' ORDER BY id)) FROM titles"}


def content(env: E2E, sub: str) -> dict[str, str]:
    return {db: _sql(env, sub, db, q) for db, q in SUMS.items()}


def page(sub: str, path: str = "/index.html") -> str:
    return curl(f"http://{sub}{path}", f"{sub}:80:{TRIXIE}")


def test_a_demo_is_reset_at_minute_44_from_its_reference(demo_env: E2E, tmp_path: Path) -> None:
    env = demo_env
    at(env, BACKED_UP)("apply", *env.files())
    docroot = naming.docroot(REF)
    as_user(env, REF, 'cat > "$1"', f"{docroot}/index.html", stdin=PAGE)
    _sql(env, REF, "shop", "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40)); "
                           "INSERT INTO items VALUES (1, 'apple'), (2, 'pear'), (3, 'fig')")
    _sql(env, REF, "books", "CREATE TABLE titles (id INT PRIMARY KEY, title TEXT); "
                            "INSERT INTO titles SELECT g, 'title ' || g FROM generate_series(1, 50) g")
    reference = content(env, REF)
    at(env, BACKED_UP)("backup", "run", *env.files(), REF)

    # the first reset fills the demo (measured)
    first = at(env, FIRST_RESET)("demo", "reset", *env.files(), DEMO, "-o", "json").json()
    assert first["ok"] and first["source"] == REF and len(first["snapshots"]) == 3, first
    assert page(DEMO) == PAGE.decode() and content(env, DEMO) == reference
    print(f"\nfirst reset of {DEMO}: {first['seconds']:.1f} s")

    # a visitor plays: a file and rows, a table of their own
    as_user(env, DEMO, 'echo "a visitor was here" > "$1"', f"{naming.docroot(DEMO)}/visitor.html")
    _sql(env, DEMO, "shop", "INSERT INTO items VALUES (4, 'visitor'); CREATE TABLE graffiti (line TEXT)")
    _sql(env, DEMO, "books", "UPDATE titles SET title = 'defaced' WHERE id = 1")
    assert page(DEMO, "/visitor.html").strip() == "a visitor was here"
    assert content(env, DEMO) != reference

    # no nightly care in the way of the reset (it checks the repositories exclusively)
    at(env, VERIFIED)("backup", "verify", *env.files(), "--no-rotate", "--no-drill")
    # 10:44:10 in Paris: `run` resets the demo (its schedule: every hour at minute 44)
    at(env, AT_44)("run", "--once", *env.files(), timeout=300)
    item = env.status()[DEMO]
    assert item["demo"]["ok"] and item["demo"]["lastReset"] == AT_44, item["demo"]
    cond = next(c for c in item["conditions"] if c["type"] == "DemoReset")
    assert (cond["status"], cond["reason"]) == ("True", "Reset"), cond
    assert page(DEMO) == PAGE.decode() and content(env, DEMO) == reference
    gone = env.on("tx-13", "test", "-e", f"{naming.docroot(DEMO)}/visitor.html")
    assert gone.returncode != 0, "the visitor's file is still there"
    assert _sql(env, DEMO, "shop", "SHOW TABLES") == "items"
    owner = env.on("tx-13", "stat", "-c", "%U", f"{naming.docroot(DEMO)}/index.html").text.strip()
    assert owner == naming.system_user(DEMO)
    assert content(env, REF) == reference  # the reference untouched
    print(f"reset at 10:44 (Paris) of {DEMO}: {item['demo']['seconds']:.1f} s")


def test_a_test_copy_is_made_at_half_the_size_and_refreshed_exactly(demo_env: E2E) -> None:
    env = at(demo_env, COPIED)
    env("copy", *env.files(), REF, "--as", COPY, "--on", "tx-13", "--out", str(env.desired / "copy.yaml"))
    env("apply", *env.files())
    items = env.status()
    cp, ref = items[COPY], items[REF]
    assert cp["server"] == "tx-13" and cp["effective"]["sandbox"] == {"kind": "copy", "source": REF}, cp
    assert cp["effective"]["resources"]["diskMB"] * 2 == ref["effective"]["resources"]["diskMB"]
    assert cp["effective"]["backup"]["content"] == "none"

    first = env("copy", "refresh", *env.files(), COPY, "-o", "json").json()
    assert first["ok"] and first["source"] == REF, first
    assert page(COPY) == PAGE.decode() and content(env, COPY) == content(env, REF)
    owner = env.on("tx-13", "stat", "-c", "%U", f"{naming.docroot(COPY)}/index.html").text.strip()
    assert owner == naming.system_user(COPY)

    as_user(env, COPY, 'echo "tried something" > "$1"', f"{naming.docroot(COPY)}/try.html")
    _sql(env, COPY, "shop", "DELETE FROM items WHERE id = 1")
    again = env("copy", "refresh", *env.files(), COPY, "-o", "json").json()
    assert again["ok"], again
    assert env.on("tx-13", "test", "-e", f"{naming.docroot(COPY)}/try.html").returncode != 0
    assert content(env, COPY) == content(env, REF)
    print(f"\ncopy refresh of {COPY}: {first['seconds']:.1f} s, then {again['seconds']:.1f} s")
