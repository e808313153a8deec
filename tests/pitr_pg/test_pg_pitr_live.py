"""PostgreSQL point-in-time recovery for real (issue 10, BKP-4): real PostgreSQL 15 and
pgBackRest 2.45 on embedded servers, two repositories in two regions over pgBackRest's
TLS server, checked with psql and pgBackRest's own tools on the servers.

The tests run in file order and build on each other: configure archiving (idempotent,
one restart), base backups into both regions and verify, recover one tenant database to
a time (the other tenant untouched), targets outside the archive refused with nothing
changed, the RPO bound on an idle database, archive lag while a repository is down.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time

import pytest
from e2e.conftest import wait_for

from controller import errors
from controller.drivers.backup import pgpitr
from controller.provisioning import backup as backup_secrets
from controller.provisioning import pitr as pitr_secrets

from .conftest import Pitr

pytestmark = pytest.mark.embedded

DB_SERVER, REPO_A, REPO_B = "pitr-db-a", "pitr-bk-a", "pitr-bk-b"
A, B = "tenant_a_shop", "tenant_b_blog"


def sh(p: Pitr, server: str, *argv: str) -> str:
    done = p.env.on(server, *argv)
    assert done.returncode == 0, f"{argv}: {done.error}"
    return done.text.strip()


def psql(p: Pitr, db: str, sql: str) -> str:
    return sh(p, DB_SERVER, "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-v",
              "ON_ERROR_STOP=1", "-d", db, "-c", sql)


def rows(p: Pitr, db: str) -> list[int]:
    out = psql(p, db, "SELECT id FROM t ORDER BY id")
    return [int(x) for x in out.split()]


def in_repo(p: Pitr, repo_host: str, segment: str) -> bool:
    found = sh(p, repo_host, "find", "/var/lib/pgbackrest/archive", "-name", f"{segment}-*")
    return bool(found)


def tls_handshake(p: Pitr, host: str) -> str:
    """openssl's view of ``host``'s pgBackRest TLS server (client: the db server's identity)."""
    folder = p.env.state / "pitr-client"
    folder.mkdir(exist_ok=True, mode=0o700)
    cert, key = pitr_secrets.identity(p.env.state, DB_SERVER)
    for name, text in (("ca.pem", backup_secrets.ca_pem(p.env.state)), ("cert.pem", cert), ("key.pem", key)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o600)
    address = p.topo.ctx.servers[host].address
    done = subprocess.run(["openssl", "s_client", "-connect", f"{address}:8432", "-verify_hostname", host,
                           "-CAfile", str(folder / "ca.pem"), "-cert", str(folder / "cert.pem"), "-key",
                           str(folder / "key.pem")], input=b"", capture_output=True, timeout=30)
    return (done.stdout + done.stderr).decode(errors="replace")


def start_time(p: Pitr) -> str:
    return psql(p, "postgres", "SELECT pg_postmaster_start_time()")


def test_ensure_configures_archiving_once(pitr: Pitr) -> None:
    """Archiving into both regions; a second ensure changes nothing and restarts nothing."""
    for db, owner in ((A, "tenant_a"), (B, "tenant_b")):
        psql(pitr, "postgres", f"CREATE ROLE {owner} LOGIN")
        psql(pitr, "postgres", f"CREATE DATABASE {db} OWNER {owner}")
        psql(pitr, db, f"SET ROLE {owner}; CREATE TABLE t (id int PRIMARY KEY, v text)")
    t0 = time.monotonic()
    assert pgpitr.ensure(pitr.topo, pitr.pool, [DB_SERVER]) == {DB_SERVER: ""}
    print(f"\nfirst ensure (3 hosts, one PostgreSQL restart): {time.monotonic() - t0:.1f} s")
    assert psql(pitr, "postgres", "SHOW archive_mode") == "on"
    assert psql(pitr, "postgres", "SHOW archive_timeout") == "1min"
    started = start_time(pitr)
    t0 = time.monotonic()
    assert pgpitr.ensure(pitr.topo, pitr.pool, [DB_SERVER]) == {DB_SERVER: ""}
    print(f"second ensure (nothing to do): {time.monotonic() - t0:.1f} s")
    assert start_time(pitr) == started
    for host in (DB_SERVER, REPO_A, REPO_B):  # a TLS server on each: the backup CA, the server's name
        assert "Verify return code: 0 (ok)" in tls_handshake(pitr, host)
    assert pgpitr.ensure(pitr.topo, pitr.pool, [REPO_B]) == {REPO_B: f"{REPO_B} is not a db-postgresql server"}


def test_full_backup_lands_in_both_regions_and_verifies(pitr: Pitr) -> None:
    done = pgpitr.base_backup(pitr.topo, pitr.pool, DB_SERVER, "full")
    print(f"\nfull base backup into both regions: {done.seconds} s {done.labels}")
    assert done.ok, done.errors
    assert set(done.labels) == {"eu-west", "us-east"}
    for host, repo, region in ((REPO_A, "1", "eu-west"), (REPO_B, "2", "us-east")):
        listed = sh(pitr, host, "runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={DB_SERVER}",
                    f"--repo={repo}", "info")
        assert done.labels[region] in listed, listed
    diff = pgpitr.base_backup(pitr.topo, pitr.pool, DB_SERVER, "diff")
    assert diff.ok and all(label.endswith("D") for label in diff.labels.values()), diff
    assert pgpitr.verify(pitr.topo, pitr.pool, DB_SERVER) == ""
    win = pgpitr.window(pitr.topo, pitr.pool, DB_SERVER)
    assert win is not None and win[0] <= win[1], win


def test_recover_one_database_to_a_time(pitr: Pitr) -> None:
    """Rows 1-2, the noted time, row 3: A recovered to the time holds exactly rows 1-2;
    B (same server) keeps every row, also those written after the time."""
    psql(pitr, A, "INSERT INTO t VALUES (1, 'one'), (2, 'two')")
    psql(pitr, B, "INSERT INTO t VALUES (10, 'b-before')")
    time.sleep(0.5)
    noted = dt.datetime.now(dt.UTC)
    time.sleep(1.5)
    psql(pitr, A, "INSERT INTO t VALUES (3, 'three')")
    psql(pitr, B, "INSERT INTO t VALUES (11, 'b-after')")
    assert rows(pitr, A) == [1, 2, 3]
    done = pgpitr.recover(pitr.topo, pitr.pool, DB_SERVER, A, noted)
    print(f"\nrecover {A} to {noted.isoformat()}: {done.seconds} s from {done.repository_region} "
          f"base backup {done.base_backup}, stopped: {done.stopped_at}")
    assert rows(pitr, A) == [1, 2]
    assert rows(pitr, B) == [10, 11]
    assert done.repository_region == "eu-west"
    assert done.base_backup.endswith("D")  # the newest backup before the target
    assert "recovery stopping before commit" in done.stopped_at
    assert psql(pitr, A, "SELECT tableowner FROM pg_tables WHERE tablename = 't'") == "tenant_a"
    assert psql(pitr, "postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname IS NOT NULL") != ""
    assert sh(pitr, DB_SERVER, "ls", "/var/lib/postgresql/15") == "main"  # the scratch is gone


@pytest.mark.parametrize("when", [
    pytest.param(lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=1), id="before-oldest-base-backup"),
    pytest.param(lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), id="in-the-future"),
])
def test_target_outside_the_archive_changes_nothing(pitr: Pitr, when: object) -> None:
    before = (rows(pitr, A), rows(pitr, B))
    assert callable(when)
    with pytest.raises(pgpitr.OutOfRange) as info:
        pgpitr.recover(pitr.topo, pitr.pool, DB_SERVER, A, when())
    assert isinstance(info.value, errors.PermanentError)
    assert (rows(pitr, A), rows(pitr, B)) == before


