"""MariaDB point-in-time recovery for real (issue 10 item 2, BKP-4): embedded servers
with real MariaDB 10.11, binary logs streamed by ``mariadb-binlog`` archivers to the
repository servers of two regions, the nightly backup by the real ``tenantctl``, the
host's ``mariadb`` client as each tenant's own login to write and to check.

The tests run in file order on one environment: the archive follows a committed row
in both regions, a database is recovered to a time (exactly the rows before it; the
other tenant's database untouched), targets outside the archive are refused with
nothing changed, the archiver resumes after the source restarts, lag shows a stopped
archiver.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import E2E, environment, wait_for

from controller import model
from controller.drivers import naming, transport
from controller.drivers.backup import binlog, topology
from controller.drivers.context import Context
from controller.provisioning import binlog as pbinlog
from controller.state import store as state_store

pytestmark = pytest.mark.embedded

HERE = Path(__file__).resolve().parent
ALPHA, BETA = "alpha.pm.example.org", "beta.pm.example.org"
SOURCE, REPOS = "pm-a", ("pm-a-bk", "pm-b")


@dataclass
class Live:
    e2e: E2E
    topo: topology.Topology
    pool: transport.Pool
    backup_at: dt.datetime

    def store(self) -> state_store.Store:
        return state_store.Store(self.e2e.state / "state.db")


def sql(live: E2E, sub: str, statement: str) -> str:
    """``statement`` in the subscription's database ``app``, as its own login, over TCP."""
    c: dict[str, Any] = live("db", "credentials", sub, "app", "-o", "json").json()
    p = subprocess.run(["mariadb", "-N", "-B", "-h", c["host"], "-P", str(c["port"]), "-u", c["user"],
                        f"-p{c['password']}", c["database"], "-e", statement],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def rows(live: E2E, sub: str) -> str:
    return sql(live, sub, "SELECT id, v FROM t ORDER BY id").replace("\t", "=").replace("\n", " ")


def master(live: E2E) -> tuple[str, int]:
    done = live.on(SOURCE, "mariadb", "-N", "-B", "-e", "SHOW MASTER STATUS")
    assert done.returncode == 0, done.error
    name, pos = done.text.split("\t")[:2]
    return name, int(pos)


def archived_size(live: E2E, repo: str, name: str) -> int:
    done = live.on(repo, "stat", "-c", "%s", f"{pbinlog.ARCHIVE_ROOT}/{SOURCE}/{name}")
    return int(done.text) if done.returncode == 0 else -1


def in_both_archives(live: E2E, timeout: float = 30) -> float:
    """Seconds until both regions' archives hold the source's binary log up to its
    current position."""
    name, pos = master(live)
    started = time.monotonic()
    wait_for(lambda: all(archived_size(live, r, name) >= pos for r in REPOS), timeout,
             f"{name}:{pos} in both archives", step=0.1)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with environment(tmp_path_factory, HERE / "desired", "pitr-mariadb") as e2e:
        e2e("apply", *e2e.files())
        for sub in (ALPHA, BETA):
            sql(e2e, sub, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(32)); INSERT INTO t VALUES (0, 'seed')")
        ctx = Context.of(model.load_desired([e2e.desired]), e2e.state)
        topo = topology.Topology.of(ctx)
        pool = transport.Pool(ctx)
        try:
            assert binlog.ensure(topo, pool, [SOURCE]) == {SOURCE: ""}
            assert binlog.ensure(topo, pool, [SOURCE]) == {SOURCE: ""}  # idempotent
            backup_at = dt.datetime.now(dt.UTC)
            done = e2e("backup", "run", *e2e.files(), "--all")
            assert "Succeeded: 2/2" in done.out, done.out
            yield Live(e2e, topo, pool, backup_at)
        finally:
            pool.close()


def test_a_committed_row_is_in_both_regions_archives_within_seconds(env: Live) -> None:
    """RPO on an idle server: a committed row's binlog bytes reach the archives of both
    regions (the region's repository server and the other region's) in seconds."""
    sql(env.e2e, BETA, "INSERT INTO t VALUES (100, 'idle-probe')")
    delay = in_both_archives(env.e2e, timeout=10)
    print(f"\narchive delay (commit -> both regions' archives): {delay:.2f} s")
    assert delay < 10


def test_recover_to_a_time_gives_exactly_the_rows_before_it(env: Live) -> None:
    """Rows 1-2 before the target, row 3, an UPDATE and a DELETE after it: the recovery
    has exactly rows 1-2 as they were; the other tenant's database keeps everything."""
    live = env.e2e
    sql(live, ALPHA, "INSERT INTO t VALUES (1, 'one'); INSERT INTO t VALUES (2, 'two')")
    sql(live, BETA, "INSERT INTO t VALUES (1, 'beta-before')")
    time.sleep(1.1)
    target = dt.datetime.now(dt.UTC)
    time.sleep(1.5)
    sql(live, ALPHA, "INSERT INTO t VALUES (3, 'three'); UPDATE t SET v = 'changed' WHERE id = 1; "
                     "DELETE FROM t WHERE id = 2")
    sql(live, BETA, "INSERT INTO t VALUES (2, 'beta-after')")
    in_both_archives(live)
    beta = rows(live, BETA)
    assert rows(live, ALPHA) == "0=seed 1=changed 3=three"
    db = naming.database(ALPHA, "app")
    with env.store() as store:
        started = time.monotonic()
        got = binlog.recover(env.topo, env.pool, store, SOURCE, ALPHA, db, target)
        took = time.monotonic() - started
    print(f"\nrecovered {db} to {target.isoformat()}: dump {got.dump_snapshot[:12]} at {got.dump_position}, "
          f"replay stopped at {got.stopped_at} (archive {got.archive_region}), {took:.2f} s")
    assert rows(live, ALPHA) == "0=seed 1=one 2=two"
    assert rows(live, BETA) == beta
    assert got.archive_region == "pm-east"
    name, pos = got.stopped_at.split(":")
    assert name.startswith(pbinlog.BASENAME) and int(pos) > int(got.dump_position.split(":")[1])
    # the other region's dump copy and archive give the same result (a region loss)
    sql(live, ALPHA, "DELETE FROM t WHERE id = 1")
    with env.store() as store:
        other = binlog.recover(env.topo, env.pool, store, SOURCE, ALPHA, db, target, region="pm-west")
    assert other.archive_region == "pm-west" and other.dump_snapshot != got.dump_snapshot
    assert other.stopped_at == got.stopped_at
    assert rows(live, ALPHA) == "0=seed 1=one 2=two"
    assert rows(live, BETA) == beta


@pytest.mark.parametrize("when", [
    pytest.param("before-dump", id="before-the-oldest-dump"),
    pytest.param("future", id="in-the-future"),
])
def test_a_target_outside_the_archive_is_refused_and_changes_nothing(env: Live, when: str) -> None:
    live = env.e2e
    before = (rows(live, ALPHA), rows(live, BETA), master(live))
    at = env.backup_at - dt.timedelta(hours=1) if when == "before-dump" else \
        dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with env.store() as store, pytest.raises(binlog.OutOfRange) as caught:
        binlog.recover(env.topo, env.pool, store, SOURCE, ALPHA, naming.database(ALPHA, "app"), at)
    assert ("before the oldest nightly dump" if when == "before-dump" else "in the future") in str(caught.value)
    assert (rows(live, ALPHA), rows(live, BETA), master(live)) == before
    with env.store() as store:
        window = binlog.window(env.topo, env.pool, store, SOURCE, ALPHA, naming.database(ALPHA, "app"))
    assert window is not None and window[0] <= env.backup_at + dt.timedelta(minutes=1) and window[0] < window[1]


def test_the_archiver_resumes_after_the_source_restarts(env: Live) -> None:
    """``mariadb-binlog`` exits when its source shuts down; the supervisor starts it
    again and the archive keeps growing with new rows."""
    live = env.e2e
    assert live.on(SOURCE, "service", "mariadb", "stop").returncode == 0
    try:
        time.sleep(2)
    finally:
        assert live.on(SOURCE, "service", "mariadb", "start").returncode == 0
    sql(live, BETA, "INSERT INTO t VALUES (200, 'after-restart')")
    delay = in_both_archives(live, timeout=60)
    print(f"\narchive caught up {delay:.2f} s after the first write following the source's restart")


def test_lag_shows_a_stopped_archiver_and_returns_to_zero(env: Live) -> None:
    live = env.e2e
    in_both_archives(live)
    idle = binlog.lag(env.topo, env.pool, [SOURCE])[SOURCE]
    assert idle.seconds == 0.0 and idle.newest_archived is not None, idle
    for repo in REPOS:
        assert live.on(repo, "service", pbinlog.SERVICE, "stop").returncode == 0
    try:
        sql(live, BETA, "INSERT INTO t VALUES (300, 'while-stopped')")
        time.sleep(2.2)
        stopped = binlog.lag(env.topo, env.pool, [SOURCE])[SOURCE]
        assert stopped.seconds >= 2.0 and set(stopped.regions) == {"pm-east", "pm-west"}, stopped
        assert min(stopped.regions.values()) >= 2.0, stopped
    finally:
        for repo in REPOS:
            assert live.on(repo, "service", pbinlog.SERVICE, "start").returncode == 0
    in_both_archives(live, timeout=30)
    again = binlog.lag(env.topo, env.pool, [SOURCE])[SOURCE]
    print(f"\nlag: idle {idle.seconds:.1f} s, archivers stopped {stopped.seconds:.1f} s, restarted {again.seconds:.1f} s")
    assert again.seconds == 0.0, again
