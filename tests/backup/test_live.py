"""Backups for real (issue 9): the real ``tenantctl`` against embedded servers, real
MariaDB/PostgreSQL/nginx, real ``rclone serve restic`` repositories in two regions, and
the host's own restic client and SQL clients to check what the product says.

The tests run in file order and build on each other: back up (BKP-1, BKP-3), restore
from the other region (BKP-5), verify and detect a corrupted pack, a dead database
fails only its tenant, an unreachable region is caught up, rotation keeps keepDaily
(BKP-2), an export loads anywhere (BKP-7).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import CLI, E2E, curl, wait_for

from controller import provisioning
from controller.drivers import naming

pytestmark = pytest.mark.embedded

ALPHA, BETA = "alpha.bk.example.org", "beta.bk.example.org"
A, B = "127.0.94.1", "127.0.95.1"
SEED_ROWS = 500


def restic(live: E2E, region_addr: str, *args: str, source: str = "bk-a") -> subprocess.CompletedProcess[str]:
    """The host's restic client against ``source``'s repository on a region's server."""
    pw = provisioning.backup.login_password(live.state, source)
    secrets = live.state / "restic-client"
    secrets.mkdir(exist_ok=True, mode=0o700)
    (secrets / "repo").write_text(provisioning.backup.repo_url(source, pw, region_addr))
    (secrets / "pw").write_text(provisioning.backup.repo_password(live.state, source))
    (secrets / "ca.pem").write_text(provisioning.backup.ca_pem(live.state))
    for f in secrets.iterdir():
        f.chmod(0o600)
    return subprocess.run(["restic", "--no-cache", "--cacert", str(secrets / "ca.pem"), "--repository-file",
                           str(secrets / "repo"), "--password-file", str(secrets / "pw"), *args],
                          capture_output=True, text=True, timeout=300)


def snapshots(live: E2E, region_addr: str, sub: str) -> list[dict[str, Any]]:
    done = restic(live, region_addr, "snapshots", "--json", "--tag", f"sub={sub}")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout) or [])


def creds(live: E2E, sub: str, db: str) -> dict[str, Any]:
    out: dict[str, Any] = live("db", "credentials", sub, db, "-o", "json").json()
    return out