def test_idle_commit_reaches_both_repositories_within_archive_timeout(pitr: Pitr) -> None:
    """RPO bound: on an idle server a committed row's segment is in both regions'
    repositories within archive_timeout (60 s) + 30 s."""
    time.sleep(2)
    psql(pitr, B, "INSERT INTO t VALUES (12, 'rpo')")
    committed = time.monotonic()
    segment = psql(pitr, "postgres", "SELECT pg_walfile_name(pg_current_wal_lsn())")
    wait_for(lambda: in_repo(pitr, REPO_A, segment) and in_repo(pitr, REPO_B, segment), 90,
             f"segment {segment} in both repositories", step=1.0)
    print(f"\nidle commit -> segment {segment} in both repositories: {time.monotonic() - committed:.1f} s")


def test_lag_grows_while_a_repository_is_down(pitr: Pitr) -> None:
    lag = pgpitr.lag(pitr.topo, pitr.pool, [DB_SERVER])[DB_SERVER]
    assert lag.seconds < 5 and lag.newest_archived is not None, lag
    sh(pitr, REPO_B, "service", "tenantctl-pgbackrest", "stop")
    try:
        psql(pitr, B, "INSERT INTO t VALUES (13, 'lag')")
        psql(pitr, "postgres", "SELECT pg_switch_wal()")
        grown = wait_for(lambda: (s := pgpitr.lag(pitr.topo, pitr.pool, [DB_SERVER])[DB_SERVER].seconds) > 5 and s,
                         90, "archive lag above 5 s", step=1.0)
        print(f"\nlag with {REPO_B} down: {grown:.1f} s")
    finally:
        sh(pitr, REPO_B, "service", "tenantctl-pgbackrest", "start")
    t0 = time.monotonic()
    wait_for(lambda: pgpitr.lag(pitr.topo, pitr.pool, [DB_SERVER])[DB_SERVER].seconds == 0.0, 150,
             "archive lag back to 0", step=2.0)
    print(f"lag back to 0 after {time.monotonic() - t0:.1f} s")
