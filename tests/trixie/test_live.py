"""Servers of two Debian releases (issue 13, item 1), for real: a plan asking PHP 8.4 is
unsynced on the bookworm server (SYNC-3, PHP-4: it offers 8.2 only) and synced on the
trixie one, where PHP-FPM 8.4 serves the tenant's page and MariaDB 11.8 and PostgreSQL 17
hold its databases (the host's mariadb and psql clients, the tenant's own logins).
"""

from __future__ import annotations

import os
import subprocess

import pytest
from e2e.conftest import E2E, curl

from controller.agent import pgpitrjobs as pj
from controller.drivers import naming
from controller.drivers.embedded import engine
from controller.model import kinds

pytestmark = pytest.mark.embedded

NEW, OLD = "new.tx.example.org", "old.tx.example.org"
TRIXIE, BOOKWORM = "127.0.115.1", "127.0.115.2"
PAGE = b"<?php echo PHP_VERSION, \"\\n\";\n"


def as_tenant(live: E2E, server: str, domain: str, script: str, stdin: bytes = b"") -> str:
    """``sh -c script`` in the server's container as the subscription's system user."""
    eng = engine.find_engine()
    assert eng is not None, "no docker engine"
    eng.client.close()
    done = subprocess.run(["docker", "-H", eng.base_url, "exec", "-i", "-u", naming.system_user(domain),
                           live.container(server), "sh", "-c", script],
                          input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def creds(live: E2E, db: str) -> dict[str, str]:
    return {k: str(v) for k, v in live("db", "credentials", NEW, db, "-o", "json").json().items()}


def test_servers_run_their_release(live: E2E) -> None:
    servers = {s["name"]: s for s in live("env", "status", *live.files(), "-o", "json").json()["servers"]}
    assert {n: s["os"] for n, s in servers.items()} == {"tx-13": "debian-13", "tx-12": "debian-12"}
    assert all(v == "up" for s in servers.values() for v in s["services"].values()), servers
    releases = {name: live.on(name, "cat", "/etc/debian_version").text for name in servers}
    assert releases["tx-13"].startswith("13.") and releases["tx-12"].startswith("12."), releases


def test_php_84_is_unsynced_on_bookworm_and_served_on_trixie(live: E2E) -> None:
    live("apply", *live.files(), check=None)
    status = live.status()
    old, new = status[OLD], status[NEW]
    assert old["server"] == "tx-12" and old["sync"] == "unsynced", old
    assert {"property": "hosting.php.version", "planValue": "8.4", "availableValue": "8.2"} in old["conflicts"]
    assert new["server"] == "tx-13" and new["sync"] == "synced" and not new["conflicts"], new
    assert {c: new["concerns"][c] for c in ("web", "php", "db")} == dict.fromkeys(("web", "php", "db"), "provisioned"), (
        new["conditions"])

    # SYNC-3: the unsynced one runs with the available value, PHP 8.2 of bookworm
    assert old["effective"]["hosting"]["php"]["version"] == "8.2", old["effective"]["hosting"]
    for server, domain, address, want in (("tx-13", NEW, TRIXIE, "8.4."), ("tx-12", OLD, BOOKWORM, "8.2.")):
        as_tenant(live, server, domain, f"cat > /srv/www/{domain}/httpdocs/index.php", PAGE)
        version = curl(f"http://{domain}/", f"{domain}:80:{address}").strip()
        assert version.startswith(want), (domain, version)


def test_databases_run_mariadb_118_and_postgresql_17(live: E2E) -> None:
    c = creds(live, "app")
    p = subprocess.run(["mariadb", "-N", "-B", "-h", c["host"], "-P", c["port"], "-u", c["user"], f"-p{c['password']}",
                        c["database"], "-e", "SELECT version()"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("11.8."), p.stdout
    c = creds(live, "ledger")
    p = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", c["host"], "-p", c["port"],
                        "-U", c["user"], "-d", c["database"], "-c", "SELECT version()"], capture_output=True,
                       text=True, timeout=60, env={"PGPASSWORD": c["password"], "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("PostgreSQL 17."), p.stdout


def test_the_pitr_agents_paths_name_the_trixie_cluster(live: E2E) -> None:
    """The pgpitr agent's paths for the version the controller sends to tx-13 (its
    release's, ``kinds.RELEASES``) are the real PostgreSQL 17 cluster's (issue 13)."""
    version = kinds.RELEASES[live.spec("tx-13").os].postgresql
    assert version == "17"
    for check in (["test", "-f", f"{pj.pg_data(version)}/PG_VERSION"],
                  ["test", "-d", os.path.dirname(pj.pg_conf(version))],
                  ["runuser", "-u", "postgres", "--", f"{pj.pg_bin(version)}/pg_isready", "-q", "-h", pj.PG_SOCKET],
                  ["test", "-d", os.path.dirname(pj.scratch(version))]):
        done = live.on("tx-13", *check)
        assert done.returncode == 0, (check, done.stderr)
    assert live.on("tx-13", "cat", f"{pj.pg_data(version)}/PG_VERSION").text.strip() == "17"