def mariadb(live: E2E, sql: str) -> str:
    c = creds(live, ALPHA, "app")
    p = subprocess.run(["mariadb", "-N", "-B", "-h", c["host"], "-P", str(c["port"]), "-u", c["user"],
                        f"-p{c['password']}", c["database"], "-e", sql], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def psql(live: E2E, sql: str) -> str:
    c = creds(live, ALPHA, "ledger")
    p = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", c["host"], "-p", str(c["port"]),
                        "-U", c["user"], "-d", c["database"], "-c", sql], capture_output=True, text=True, timeout=60,
                       env={"PGPASSWORD": c["password"], "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def sums(live: E2E) -> tuple[str, str]:
    """Row count and a checksum of each seeded table, through the SQL clients."""
    return (mariadb(live, "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('|', id, v))) FROM orders"),
            psql(live, "SELECT count(*), md5(string_agg(id || '|' || v, ',' ORDER BY id)) FROM entries"))


def home_file(live: E2E, rel: str) -> str:
    done = live.on("bk-a", "cat", f"{naming.home(ALPHA)}/{rel}")
    return done.stdout.decode() if done.returncode == 0 else ""


@pytest.fixture(scope="module")
def seeded(live: E2E) -> tuple[str, str]:
    live("apply", *live.files())
    mariadb(live, "CREATE TABLE orders (id INT PRIMARY KEY, v VARCHAR(64)); "
                  f"INSERT INTO orders SELECT seq, CONCAT('order-', seq) FROM seq_1_to_{SEED_ROWS}")
    psql(live, "CREATE TABLE entries (id int PRIMARY KEY, v text); "
               f"INSERT INTO entries SELECT g, 'entry-' || g FROM generate_series(1, {SEED_ROWS}) g")
    user = naming.system_user(ALPHA)
    page = f"{naming.home(ALPHA)}/httpdocs/index.html"
    done = live.on("bk-a", "sh", "-c", f"echo seeded-page > {page} && chown {user}: {page}")
    assert done.returncode == 0, done.error
    return sums(live)


def test_backup_run_is_in_every_region_and_backup_list_agrees(live: E2E, seeded: tuple[str, str]) -> None:
    """BKP-1/BKP-3: after ``backup run --all`` the other region's repository (read with
    restic itself) holds every subscription's snapshots, and ``backup list`` agrees."""
    done = live("backup", "run", *live.files(), "--all")
    assert "Succeeded: 2/2" in done.out, done.out
    for sub, kinds in ((ALPHA, {"settings", "files", "db"}), (BETA, {"settings", "files"})):
        remote = snapshots(live, B, sub)
        assert {t.split("=")[1] for s in remote for t in s["tags"] if t.startswith("kind=")} == kinds, remote
        listed = live("backup", "list", sub, "-o", "json").json()
        assert listed["subscription"] == sub
        assert {s["id"] for s in listed["snapshots"] if s["region"] == "us-east"} == {s["id"] for s in remote}
        local = snapshots(live, A, sub)
        assert {s["id"] for s in listed["snapshots"] if s["region"] == "eu-west"} == {s["id"] for s in local}
        assert {s["original"] for s in remote} == {s["id"] for s in local}  # copies of the local snapshots
    item = live.status()[ALPHA]
    assert set(item["backup"]["regions"]) == {"eu-west", "us-east"}
    ready = next(c for c in item["conditions"] if c["type"] == "BackupReady")
    assert ready["status"] == "True", ready


def test_restore_from_the_other_region_brings_back_exactly_the_backup(live: E2E, seeded: tuple[str, str]) -> None:
    """The restore drill of the issue, as a test (BKP-5): a marker written after the
    backup, the databases dropped and the files deleted; the restore from us-east gives
    the seeded checksums back, the marker is absent, the site answers again."""
    mariadb(live, "INSERT INTO orders VALUES (999999, 'marker-after-backup')")
    psql(live, "INSERT INTO entries VALUES (999999, 'marker-after-backup')")
    assert sums(live) != seeded
    db_app, db_ledger = naming.database(ALPHA, "app"), naming.database(ALPHA, "ledger")
    assert live.on("bk-a", "mariadb", "-e", f"DROP DATABASE `{db_app}`").returncode == 0
    assert live.on("bk-a", "runuser", "-u", "postgres", "--", "psql", "-c",
                   f'DROP DATABASE "{db_ledger}" WITH (FORCE)').returncode == 0
    assert live.on("bk-a", "sh", "-c", f"rm -rf {naming.home(ALPHA)}/httpdocs/*").returncode == 0
    with pytest.raises(subprocess.CalledProcessError):
        curl(f"http://{ALPHA}/", f"{ALPHA}:80:{A}")
    done = live("restore", *live.files(), ALPHA, "--from-region", "us-east", "-o", "json")
    doc = json.loads(done.out)
    assert doc["ok"] and doc["region"] == "us-east", doc
    print(f"\nrestore of {ALPHA} from us-east: {doc['seconds']} s")  # the measured restore time
    assert sums(live) == seeded
    assert "marker-after-backup" not in mariadb(live, "SELECT v FROM orders WHERE id = 999999")
    assert curl(f"http://{ALPHA}/", f"{ALPHA}:80:{A}").strip() == "seeded-page"


def test_restore_that_matches_nothing_changes_nothing(live: E2E, seeded: tuple[str, str]) -> None:
    for args, message in ((["--from-region", "mars"], "no region 'mars'"),
                          (["--only", "db:nosuch"], "no database 'nosuch'"),
                          (["--at", "2001-01-01T00:00:00Z"], "no snapshot at or before")):
        done = live("restore", *live.files(), ALPHA, *args, check=2)
        assert message in done.err, done.err
    assert sums(live) == seeded


def test_verify_drills_then_a_flipped_bit_is_caught(live: E2E, seeded: tuple[str, str]) -> None:
    """The nightly check reads every pack (here: all of them at once) and the drill
    restores from the other region; one flipped bit in a pack of us-east fails the
    check, and flipping it back makes it pass again."""
    done = live("backup", "verify", *live.files(), "--read", "100%", "--sub", ALPHA, "--sub", BETA)
    assert "check us-east: ok" in done.out and f"drill {ALPHA}: ok" in done.out, done.out
    listed = live("backup", "list", ALPHA, "-o", "json").json()["snapshots"]
    assert all(s["verified"] for s in listed if s["kind"] == "db"), listed
    root = f"{provisioning.backup.REPO_ROOT}/bk-a/{provisioning.backup.REPO_NAME}/data"
    found = live.on("bk-b", "sh", "-c", f"find {root} -type f -size +1k | head -n 1")
    pack = found.stdout.decode().strip()
    assert pack, found.error
    flip = ("import sys; p = sys.argv[1]; f = open(p, 'r+b'); f.seek(100); b = f.read(1); f.seek(100); "
            "f.write(bytes([b[0] ^ 1])); f.close()")
    assert live.on("bk-b", "python3", "-c", flip, pack).returncode == 0
    try:
        bad = live("backup", "verify", *live.files(), "--read", "100%", "--no-drill", "--no-rotate", check=1)
        assert re.search(r"check us-east: FAILED", bad.out), bad.out
        assert "check eu-west: ok" in bad.out
    finally:
        assert live.on("bk-b", "python3", "-c", flip, pack).returncode == 0
    live("backup", "verify", *live.files(), "--read", "100%", "--no-drill", "--no-rotate")


def test_a_dead_database_fails_only_its_tenant(live: E2E, seeded: tuple[str, str]) -> None:
    """No snapshot of a dump that failed, the run PartiallyFailed naming the tenant; the
    other tenant's backup succeeds."""
    before = {s["id"] for s in snapshots(live, A, ALPHA)}
    assert live.on("bk-a", "service", "mariadb", "stop").returncode == 0
    try:
        done = live("backup", "run", *live.files(), "--all", check=1)
    finally:
        assert live.on("bk-a", "service", "mariadb", "start").returncode == 0
    assert f"{ALPHA}: FAILED" in done.out and f"{BETA}: ok" in done.out and "PartiallyFailed" in done.out, done.out
    after = snapshots(live, A, ALPHA)
    new_db = [s for s in after if s["id"] not in before and "kind=db" in s["tags"] and "engine=mariadb" in s["tags"]]
    assert new_db == [], new_db
    ready = next(c for c in live.status()[ALPHA]["conditions"] if c["type"] == "BackupReady")
    assert (ready["status"], ready["reason"]) == ("False", "BackupFailed"), ready


def test_an_unreachable_region_is_reported_then_caught_up(live: E2E, seeded: tuple[str, str]) -> None:
    """BKP-3: us-east's repository server stopped -> the local snapshot is taken, the copy
    is reported missing; once it is back, the next run copies what was missing."""
    assert live.on("bk-b", "service", "tenantctl-restic-rest", "stop").returncode == 0
    try:
        done = live("backup", "run", *live.files(), BETA, check=1)
        assert "copy missing" in done.out and f"{BETA}: ok" in done.out, done.out
        ready = next(c for c in live.status()[BETA]["conditions"] if c["type"] == "BackupReady")
        assert ready["reason"] == "CopyMissing", ready
    finally:
        assert live.on("bk-b", "service", "tenantctl-restic-rest", "start").returncode == 0
    missed = max(snapshots(live, A, BETA), key=lambda s: s["time"])["id"]
    live("backup", "run", *live.files(), BETA)
    assert missed in {s["original"] for s in snapshots(live, B, BETA)}
    # a run of beta alone leaves what the ledger knows of alpha's copies as it was
    listed = live("backup", "list", ALPHA, "-o", "json").json()["snapshots"]
    assert {s["id"] for s in listed if s["region"] == "us-east"} == {s["id"] for s in snapshots(live, B, ALPHA)}


def test_rotation_keeps_keep_daily_on_a_fake_clock(live: E2E, seeded: tuple[str, str]) -> None:
    """BKP-2: beta keeps 2 daily snapshots; after four nights (a fake clock) rotation on
    the repositories' own servers leaves exactly the 2 newest days per kind in each
    region, plus the newest verified snapshot (the drill verified one of the first
    run): rotation never removes the last good copy."""
    verified = {s["id"] for s in live("backup", "list", BETA, "-o", "json").json()["snapshots"] if s["verified"]}
    assert verified
    env = dict(live.env)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    for n in range(4):
        live.env["TENANTCTL_NOW"] = (start + dt.timedelta(days=n)).isoformat()
        try:
            live("backup", "run", *live.files(), BETA)
        finally:
            live.env.clear()
            live.env.update(env)
    live.env["TENANTCTL_NOW"] = (start + dt.timedelta(days=3, hours=1)).isoformat()
    try:
        live("backup", "verify", *live.files(), "--no-check", "--no-drill")
    finally:
        live.env.clear()
        live.env.update(env)
    for addr in (A, B):
        kinds: dict[str, int] = {}
        for s in snapshots(live, addr, BETA):
            kind = next(t for t in s["tags"] if t.startswith("kind="))
            kinds[kind] = kinds.get(kind, 0) + 1
        assert kinds == {"kind=settings": 3, "kind=files": 3}, (addr, kinds)
    listed = live("backup", "list", BETA, "-o", "json").json()["snapshots"]
    assert verified <= {s["id"] for s in listed}
    assert len(listed) == 12  # (2 days + the verified one) x 2 kinds x 2 regions: the ledger follows the repositories


def test_export_is_a_plain_dump_that_loads_anywhere(live: E2E, seeded: tuple[str, str], tmp_path: Path) -> None:
    """BKP-7: ``backup export SUB DB`` prints a complete plain dump (loaded here into a
    new database with the stock client)."""
    done = live("backup", "export", *live.files(), ALPHA, "app")
    assert done.out.rstrip().splitlines()[-1].startswith("-- Dump completed"), done.out[-300:]
    assert not done.out.startswith("/*M!999999")
    assert "INSERT INTO `orders`" in done.out


def test_restore_with_the_site_suspended_serves_it_again_after(live: E2E, seeded: tuple[str, str]) -> None:
    """BKP-5 ``--suspend-during``: the web driver suspends the site for the restore and
    serves it again after (the restored page, not the suspended one)."""
    done = live("restore", *live.files(), ALPHA, "--only", "files", "--suspend-during")
    assert "restored" in done.out, done.out
    assert curl(f"http://{ALPHA}/", f"{ALPHA}:80:{A}").strip() == "seeded-page"


def test_point_in_time_restore_through_the_cli_for_both_engines(live: E2E, seeded: tuple[str, str]) -> None:
    """BKP-4 through the product: the plan gains ``backup.pitr``, ``apply`` starts the
    archiving (pgBackRest, binary logs), ``backup run`` takes the dumps and the base
    backup; rows 1-2, the target, row 3: ``restore --only db:X --at T`` brings back exactly
    rows 1-2 and says which backup and log position it used; a target in the future is
    refused with nothing changed (exit 2)."""
    live.edit("tenants.yaml", "  backup: {keepDaily: 15}\n", "  backup: {keepDaily: 15, pitr: true}\n")
    live("apply", *live.files())
    it = live.status()[ALPHA]
    assert it["concerns"]["backup"] == "provisioned", it["conditions"]
    live("backup", "run", *live.files(), ALPHA)
    mariadb(live, "CREATE TABLE pitr (id INT PRIMARY KEY); INSERT INTO pitr VALUES (1); INSERT INTO pitr VALUES (2)")
    psql(live, "CREATE TABLE pitr (id int PRIMARY KEY); INSERT INTO pitr VALUES (1); INSERT INTO pitr VALUES (2)")
    time.sleep(1.5)
    target = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(1.5)
    mariadb(live, "INSERT INTO pitr VALUES (3)")
    psql(live, "INSERT INTO pitr VALUES (3)")
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    refused = live("restore", *live.files(), ALPHA, "--only", "db:ledger", "--at", future, check=2)
    assert "future" in refused.err, refused.err
    assert psql(live, "SELECT string_agg(id::text, ',' ORDER BY id) FROM pitr") == "1,2,3"
    for db, rows in (("app", lambda: mariadb(live, "SELECT GROUP_CONCAT(id ORDER BY id) FROM pitr")),
                     ("ledger", lambda: psql(live, "SELECT string_agg(id::text, ',' ORDER BY id) FROM pitr"))):
        done = live("restore", *live.files(), ALPHA, "--only", f"db:{db}", "--at", target.isoformat(), "-o", "json")
        (point,) = done.json()["pointInTime"]
        assert point["base"] and point["stoppedAt"] and point["region"] in ("eu-west", "us-east"), point
        assert rows() == "1,2", (db, point)
    assert sums(live) == seeded  # the seeded tables came back with the recovered databases


def test_a_deletion_keeps_a_verified_final_backup_in_two_regions_then_purges_it(live: E2E,
                                                                               seeded: tuple[str, str]) -> None:
    """LIFE-6: deleting beta takes a final backup into both regions and drills it before
    anything is removed; 60 days later the purge forgets it on the repositories."""
    path = live.desired / "tenants.yaml"
    text = path.read_text()
    cut = text.index(f"---\napiVersion: tenantctl.io/v1\nkind: Subscription\nmetadata: {{name: {BETA}}}")
    path.write_text(text[:cut])  # beta's document removed
    live("apply", *live.files())
    status = live.status()
    assert status[BETA]["state"] == "deleted"
    finals = [s for s in live("backup", "list", BETA, "-o", "json").json()["snapshots"] if s["final"]]
    assert {s["region"] for s in finals} == {"eu-west", "us-east"}, finals
    assert all(s["verified"] for s in finals), finals
    remote = {s["id"] for s in snapshots(live, B, BETA) if "final" in s["tags"]}
    assert remote == {s["id"] for s in finals if s["region"] == "us-east"}
    env = dict(live.env)
    live.env["TENANTCTL_NOW"] = (dt.datetime.now(dt.UTC) + dt.timedelta(days=61)).isoformat()
    try:
        live("apply", *live.files())
    finally:
        live.env.clear()
        live.env.update(env)
    left = {addr: [str(x.get("id", ""))[:8] for x in snapshots(live, addr, BETA)] for addr in (A, B)}
    assert left == {A: [], B: []}, (left, live("events", "--subject", BETA, "--limit", "8").out)
    assert live("backup", "list", BETA, "-o", "json").json()["snapshots"] == []


# --- DR-1: the disaster-recovery drill on us-east's spare server -------------------------

SPARE = "127.0.95.2"


def dig(server: str, name: str) -> str:
    done = subprocess.run(["dig", "+short", "+time=2", "+tries=1", f"@{server}", name, "A"], capture_output=True,
                          text=True, timeout=30)
    return done.stdout.strip()


def metric(url: str, series: str) -> float | None:
    """One series' value, exactly as exposed (``name{labels}``), or None."""
    with urllib.request.urlopen(url, timeout=5) as r:
        lines = [ln for ln in r.read().decode().splitlines() if ln and not ln.startswith("#")]
    return next((float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.rsplit(" ", 1)[0] == series), None)


def spare_leftovers(live: E2E) -> str:
    """Everything of a DR drill's scratch copy still on the spare (empty: nothing)."""
    script = ("ls -A /srv/tenantctl-dr 2>/dev/null; ls /etc/nginx/conf.d | grep tenantctl-dr; "
              "ls /etc/php/*/fpm/pool.d /run/php | grep tenantctl-dr; "
              "getent passwd | grep '^tdr'; getent group | grep '^tdr'; "
              "mariadb -N -B -e 'SHOW DATABASES' | grep tenantctl_dr; "
              "runuser -u postgres -- psql -X -tA -c 'SELECT datname FROM pg_database' | grep tenantctl_dr; true")
    done = live.on("bk-spare", "sh", "-c", script)
    assert done.returncode == 0, done.error
    return done.stdout.decode().strip()


def test_dr_drill_restores_into_the_spare_of_the_other_region_and_measures_rto_rpo(
        live: E2E, seeded: tuple[str, str]) -> None:
    """DR-1 through the CLI: alpha (eu-west) is restored from us-east's repository into
    bk-spare (us-east), its page fetched over HTTP from the spare's address, then the
    drill's PHP probe (PHP-FPM 8.2 as the scratch user: the restored page's sha256), its
    databases compared, the scratch copy (PHP pool included) removed; RTO/RPO in the drill's answer, in status and on
    tenantctl's /metrics; DNS untouched, nothing left on the spare."""
    dns = {server: dig(server, ALPHA) for server in (A, B)}
    assert dns[A] == A, dns
    live("backup", "run", *live.files(), ALPHA)
    # a crashed drill's leftovers (a scratch user, vhost and PHP pool) are removed first
    crash = ("; crashed drill\\n[tenantctl-dr-deadbeef0]\\nuser = tdrdeadbeef0\\n"
             "listen = /run/php/tenantctl-dr-deadbeef0.sock\\npm = ondemand\\npm.max_children = 1\\n")
    done = live.on("bk-spare", "sh", "-c", "useradd --system --user-group --no-create-home tdrdeadbeef0 && "
                                           "echo '# left by a crash' > /etc/nginx/conf.d/tenantctl-dr-deadbeef0.conf && "
                                           f"printf '{crash}' > /etc/php/8.2/fpm/pool.d/tenantctl-dr-deadbeef0.conf")
    assert done.returncode == 0, done.error
    assert "tenantctl-dr-deadbeef0" in spare_leftovers(live)
    done = live("backup", "dr-drill", *live.files(), "--sub", ALPHA, "-o", "json")
    d = done.json()["drills"][ALPHA]
    assert d["ok"] and d["error"] is None, d
    assert (d["sourceRegion"], d["spare"], d["spareRegion"]) == ("us-east", "bk-spare", "us-east"), d
    assert 0 < d["rtoSeconds"] < 120, d
    assert d["rpoSeconds"] is not None and 0 <= d["rpoSeconds"] < 3600, d
    print(f"\nDR drill of {ALPHA}: RTO {d['rtoSeconds']} s, RPO {d['rpoSeconds']} s ({d['rpoBasis']})")
    assert live.status()[ALPHA]["drDrill"] == d
    assert live("backup", "list", ALPHA, "-o", "json").json()["drDrill"] == d
    assert spare_leftovers(live) == ""
    assert {server: dig(server, ALPHA) for server in (A, B)} == dns
    # the scratch vhost is gone: the spare no longer serves alpha's page
    gone = subprocess.run(["curl", "-sS", "--max-time", "5", "-H", f"Host: {ALPHA}", f"http://{SPARE}/"],
                          capture_output=True, text=True, timeout=15)
    assert "seeded-page" not in gone.stdout
    # on tenantctl's /metrics: per region (the drilled subscriptions' own), no subscription label
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (live.state / "run-dr.log").open("w")
    proc = subprocess.Popen([CLI, "run", *live.files(), "--metrics-addr", f"127.0.0.1:{port}"], env=live.env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        rto = wait_for(lambda: metric(url, 'tenantctl_dr_drill_rto_seconds{region="eu-west"}'), 120,
                       "the DR drill's RTO on /metrics")
        # the worst of eu-west's latest successful drills (run's nightly care may have drilled again)
        drilled = [s["drDrill"] for s in live.status().values()
                   if s.get("region") == "eu-west" and s.get("drDrill") and s["drDrill"]["ok"]]
        assert rto == pytest.approx(max(x["rtoSeconds"] for x in drilled), abs=0.01), drilled
        assert metric(url, "tenantctl_dr_drill_last_timestamp_seconds")
        assert metric(url, 'tenantctl_dr_drill_failed_subscriptions{region="eu-west"}') == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


def test_dr_drill_fails_when_the_spare_serves_other_content(live: E2E, seeded: tuple[str, str]) -> None:
    """The HTTP comparison is real: a FAKE fault (the agent changes the served index after
    taking its digest) fails the drill with the HTTP mismatch, exit 1, status says so,
    and the scratch copy is removed all the same."""
    faulty = dataclasses.replace(live, env={**live.env, "TENANTCTL_FAKE_DR_CORRUPT_INDEX": "1"})
    done = faulty("backup", "dr-drill", *live.files(), "--sub", ALPHA, "-o", "json", check=1)
    d = done.json()["drills"][ALPHA]
    assert not d["ok"] and d["rtoSeconds"] is None, d
    assert f"from {SPARE} for {ALPHA}" in d["error"] and "is not the restored index's" in d["error"], d
    assert live.status()[ALPHA]["drDrill"]["ok"] is False
    assert spare_leftovers(live) == ""
