"""The region-loss drill (issue 10 item 4, DR-1) for real: eu-west's only server is
stopped (its containers gone dark, as in a region outage), ``tenantctl region evacuate
eu-west --to us-east`` runs, and real clients check the result on us-east: curl over
HTTP and HTTPS (certificate verified against the environment's ACME CA), dig on
us-east's dns server, the MariaDB and PostgreSQL clients. The plan has ``backup.pitr``:
a row written after the nightly backup and archived (MariaDB's binary logs, PostgreSQL's
WAL, both copied to us-east) is there after the evacuation, and the RPO is measured
against the archive. Then eu-west comes back and an ``apply`` runs: nothing of it
overwrites the moved subscriptions.

The tests run in file order and build on each other.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from typing import Any

import pytest
from e2e.conftest import E2E, curl

from controller import errors
from controller.drivers import naming
from controller.provisioning import binlog as binlog_secrets

pytestmark = pytest.mark.embedded

ALPHA, BETA, GAMMA = "alpha.ev.example.org", "beta.ev.example.org", "gamma.ev.example.org"
A, B = "127.0.110.1", "127.0.111.1"
CONCERNS = ("web", "php", "db", "dns", "tls")


def creds(drill: E2E, sub: str, db: str) -> dict[str, Any]:
    out: dict[str, Any] = drill("db", "credentials", sub, db, "-o", "json").json()
    return out


def mariadb(drill: E2E, sql: str) -> str:
    c = creds(drill, ALPHA, "app")
    p = subprocess.run(["mariadb", "-N", "-B", "-h", c["host"], "-P", str(c["port"]), "-u", c["user"],
                        f"-p{c['password']}", c["database"], "-e", sql], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def psql(drill: E2E, sql: str) -> str:
    c = creds(drill, ALPHA, "ledger")
    p = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", c["host"], "-p", str(c["port"]),
                        "-U", c["user"], "-d", c["database"], "-c", sql], capture_output=True, text=True, timeout=60,
                       env={"PGPASSWORD": c["password"], "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def dig(server: str, name: str) -> str:
    p = subprocess.run(["dig", "+short", "+time=2", "+tries=1", f"@{server}", name, "A"],
                       capture_output=True, text=True, timeout=20)
    return p.stdout.strip()


def put(drill: E2E, server: str, domain: str, name: str, text: str) -> None:
    user = naming.system_user(domain)
    path = f"/srv/www/{domain}/httpdocs/{name}"
    done = drill.on(server, "sh", "-c", f"cat > {shlex.quote(path)} && chown {shlex.quote(user)}: {shlex.quote(path)}",
                    stdin=text.encode())
    assert done.returncode == 0, done.error


def answers(drill: E2E, server: str) -> bool:
    try:
        return drill.on(server, "true").returncode == 0
    except errors.TemporaryError:
        return False


def https(drill: E2E, domain: str, ip: str, path: str = "") -> str:
    return curl(f"https://{domain}/{path}", f"{domain}:443:{ip}", cacert=drill.state / "pebble" / "ca-bundle.pem")


def as_postgres(drill: E2E, server: str, sql: str) -> str:
    done = drill.on(server, "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-c", sql)
    assert done.returncode == 0, done.error
    return done.text.strip()


def binlog_archived(drill: E2E) -> bool:
    """ev-a's binary log, up to its current position, is in us-east's archive (on ev-b)."""
    done = drill.on("ev-a", "mariadb", "-N", "-B", "-e", "SHOW MASTER STATUS")
    assert done.returncode == 0, done.error
    name, pos = done.text.split("\t")[:2]
    size = drill.on("ev-b", "stat", "-c", "%s", f"{binlog_secrets.ARCHIVE_ROOT}/ev-a/{name}")
    return size.returncode == 0 and int(size.text) >= int(pos)


def wait_archived(drill: E2E, segment: str, timeout: float = 120.0) -> float:
    """Seconds until the last commits on ev-a are archived: MariaDB's binary log in
    us-east's archive, and PostgreSQL's WAL ``segment`` pushed (pgBackRest pushes every
    segment to both regions' repositories when it is full; archive_timeout 60 s is the
    bound on an idle server: polled, never slept)."""
    started = time.monotonic()
    while not (binlog_archived(drill)
               and as_postgres(drill, "ev-a", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
               >= segment):
        assert time.monotonic() - started < timeout, f"not archived within {timeout:.0f} s (segment {segment})"
        time.sleep(0.5)
    return time.monotonic() - started


def test_the_tenants_live_in_eu_west_with_backups_in_both_regions(drill: E2E) -> None:
    drill("apply", *drill.files())
    status = drill.status()
    for name in (ALPHA, BETA, GAMMA):
        it = status[name]
        assert {c: it["concerns"][c] for c in CONCERNS} == dict.fromkeys(CONCERNS, "provisioned"), it["conditions"]
    assert (status[ALPHA]["server"], status[BETA]["server"], status[GAMMA]["server"]) == ("ev-a", "ev-a", "ev-b")
    for sub in (ALPHA, BETA):
        put(drill, "ev-a", sub, "marker.txt", f"{sub} before the outage\n")
    mariadb(drill, "CREATE TABLE orders (id INT PRIMARY KEY, v TEXT); "
                   "INSERT INTO orders VALUES (1, 'one'), (2, 'two');")
    psql(drill, "CREATE TABLE entries (id INT PRIMARY KEY, v TEXT); INSERT INTO entries VALUES (1, 'a'), (2, 'b');")
    drill("backup", "run", *drill.files(), "--all")
    listed = drill("backup", "list", ALPHA, "-o", "json").json()["snapshots"]
    assert {s["region"] for s in listed} == {"eu-west", "us-east"}
    assert dig(A, ALPHA) == A and dig(B, ALPHA) == A  # primary in eu-west, secondary in us-east
    # after the nightly backup: rows only the archives hold
    mariadb(drill, "INSERT INTO orders VALUES (3, 'three')")
    psql(drill, "INSERT INTO entries VALUES (3, 'c')")
    segment = as_postgres(drill, "ev-a", "SELECT pg_walfile_name(pg_current_wal_lsn())")
    # a busy server: more writes (20 MB, rolled back: nothing to restore) fill the WAL
    # segment of row 3, which is then pushed at once (an idle one waits for
    # archive_timeout: tests/pitr_pg measures that bound)
    psql(drill, "BEGIN; CREATE TABLE busy AS SELECT g, repeat(md5(g::text), 32) AS v "
                "FROM generate_series(1, 20000) g; ROLLBACK;")
    print(f"\nrows written after the nightly backup archived in {wait_archived(drill, segment):.1f} s")


def test_evacuating_a_lost_region_brings_every_tenant_back_in_the_other(drill: E2E) -> None:
    drill.docker("stop", "-t", "5", drill.container("ev-a"))
    gamma_before = https(drill, GAMMA, B)
    started = time.monotonic()
    done = drill("region", "evacuate", *drill.files(), "eu-west", "--to", "us-east", "-o", "json", timeout=900)
    wall = time.monotonic() - started
    doc = done.json()
    moved = {m["subscription"]: m for m in doc["subscriptions"]}
    assert set(moved) == {ALPHA, BETA}, doc
    assert all(m["ok"] and m["server"] == "ev-b" and m["generation"] == 2 for m in moved.values()), doc
    print(f"\nregion evacuate eu-west -> us-east: {wall:.1f} s for the command; per subscription RTO "
          + ", ".join(f"{n} {m['rtoSeconds']} s (RPO {m['rpoSeconds']} s, {m['rpoBasis']})"
                      for n, m in sorted(moved.items())))
    for p in moved[ALPHA]["pointInTime"]:
        print(f"  {p['database']} ({p['engine']}): from {p['base']}, replay stopped at {p['stoppedAt']}, "
              f"archive in {p['region']}, recovered to {p['point']}")
    assert moved[ALPHA]["rpoBasis"] == "archive" and moved[BETA]["rpoBasis"] == "snapshot", moved
    assert {(p["engine"], p["region"]) for p in moved[ALPHA]["pointInTime"]} == {
        ("mariadb", "us-east"), ("postgresql", "us-east")}, moved[ALPHA]
    assert moved[ALPHA]["notes"] == [] and moved[ALPHA]["rpoSeconds"] < moved[BETA]["rpoSeconds"], moved
    for sub in (ALPHA, BETA):
        assert dig(B, sub) == B, sub
        assert curl(f"http://{sub}/marker.txt", f"{sub}:80:{B}").strip() == f"{sub} before the outage" \
            or https(drill, sub, B, "marker.txt").strip() == f"{sub} before the outage"
        assert https(drill, sub, B, "marker.txt").strip() == f"{sub} before the outage"
    # the rows written after the nightly backup: from the archives copied to us-east
    assert mariadb(drill, "SELECT GROUP_CONCAT(v ORDER BY id) FROM orders") == "one,two,three"
    assert psql(drill, "SELECT string_agg(v, ',' ORDER BY id) FROM entries") == "a,b,c"
    assert creds(drill, ALPHA, "app")["host"] == B
    assert https(drill, GAMMA, B) == gamma_before  # the region's own tenant untouched
    status = drill.status()
    assert status[ALPHA]["region"] == "us-east" and status[ALPHA]["server"] == "ev-b"
    assert status[ALPHA]["concerns"]["dns"] == "failed"  # true: its secondary in eu-west is missing
    dns_ready = next(c for c in status[ALPHA]["conditions"] if c["type"] == "DnsReady")
    assert "evacuated region" in dns_ready["message"] and "ev-a" in dns_ready["message"], dns_ready
    listed = drill("region", "list", "-o", "json").json()
    assert listed == [{"region": "eu-west", "to": "us-east", "since": listed[0]["since"]}]


def test_the_lost_region_coming_back_overwrites_nothing(drill: E2E) -> None:
    put(drill, "ev-b", ALPHA, "after.txt", "written after the evacuation\n")
    mariadb(drill, "INSERT INTO orders VALUES (4, 'four')")
    drill.docker("start", drill.container("ev-a"))
    deadline = time.monotonic() + 120
    while not answers(drill, "ev-a") and time.monotonic() < deadline:
        time.sleep(2)
    drill("apply", *drill.files(), "--retry-now")  # the dns secondaries' retry without waiting
    status = drill.status()
    assert (status[ALPHA]["server"], status[BETA]["server"]) == ("ev-b", "ev-b")
    assert https(drill, ALPHA, B, "after.txt").strip() == "written after the evacuation"
    assert mariadb(drill, "SELECT GROUP_CONCAT(v ORDER BY id) FROM orders") == "one,two,three,four"
    assert dig(B, ALPHA) == B
    assert dig(A, ALPHA) == B, "the returned region's dns server became a secondary of the new primary"
    drill("backup", "run", *drill.files(), ALPHA)
    newest = drill("backup", "list", ALPHA, "-o", "json").json()["snapshots"][0]
    assert newest["region"] in ("us-east", "eu-west")
