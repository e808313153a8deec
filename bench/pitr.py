#!/usr/bin/env python3
"""Point-in-time recovery as the user sees it (issue 10, last Done-when item).

Brings up its own two embedded servers in an environment of its own: ``pbench-a``
(eu-west, 127.0.112.1: web, MariaDB, PostgreSQL, DNS, backup repository) and
``pbench-b`` (us-east, 127.0.113.1: DNS, backup repository), applies one subscription
whose plan has ``backup.pitr`` (a PostgreSQL and a MariaDB database), takes its first
backups with ``tenantctl backup run`` and measures, through real clients:

1. archive lag over ``--minutes`` of writes (one committed row a second in each engine):
   for each commit, the seconds until it is archived, as seen from outside the product:
   PostgreSQL's ``pg_stat_archiver.last_archived_wal`` passing the commit's WAL file
   (``pg_walfile_name(pg_current_wal_lsn())`` read right after the commit), MariaDB's
   archived binary log (the file on each repository server, ``stat -c %s``) reaching the
   position ``SHOW MASTER STATUS`` gave right after the commit. Median, 95th percentile
   and maximum per engine (MariaDB: per archive region).
2. restore time of a ``--gb`` GB PostgreSQL database to a point in time: rows loaded
   server-side, a base backup (``tenantctl backup run``), a marker row, the target time,
   another marker row, then ``tenantctl restore SUB --only db:ledger --at T`` as a process;
   the result checked with psql (the first marker present, the second absent).

Holds ``/tmp/tenantctl-embedded.lock`` while its environment is up (``--no-lock`` when
the caller holds it) and removes the environment at the end (``--keep`` leaves it).

    .venv/bin/python bench/pitr.py [--minutes 10] [--gb 1.0] [--keep] [--no-lock]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backup as bb

from controller import model
from controller.drivers import embedded
from controller.drivers.binlog import agent as binlog_agent

A, B = "pbench-a", "pbench-b"
ADDR = {A: "127.0.112.1", B: "127.0.113.1"}
SUB = "shop.pbench.test"
PG_DB, MARIA_DB = "ledger", "orders"
ROW_BYTES = 100


def desired_docs() -> list[dict[str, Any]]:
    def server(name: str, region: str, roles: list[str]) -> dict[str, Any]:
        return {"apiVersion": "tenantctl.io/v1", "kind": "Server", "metadata": {"name": name}, "spec": {
            "region": region, "provider": "docker", "address": ADDR[name],
            "ips": [{"address": ADDR[name], "type": "shared"}], "roles": roles,
            "capacity": {"sites": 10, "diskMB": 200000}, "offers": {"php": {"versions": ["8.2"], "handlers": ["fpm"]}}}}

    return [
        {"apiVersion": "tenantctl.io/v1", "kind": "Region", "metadata": {"name": "eu-west"},
         "spec": {"timezone": "UTC", "backupCopiesTo": "all"}},
        {"apiVersion": "tenantctl.io/v1", "kind": "Region", "metadata": {"name": "us-east"},
         "spec": {"timezone": "UTC", "backupCopiesTo": "all"}},
        server(A, "eu-west", ["web", "db-mariadb", "db-postgresql", "dns", "backup"]),
        server(B, "us-east", ["dns", "backup"]),
        {"apiVersion": "tenantctl.io/v1", "kind": "ServicePlan", "metadata": {"name": "pitr"}, "spec": {
            "resources": {"diskMB": 200000, "databases": 2},
            "hosting": {"ssl": False, "php": {"handler": "fpm", "version": "8.2"}},
            "backup": {"keepDaily": 7, "pitr": True}}},
        {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "metadata": {"name": "pbench"},
         "spec": {"email": "ops@pbench.test", "state": "active"}},
        {"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": SUB}, "spec": {
            "customer": "pbench", "plan": "pitr", "region": "eu-west",
            "databases": [{"name": PG_DB, "engine": "postgresql"}, {"name": MARIA_DB, "engine": "mariadb"}]}},
    ]


class Bench(bb.Bench):
    """bench/backup.py's bench with this bench's servers and documents."""

    def __init__(self, root: Path) -> None:  # same fields as bench/backup.py, other documents
        self.root = root
        self.state = root / "state"
        self.desired = root / "desired"
        self.desired.mkdir(parents=True)
        (self.desired / "all.yaml").write_text(yaml.safe_dump_all(desired_docs(), sort_keys=False))
        ds = model.load_desired([self.desired])
        self.specs = [embedded.ServerSpec.from_dict({"name": n, **s.model_dump(mode="json")})
                      for n, s in ds.servers.items()]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
        self.env.update(TENANTCTL_STATE_DIR=str(self.state), COLUMNS="200")
        self._ssh = {}
        self.night = dt.datetime.now(dt.UTC)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def spread(xs: list[float]) -> str:
    if not xs:
        return "no sample"
    return (f"median {statistics.median(xs):.1f}s, p95 {pct(xs, 0.95):.1f}s, max {max(xs):.1f}s "
            f"({len(xs)} commits)")


def lag_figure(b: Bench, minutes: float) -> dict[str, list[float]]:
    """Per engine (MariaDB: per archive region), the seconds from each commit to its archiving."""
    b.sql(SUB, PG_DB, "CREATE TABLE IF NOT EXISTS lag (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
    b.sql(SUB, MARIA_DB, "CREATE TABLE IF NOT EXISTS lag (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))")
    pg_pending: list[tuple[float, str]] = []
    maria_pending: dict[str, list[tuple[float, str, int]]] = {A: [], B: []}
    out: dict[str, list[float]] = {"postgresql": [], f"mariadb ({A})": [], f"mariadb ({B})": []}
    stop = threading.Event()
    lock = threading.Lock()
    archive_dir = f"{binlog_agent.ROOT}/{A}"

    def writer() -> None:
        while not stop.is_set():
            t0 = time.time()
            wal = b.sql(SUB, PG_DB, "INSERT INTO lag DEFAULT VALUES; SELECT pg_walfile_name(pg_current_wal_lsn())")
            t1 = time.time()
            status = b.on(A, ["mariadb", "-N", "-B", "-e",
                              f"INSERT INTO `{naming_db(MARIA_DB)}`.lag (at) VALUES (NOW(6)); SHOW MASTER STATUS"])
            file, pos = status.split()[:2]
            with lock:
                pg_pending.append((t0, wal.splitlines()[-1]))
                for repo in maria_pending:
                    maria_pending[repo].append((t1, file, int(pos)))
            stop.wait(max(0.0, 1.0 - (time.time() - t0)))

    def poller() -> None:
        while not stop.is_set() or pg_pending or any(maria_pending.values()):
            archived = b.on(A, ["runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-c",
                                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"]).strip()
            now = time.time()
            with lock:
                while pg_pending and archived and pg_pending[0][1] <= archived:
                    out["postgresql"].append(now - pg_pending.pop(0)[0])
            for repo in (A, B):
                with lock:
                    waiting = list(maria_pending[repo])
                if not waiting:
                    continue
                size = b.on(repo, ["sh", "-c", 'stat -c %s "$1" 2>/dev/null || echo 0', "stat",
                                   f"{archive_dir}/{waiting[0][1]}"]).strip()
                now = time.time()
                with lock:
                    while maria_pending[repo] and maria_pending[repo][0][1] == waiting[0][1] \
                            and maria_pending[repo][0][2] <= int(size or 0):
                        out[f"mariadb ({repo})"].append(now - maria_pending[repo].pop(0)[0])
            if stop.is_set() and time.time() > deadline + 180:
                break
            time.sleep(0.5)

    deadline = time.time() + minutes * 60
    threads = [threading.Thread(target=writer), threading.Thread(target=poller)]
    for t in threads:
        t.start()
    while time.time() < deadline:
        time.sleep(5)
    stop.set()
    for t in threads:
        t.join()
    return out


def naming_db(db: str) -> str:
    from controller.drivers import naming

    return naming.database(SUB, db)


def restore_figure(b: Bench, gb: float) -> tuple[float, str]:
    rows = int(gb * 1e9 / ROW_BYTES)
    t0 = time.perf_counter()
    b.sql(SUB, PG_DB, "DROP TABLE IF EXISTS t; CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL); "
                      f"INSERT INTO t SELECT g, {bb.PG_ROW.format(id='g', salt='x', pad='r')} "
                      f"FROM generate_series(1, {rows}) g")
    size = b.sql(SUB, PG_DB, "SELECT pg_database_size(current_database())")
    print(f"loaded {rows:,} rows ({int(size) / 1e9:.2f} GB database) in {time.perf_counter() - t0:.0f}s", flush=True)
    base = b.tc("backup", "run", *b.files(), SUB, now=dt.datetime.now(dt.UTC))
    print(f"tenantctl backup run (nightly dumps + base backup): {base.wall:.1f}s", flush=True)
    b.sql(SUB, PG_DB, "CREATE TABLE IF NOT EXISTS marker (v text); INSERT INTO marker VALUES ('before')")
    time.sleep(1.5)
    target = dt.datetime.now(dt.UTC)
    time.sleep(1.5)
    b.sql(SUB, PG_DB, "INSERT INTO marker VALUES ('after')")
    done = b.tc("restore", *b.files(), SUB, "--only", f"db:{PG_DB}", "--at", target.isoformat(), timeout=7200)
    got = b.sql(SUB, PG_DB, "SELECT string_agg(v, ',' ORDER BY v) FROM marker")
    rows_back = b.sql(SUB, PG_DB, "SELECT count(*) FROM t")
    ok = got == "before" and int(rows_back) == rows
    return done.wall, (f"{done.wall:.1f}s for a {int(size) / 1e9:.2f} GB database "
                       f"({'exact' if ok else f'WRONG: markers {got!r}, {rows_back} rows'})")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of writes for the lag figure")
    ap.add_argument("--gb", type=float, default=1.0, help="size of the PostgreSQL database restored")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-lock", action="store_true")
    args = ap.parse_args()
    prefix = str(Path(tempfile.gettempdir()) / "bench-pitr-")
    root = Path(tempfile.mkdtemp(prefix=Path(prefix).name))
    b = Bench(root)
    bb.ADDR.update(ADDR)  # bench/backup.py's SSH helper looks servers up there
    with bb.embedded_lock(not args.no_lock), embedded.hold(b.state):
        embedded.remove_abandoned(b.specs, prefix=prefix)
        started, load_start, t_start = dt.datetime.now(dt.UTC), bb.load(), time.perf_counter()
        print(f"bench/pitr.py: state {b.state}, load average {load_start}", flush=True)
        try:
            embedded.env_up(b.specs, b.state)
            b.tc("apply", *b.files())
            first = b.tc("backup", "run", *b.files(), SUB, now=dt.datetime.now(dt.UTC))
            print(f"first backup run: {first.wall:.1f}s", flush=True)
            lags = lag_figure(b, args.minutes)
            _, restored = restore_figure(b, args.gb)
            print()
            print(f"== bench/pitr.py  {started:%Y-%m-%d %H:%M} UTC, 2 cores, load average {load_start} -> "
                  f"{bb.load()}, {(time.perf_counter() - t_start) / 60:.1f} min")
            print(f"archive lag over {args.minutes:g} min of one commit a second (target RPO <= 120 s):")
            for name, xs in lags.items():
                verdict = "PASS" if xs and max(xs) <= 120 else "MISS"
                print(f"  {name:<24} {spread(xs)}  {verdict}")
            print(f"restore to a point in time, PostgreSQL: {restored}")
        finally:
            b.close()
            if not args.keep:
                embedded.env_down(b.state, only=b.specs, destroy_data=True)
                shutil.rmtree(root, ignore_errors=True)
            else:
                print(f"environment left up: TENANTCTL_STATE_DIR={b.state} tenantctl ... -f {b.desired}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
