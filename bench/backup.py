#!/usr/bin/env python3
"""Nightly backups as the user runs them (issue 9, last Done-when item).

Brings up its own two embedded servers in an environment of its own (a temporary state
directory): ``bbench-a`` (eu-west, 127.0.96.1: web, MariaDB, PostgreSQL, DNS, backup
repository) and ``bbench-b`` (us-east, 127.0.97.1: DNS, backup repository), applies a
desired state written into a temporary directory, loads one MariaDB and one PostgreSQL
table of the same shape server-side (``--rows`` rows of ~100 bytes), and measures, side
by side on that data, whole ``tenantctl`` commands as processes and their effect through
real clients (``du -sb`` of the repositories on the repository servers, the SQL clients):

1. nightly backup throughput: ``tenantctl backup run SUB`` (the local snapshot and the
   copy to us-east) against ``mariadb-dump ... | zstd -3 > file`` run on the server as
   one command over the same SSH transport, on the same database (the first, full night:
   both repositories removed before each run; then unchanged nights);
2. bytes stored on an unchanged night, as % of the first full backup;
3. bytes stored after 1 % of the rows changed in one contiguous id range (MariaDB;
   PostgreSQL measured and reported, no target: field notes section 3);
4. restore seconds per GB: ``tenantctl restore SUB --only db:NAME --from-region us-east``;
5. a nightly run of ``--subs`` small subscriptions on one server.

Each run of a figure is one "night": ``TENANTCTL_NOW`` one day later each time. Medians
of ``--runs`` runs; the load average before and after each figure. Holds
``/tmp/tenantctl-embedded.lock`` while its environment is up (``--no-lock`` when the
caller already holds it) and tears the environment down at the end (``--keep``: leave it).

    .venv/bin/python bench/backup.py [--rows 1000000] [--subs 200] [--runs 3] [--keep] [--no-lock]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from controller import errors, model, provisioning
from controller.drivers import embedded, naming, transport
from controller.drivers.backup import agent as backup_agent
from controller.state import backups as ledger
from controller.state import store as state_store

A, B = "bbench-a", "bbench-b"
ADDR = {A: "127.0.96.1", B: "127.0.97.1"}
MARIA, PG = "maria.bbench.test", "pg.bbench.test"
SHOP, LEDGER = "shop", "ledger"
LOCK = "/tmp/tenantctl-embedded.lock"
CLI = str(Path(sys.executable).with_name("tenantctl"))
MB = 1e6
#: the whole dump command the product runs (controller/drivers/backup/agent.py), plus zstd
ZST = "/var/tmp/bbench-dump.sql.zst"
#: ~100-byte values: 10 + 1 + 32 + 1 + 32 + 1 + 14 = 91 characters
MARIA_ROW = "CONCAT(LPAD({id}, 10, '0'), '-', MD5({id}), '-', MD5(CONCAT('{salt}', {id})), '-', REPEAT('{pad}', 14))"
PG_ROW = "lpad({id}::text, 10, '0') || '-' || md5({id}::text) || '-' || md5('{salt}' || {id}) || '-' || repeat('{pad}', 14)"
TARGETS = {"throughput": 0.65, "unchanged": 1.0, "changed": 5.0}


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- the desired state (written into the bench's temporary directory) ----------------------

def infra_docs(subs: int) -> list[dict[str, Any]]:
    def server(name: str, region: str, roles: list[str], sites: int) -> dict[str, Any]:
        spec: dict[str, Any] = {"region": region, "provider": "docker", "address": ADDR[name],
                                "ips": [{"address": ADDR[name], "type": "shared"}], "roles": roles,
                                "capacity": {"sites": sites, "diskMB": 500_000}}
        if "web" in roles:
            spec["offers"] = {"php": {"versions": ["8.2"], "handlers": ["fpm"]}}
        return {"apiVersion": "tenantctl.io/v1", "kind": "Server", "metadata": {"name": name}, "spec": spec}

    return [
        {"apiVersion": "tenantctl.io/v1", "kind": "Region", "metadata": {"name": "eu-west"},
         "spec": {"timezone": "Europe/Paris", "backupCopiesTo": "all"}},
        {"apiVersion": "tenantctl.io/v1", "kind": "Region", "metadata": {"name": "us-east"},
         "spec": {"timezone": "America/New_York", "backupCopiesTo": "all"}},
        server(A, "eu-west", ["web", "db-mariadb", "db-postgresql", "dns", "backup"], subs + 10),
        server(B, "us-east", ["dns", "backup"], 1),
    ]


def plan(name: str, databases: int, disk_mb: int) -> dict[str, Any]:
    return {"apiVersion": "tenantctl.io/v1", "kind": "ServicePlan", "metadata": {"name": name},
            "spec": {"resources": {"diskMB": disk_mb, "databases": databases},
                     "hosting": {"ssl": False, "php": {"handler": "fpm", "version": "8.2"}},
                     "backup": {"keepDaily": 15}}}


def sub(name: str, plan_name: str, databases: list[dict[str, str]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"customer": "bbench", "plan": plan_name, "region": "eu-west"}
    if databases:
        spec["databases"] = databases
    return {"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": name}, "spec": spec}


def small_name(i: int) -> str:
    return f"s{i:03d}.bbench.test"


def write_desired(desired: Path, subs: int) -> None:
    desired.mkdir(parents=True, exist_ok=True)
    (desired / "infra.yaml").write_text(yaml.safe_dump_all(infra_docs(subs)))
    (desired / "tenants.yaml").write_text(yaml.safe_dump_all([
        plan("bigdb", 2, 8192), plan("small", 0, 100),
        {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "metadata": {"name": "bbench"},
         "spec": {"email": "ops@bbench.test", "state": "active"}},
        sub(MARIA, "bigdb", [{"name": SHOP, "engine": "mariadb"}]),
        sub(PG, "bigdb", [{"name": LEDGER, "engine": "postgresql"}]),
    ]))


def write_small(desired: Path, subs: int) -> None:
    (desired / "small.yaml").write_text(yaml.safe_dump_all([sub(small_name(i), "small") for i in range(subs)]))


# --- commands as processes, servers over SSH ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Proc:
    code: int
    out: str
    err: str
    wall: float


class Bench:
    """The bench's own environment: a state directory, its desired state, its servers."""

    def __init__(self, root: Path, subs: int) -> None:
        self.root = root
        self.state = root / "state"
        self.desired = root / "desired"
        write_desired(self.desired, subs)
        ds = model.load_desired([self.desired])
        self.specs = [embedded.ServerSpec.from_dict({"name": n, **s.model_dump(mode="json")})
                      for n, s in ds.servers.items()]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
        self.env.update(TENANTCTL_STATE_DIR=str(self.state), COLUMNS="200")
        self._ssh: dict[str, transport.Transport] = {}
        #: the fake clock: each backup run is one night later
        self.night = dt.datetime.now(dt.UTC).replace(microsecond=0, second=0, minute=0) + dt.timedelta(days=1)

    def tc(self, *args: str, now: dt.datetime | None = None, ok: Sequence[int] = (0,), timeout: float = 3600) -> Proc:
        """``tenantctl ARGS`` as a process (``now``: TENANTCTL_NOW); wall time of the whole process."""
        env = dict(self.env)
        if now is not None:
            env["TENANTCTL_NOW"] = now.isoformat()
        t0 = time.perf_counter()
        p = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
        done = Proc(p.returncode, p.stdout, p.stderr, time.perf_counter() - t0)
        if done.code not in ok:
            raise RuntimeError(f"tenantctl {shlex.join(args)}: exit {done.code}\n{done.out[-3000:]}\n{done.err[-3000:]}")
        return done

    def files(self) -> list[str]:
        return ["-f", str(self.desired)]

    def next_night(self) -> dt.datetime:
        self.night += dt.timedelta(days=1)
        return self.night

    def backup_run(self, *what: str) -> tuple[Proc, dt.datetime]:
        now = self.next_night()
        done = self.tc("backup", "run", *self.files(), *what, now=now)
        return done, now

    def on(self, server: str, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 3600) -> str:
        """A command as root on a server over tenantctl's SSH transport (non-zero exit raises)."""
        t = self._ssh.get(server)
        if t is None:
            t = self._ssh[server] = transport.Transport(self.state, provisioning.ssh_key(self.state), ADDR[server],
                                                        pin_host_key=False)
        done = t.run(list(argv), stdin=stdin, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{server}: {shlex.join(argv)}: exit {done.returncode}: {done.error[-2000:]}")
        return done.stdout.decode(errors="replace")

    def timed_on(self, server: str, argv: Sequence[str]) -> float:
        t0 = time.perf_counter()
        self.on(server, argv)
        return time.perf_counter() - t0

    def close(self) -> None:
        for t in self._ssh.values():
            t.close()
        self._ssh.clear()

    # -- the effect, seen through real clients --

    def du(self, server: str) -> int:
        """Bytes of bbench-a's repository on ``server`` (``du -sb`` of its owner path)."""
        path = provisioning.backup.owner_path(A)
        out = self.on(server, ["sh", "-c", 'test -d "$1" || { echo 0; exit 0; }; du -sb "$1"', "du", path])
        return int(out.split()[0])

    def stored(self) -> dict[str, int]:
        return {"eu-west": self.du(A), "us-east": self.du(B)}

    def creds(self, subscription: str, db: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.tc("db", "credentials", subscription, db, "-o", "json").out)
        return doc

    def sql(self, subscription: str, db: str, statement: str) -> str:
        c = self.creds(subscription, db)
        if c["engine"] == "mariadb":
            argv = ["mariadb", "-N", "-B", "-h", c["host"], "-P", str(c["port"]), "-u", c["user"], c["database"],
                    "-e", statement]
            env = {"PATH": "/usr/bin:/bin", "MYSQL_PWD": c["password"]}
        else:
            argv = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", c["host"], "-p", str(c["port"]),
                    "-U", c["user"], "-d", c["database"], "-c", statement]
            env = {"PATH": "/usr/bin:/bin", "PGPASSWORD": c["password"]}
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} {statement[:80]}: {p.stderr.strip()}")
        return p.stdout.strip()

    def checksum(self, subscription: str) -> str:
        if subscription == MARIA:
            return self.sql(MARIA, SHOP, "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT_WS('|', id, v))) FROM t")
        return self.sql(PG, LEDGER, "SELECT count(*), sum(hashtext(id || '|' || v)::bigint) FROM t")


@contextlib.contextmanager
def embedded_lock(wanted: bool) -> Iterator[None]:
    if not wanted:
        yield
        return
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {LOCK} (another embedded run holds it) ...", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- figures -----------------------------------------------------------------------------------

@dataclasses.dataclass
class Row:
    figure: str
    measured: str
    target: str
    result: str


@dataclasses.dataclass
class Data:
    rows: int
    maria_dump: int = 0
    pg_dump: int = 0


_SUMMARY = re.compile(r"(Succeeded|PartiallyFailed): (\d+)/(\d+) subscriptions in ([\d.]+) s, (\d+) bytes added")


def summary(out: str) -> tuple[float, int]:
    """The run's own last line: its seconds and the bytes restic reported added."""
    m = _SUMMARY.search(out)
    if m is None:
        raise RuntimeError(f"no summary line in: {out[-500:]}")
    return float(m[4]), int(m[5])


def target_seconds(b: Bench) -> dict[str, float]:
    """The ledger's seconds of bbench-a's last run per region (own region: the local
    backup job; the others: the copy job)."""
    with contextlib.closing(state_store.Store.open_readonly(b.state / "state.db")) as store:
        return {t.region: t.seconds for t in ledger.targets(store) if t.server == A}


def dump_argv(engine: str, subscription: str, db: str) -> list[str]:
    return backup_agent.dump_argv(engine, naming.database(subscription, db))


def dump_size(b: Bench, engine: str, subscription: str, db: str) -> int:
    argv = shlex.join(dump_argv(engine, subscription, db))
    return int(b.on(A, ["bash", "-c", f"set -o pipefail; {argv} | wc -c"]).strip())


def ensure_zstd(b: Bench) -> str:
    """zstd on bbench-a: the server image has none; this bench's own container gets the
    host's binary (Debian 12 both; its libraries are dependencies of apt)."""
    if b.on(A, ["sh", "-c", "command -v zstd || true"]).strip():
        return "zstd of the server image"
    b.on(A, ["sh", "-c", "cat > /usr/local/bin/zstd && chmod 0755 /usr/local/bin/zstd"],
         stdin=Path(shutil.which("zstd") or "/usr/bin/zstd").read_bytes())
    version = b.on(A, ["zstd", "--version"]).strip()
    return f"the host's zstd copied into this bench's bbench-a ({version})"


def load_tables(b: Bench, rows: int) -> None:
    t0 = time.perf_counter()
    b.sql(MARIA, SHOP, "DROP TABLE IF EXISTS t; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(120) NOT NULL); "
                       f"INSERT INTO t SELECT seq, {MARIA_ROW.format(id='seq', salt='x', pad='r')} "
                       f"FROM seq_1_to_{rows}")
    t1 = time.perf_counter()
    b.sql(PG, LEDGER, "DROP TABLE IF EXISTS t; CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL); "
                      f"INSERT INTO t SELECT g, {PG_ROW.format(id='g', salt='x', pad='r')} "
                      f"FROM generate_series(1, {rows}) g")
    print(f"loaded {rows:,} rows server-side: MariaDB {t1 - t0:.1f}s (INSERT ... SELECT FROM seq_1_to_{rows}), "
          f"PostgreSQL {time.perf_counter() - t1:.1f}s (generate_series)", flush=True)


def change_range(b: Bench, subscription: str, rows: int, night: int) -> tuple[int, int]:
    """1 % of the rows, one contiguous id range (a different range each night)."""
    n = max(1, rows // 100)
    lo = rows // 4 + night * n
    hi = lo + n - 1
    if subscription == MARIA:
        b.sql(MARIA, SHOP, f"UPDATE t SET v = {MARIA_ROW.format(id='id', salt=f'night{night}', pad='u')} "
                           f"WHERE id BETWEEN {lo} AND {hi}")
    else:
        b.sql(PG, LEDGER, f"UPDATE t SET v = {PG_ROW.format(id='id', salt=f'night{night}', pad='u')} "
                          f"WHERE id BETWEEN {lo} AND {hi}")
    return lo, hi


def wipe_repositories(b: Bench) -> None:
    """bbench-a's repositories removed on both repository servers: the next run is a
    first night again (the agent initialises missing repositories)."""
    path = provisioning.backup.owner_path(A)
    for server in (A, B):
        b.on(server, ["rm", "-rf", "--", path])
        # rclone serve restic caches object listings (--cache-objects): restarted, it
        # sees the empty directory (else restic finds stale keys: "wrong password")
        b.on(server, ["service", "tenantctl-restic-rest", "restart"])
    for server in (A, B):
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection((ADDR[server], provisioning.backup.PORT), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server}: the repository server did not come back after its restart")
            time.sleep(0.1)


def figure_throughput(b: Bench, data: Data, runs: int, rows_out: list[Row]) -> dict[str, int]:
    print(f"\n[1] nightly backup throughput vs mariadb-dump | zstd -3 > file (load {load()})", flush=True)
    note = ensure_zstd(b)
    dump = shlex.join(dump_argv("mariadb", MARIA, SHOP))
    base = []
    for _ in range(runs):
        base.append(b.timed_on(A, ["bash", "-c", f"set -o pipefail; {dump} | zstd -3 -q -c > {ZST}"]))
    zst = int(b.on(A, ["stat", "-c", "%s", ZST]).strip())
    b.on(A, ["rm", "-f", ZST])
    zbase = median(base)
    print(f"  dump | zstd -3 > file on {A} over SSH ({note}): runs {', '.join(f'{x:.2f}' for x in base)} s, "
          f"median {zbase:.2f}s = {data.maria_dump / MB / zbase:.1f} MB/s of dump; .zst {zst / MB:.1f} MB")

    full, local, copy, stored = [], [], [], []
    for i in range(runs):
        wipe_repositories(b)
        done, _ = b.backup_run(MARIA)
        sec = target_seconds(b)
        st = b.stored()
        full.append(done.wall)
        local.append(sec.get("eu-west", 0.0))
        copy.append(sec.get("us-east", 0.0))
        stored.append(st)
        print(f"  first night {i + 1} (both repositories empty): tenantctl backup run {MARIA}: {done.wall:.2f}s wall "
              f"(run itself {summary(done.out)[0]:.2f}s: local backup {local[-1]:.2f}s + copy to us-east "
              f"{copy[-1]:.2f}s; restic added {summary(done.out)[1] / MB:.1f} MB); stored eu-west "
              f"{st['eu-west'] / MB:.1f} MB, us-east {st['us-east'] / MB:.1f} MB", flush=True)
    tfull = median(full)
    ratio_full = zbase / tfull
    unchanged: list[float] = []
    for _ in range(runs):
        done, _ = b.backup_run(MARIA)
        unchanged.append(done.wall)
    tun = median(unchanged)
    ratio_un = zbase / tun
    print(f"  unchanged nights: tenantctl backup run {MARIA}: {', '.join(f'{x:.2f}' for x in unchanged)} s, "
          f"median {tun:.2f}s (load {load()})")
    mbps = data.maria_dump / MB
    rows_out.append(Row("backup throughput, first (full) night", f"{mbps / tfull:.1f} MB/s = {ratio_full:.2f}x "
                        f"dump|zstd ({mbps / zbase:.1f} MB/s); {tfull:.1f}s = local {median(local):.1f}s + copy "
                        f"{median(copy):.1f}s", f">= {TARGETS['throughput']}x",
                        "PASS" if ratio_full >= TARGETS["throughput"] else "MISS"))
    rows_out.append(Row("backup throughput, unchanged night", f"{mbps / tun:.1f} MB/s = {ratio_un:.2f}x dump|zstd "
                        f"({tun:.1f}s)", f">= {TARGETS['throughput']}x",
                        "PASS" if ratio_un >= TARGETS["throughput"] else "MISS"))
    return stored[-1]


def figure_stored(b: Bench, runs: int, full: dict[str, int], rows_out: list[Row]) -> None:
    print(f"\n[2] bytes stored on an unchanged night (load {load()})", flush=True)
    adds: list[dict[str, int]] = []
    before = b.stored()
    for _ in range(runs):
        b.backup_run(MARIA)
        after = b.stored()
        adds.append({r: after[r] - before[r] for r in after})
        before = after
    for region in ("eu-west", "us-east"):
        xs = [a[region] for a in adds]
        print(f"  {region}: +{', '.join(str(x) for x in xs)} bytes per night (du -sb), full {full[region] / MB:.1f} MB")
    med = median([a["eu-west"] for a in adds])
    pct = 100 * med / full["eu-west"]
    med_b = median([a["us-east"] for a in adds])
    rows_out.append(Row("stored, unchanged night", f"{med / MB:.2f} MB = {pct:.2f} % of full {full['eu-west'] / MB:.1f} MB "
                        f"(us-east copy {100 * med_b / full['us-east']:.2f} %)", f"< {TARGETS['unchanged']:.0f} %",
                        "PASS" if pct < TARGETS["unchanged"] else "MISS"))
    print(f"  (load {load()})")


def figure_changed(b: Bench, data: Data, runs: int, full: dict[str, int], rows_out: list[Row]) -> None:
    print(f"\n[3] bytes stored after 1 % of the rows changed in one id range (load {load()})", flush=True)
    adds: list[dict[str, int]] = []
    for night in range(runs):
        lo, hi = change_range(b, MARIA, data.rows, night)
        before = b.stored()
        done, _ = b.backup_run(MARIA)
        after = b.stored()
        adds.append({r: after[r] - before[r] for r in after})
        print(f"  MariaDB ids {lo}..{hi} updated: +{adds[-1]['eu-west'] / MB:.2f} MB eu-west, "
              f"+{adds[-1]['us-east'] / MB:.2f} MB us-east (restic added {summary(done.out)[1] / MB:.2f} MB, "
              f"{done.wall:.1f}s)", flush=True)
    med = median([a["eu-west"] for a in adds])
    pct = 100 * med / full["eu-west"]
    rows_out.append(Row("stored, 1 % MariaDB rows changed", f"{med / MB:.2f} MB = {pct:.2f} % of full "
                        f"(us-east {100 * median([a['us-east'] for a in adds]) / full['us-east']:.2f} %)",
                        f"< {TARGETS['changed']:.0f} %", "PASS" if pct < TARGETS["changed"] else "MISS"))

    before = b.stored()
    done, _ = b.backup_run(PG)
    after = b.stored()
    pg_full = after["eu-west"] - before["eu-west"]
    print(f"  PostgreSQL first backup of {PG}: +{pg_full / MB:.1f} MB stored eu-west "
          f"(dump {data.pg_dump / MB:.1f} MB, {done.wall:.1f}s)", flush=True)
    pg_adds: list[int] = []
    for night in range(runs):
        lo, hi = change_range(b, PG, data.rows, night)
        before = b.stored()
        done, _ = b.backup_run(PG)
        after = b.stored()
        pg_adds.append(after["eu-west"] - before["eu-west"])
        print(f"  PostgreSQL ids {lo}..{hi} updated: +{pg_adds[-1] / MB:.2f} MB eu-west (restic added "
              f"{summary(done.out)[1] / MB:.2f} MB, {done.wall:.1f}s)", flush=True)
    med = median(pg_adds)
    rows_out.append(Row("stored, 1 % PostgreSQL rows changed", f"{med / MB:.2f} MB = {100 * med / pg_full:.1f} % "
                        f"of its full {pg_full / MB:.1f} MB", "none (measured)", "-"))
    print(f"  (load {load()})")


def figure_restore(b: Bench, data: Data, runs: int, rows_out: list[Row]) -> None:
    print(f"\n[4] restore from us-east (load {load()})", flush=True)
    listed = ledger_count(b, MARIA, "us-east")
    held = restic_count(b, B).get(MARIA, 0)
    if listed == 0 and held:
        refused = b.tc("restore", *b.files(), MARIA, "--only", f"db:{SHOP}", "--from-region", "us-east", ok=(0, 1, 2))
        print(f"  PRODUCT BUG: after `tenantctl backup run {PG}` (same server), `tenantctl backup list {MARIA}` shows "
              f"{listed} us-east snapshots while `restic snapshots` on us-east lists {held} of {MARIA}; "
              f"`tenantctl restore {MARIA} --only db:{SHOP} --from-region us-east` exits {refused.code}: "
              f"{refused.err.strip()}")
        b.backup_run(MARIA, PG)
        print(f"  (an unchanged night of both, `tenantctl backup run {MARIA} {PG}`, records them again: "
              f"{ledger_count(b, MARIA, 'us-east')} us-east snapshots listed)", flush=True)
    for subscription, db, size in ((MARIA, SHOP, data.maria_dump), (PG, LEDGER, data.pg_dump)):
        want = b.checksum(subscription)
        walls, own = [], []
        for _ in range(runs):
            b.sql(subscription, db, "DELETE FROM t WHERE id <= 1000")  # the damage the restore must undo
            assert b.checksum(subscription) != want
            done = b.tc("restore", *b.files(), subscription, "--only", f"db:{db}", "--from-region", "us-east",
                        "-o", "json")
            doc = json.loads(done.out)
            got = b.checksum(subscription)
            if not doc["ok"] or got != want:
                raise RuntimeError(f"restore of {subscription} {db}: ok={doc['ok']} {doc.get('error')}: "
                                   f"checksum {got} != {want}")
            walls.append(done.wall)
            own.append(float(doc["seconds"]))
        w = median(walls)
        print(f"  tenantctl restore {subscription} --only db:{db} --from-region us-east: "
              f"{', '.join(f'{x:.2f}' for x in walls)} s (its own 'seconds' {', '.join(f'{x:.2f}' for x in own)}); "
              f"checksum after = at backup ({want.split()[0]} rows)", flush=True)
        engine = "MariaDB" if subscription == MARIA else "PostgreSQL"
        rows_out.append(Row(f"restore {engine}", f"{w / (size / 1e9):.0f} s/GB ({w:.1f}s for a {size / MB:.0f} MB dump)",
                            "none (measured)", "-"))
    print(f"  (load {load()})")


def figure_many(b: Bench, subs: int, rows_out: list[Row]) -> None:
    print(f"\n[5] nightly run of {subs} small subscriptions on {A} (load {load()})", flush=True)
    write_small(b.desired, subs)
    done = b.tc("apply", *b.files())
    print(f"  tenantctl apply of {subs} subscriptions (web space + settings, no database): {done.wall:.1f}s", flush=True)
    names = [small_name(i) for i in range(subs)]
    snaps_before = restic_count(b)
    sampler = ("rm -f /var/tmp/bbench-stop; : > /var/tmp/bbench-restic; "
               "setsid sh -c 'while [ ! -e /var/tmp/bbench-stop ]; do echo $(pgrep -x restic) >> /var/tmp/bbench-restic; "
               "sleep 0.2; done' < /dev/null > /dev/null 2>&1 &")
    b.on(A, ["sh", "-c", sampler])
    la = load()
    try:
        done, _ = b.backup_run("--server", A)
    finally:
        b.on(A, ["touch", "/var/tmp/bbench-stop"])
    time.sleep(0.5)
    samples = [line.split() for line in b.on(A, ["cat", "/var/tmp/bbench-restic"]).splitlines()]
    b.on(A, ["rm", "-f", "/var/tmp/bbench-restic", "/var/tmp/bbench-stop"])
    pids = {p for s in samples for p in s}
    peak = max((len(s) for s in samples), default=0)
    snaps_after = restic_count(b)
    new = {k: snaps_after.get(k, 0) - snaps_before.get(k, 0) for k in snaps_after}
    small_new = sum(new.get(n, 0) for n in names)
    seconds, added = summary(done.out)
    sec = target_seconds(b)
    print(f"  tenantctl backup run --server {A}: {done.wall:.1f}s wall (one run; run itself {seconds:.1f}s: local "
          f"{sec.get('eu-west', 0):.1f}s + copy to us-east {sec.get('us-east', 0):.1f}s), "
          f"{subs + 2} subscriptions = {subs} small + {MARIA} and {PG} (their data unchanged since their last night); "
          f"restic added {added / MB:.1f} MB; load {la} -> {load()}")
    print(f"  restic: {sum(new.values())} new snapshots in eu-west ({small_new} of the small ones; one "
          f"`restic backup` process each), {len(pids)} distinct restic processes seen by a 0.2 s sampler, "
          f"at most {peak} at once", flush=True)
    rows_out.append(Row(f"nightly run, {subs} subscriptions on one server",
                        f"{done.wall:.0f}s ({subs} small + 2 with databases; {sum(new.values())} restic backups, "
                        f"<= {peak} restic at once)", "none (measured)", "-"))


def ledger_count(b: Bench, subscription: str, region: str) -> int:
    """Snapshots of ``subscription`` in ``region`` as ``tenantctl backup list`` shows them."""
    doc = json.loads(b.tc("backup", "list", subscription, "-o", "json").out)
    return sum(1 for s in doc["snapshots"] if s["region"] == region)


def restic_count(b: Bench, server: str = A) -> dict[str, int]:
    """Snapshots per subscription in bbench-a's repository on ``server`` (bbench-a: eu-west,
    bbench-b: us-east), read with the host's restic client (provisioning.backup:
    repo_url, login_password, repo_password, ca_pem)."""
    secrets = b.root / "restic-client"
    secrets.mkdir(exist_ok=True, mode=0o700)
    (secrets / "repo").write_text(provisioning.backup.repo_url(A, provisioning.backup.login_password(b.state, A),
                                                               ADDR[server]))
    (secrets / "pw").write_text(provisioning.backup.repo_password(b.state, A))
    (secrets / "ca.pem").write_text(provisioning.backup.ca_pem(b.state))
    for f in secrets.iterdir():
        f.chmod(0o600)
    p = subprocess.run(["restic", "--no-cache", "--cacert", str(secrets / "ca.pem"), "--repository-file",
                        str(secrets / "repo"), "--password-file", str(secrets / "pw"), "snapshots", "--json"],
                       capture_output=True, text=True, timeout=600, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"restic snapshots: {p.stderr.strip()}")
    counts: dict[str, int] = {}
    for s in json.loads(p.stdout) or []:
        name = next((t.removeprefix("sub=") for t in s.get("tags") or [] if t.startswith("sub=")), "?")
        counts[name] = counts.get(name, 0) + 1
    return counts


# --- main ---------------------------------------------------------------------------------------

T = TypeVar("T")


def attempt(figure: str, rows: list[Row], measure: Callable[[], T]) -> T | None:
    """One figure; its failure is printed and becomes an ERROR row (the others still run)."""
    try:
        return measure()
    except (RuntimeError, AssertionError, OSError, ValueError, errors.TenantctlError) as exc:
        text = str(exc).strip()
        print(f"  ERROR in figure {figure}: {text}", flush=True)
        rows.append(Row(figure, f"ERROR: {text.splitlines()[-1][:150] if text else type(exc).__name__}", "-", "ERROR"))
        return None


def table(rows: list[Row], data: Data, load_start: str, load_end: str, started: dt.datetime, wall: float) -> str:
    lines = [f"== bench/backup.py  {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
             f"load average {load_start} -> {load_end}, {wall / 60:.1f} min",
             f"data: {data.rows:,} rows of ~100 B, one table each: MariaDB dump {data.maria_dump / MB:.1f} MB "
             f"(--skip-extended-insert), PostgreSQL plain dump {data.pg_dump / MB:.1f} MB; 2 regions "
             f"(eu-west local, us-east copy)"]
    w1 = max((len(r.figure) for r in rows), default=6)
    w2 = max((len(r.measured) for r in rows), default=17)
    w3 = max((len(r.target) for r in rows), default=6)
    lines.append(f"{'figure':{w1}}  {'measured (median)':{w2}}  {'target':{w3}}  result")
    lines += [f"{r.figure:{w1}}  {r.measured:{w2}}  {r.target:{w3}}  {r.result}" for r in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of each table (default 1,000,000)")
    ap.add_argument("--subs", type=int, default=200, help="small subscriptions of figure 5 (0 skips it)")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--keep", action="store_true", help="leave the environment up at the end")
    ap.add_argument("--no-lock", action="store_true", help=f"the caller already holds {LOCK}")
    args = ap.parse_args()
    prefix = str(Path(tempfile.gettempdir()) / "bench-backup-")
    root = Path(tempfile.mkdtemp(prefix=Path(prefix).name))
    b = Bench(root, args.subs)
    with embedded_lock(not args.no_lock), embedded.hold(b.state):
        embedded.remove_abandoned(b.specs, prefix=prefix)  # what a killed run of this bench left (never others)
        started, load_start, t_start = dt.datetime.now(dt.UTC), load(), time.perf_counter()
        print(f"bench/backup.py: state {b.state}, load average {load_start}", flush=True)
        try:
            t0 = time.perf_counter()
            embedded.env_up(b.specs, b.state)
            print(f"{A} and {B} up and bootstrapped in {time.perf_counter() - t0:.1f}s", flush=True)
            done = b.tc("apply", *b.files())
            print(f"tenantctl apply ({MARIA}, {PG}): {done.wall:.1f}s", flush=True)
            data = Data(args.rows)
            load_tables(b, args.rows)
            data.maria_dump = dump_size(b, "mariadb", MARIA, SHOP)
            data.pg_dump = dump_size(b, "postgresql", PG, LEDGER)
            print(f"dump sizes: MariaDB {data.maria_dump / MB:.1f} MB, PostgreSQL {data.pg_dump / MB:.1f} MB "
                  f"(the product's dump commands | wc -c)", flush=True)
            rows: list[Row] = []
            full = attempt("1 throughput", rows, lambda: figure_throughput(b, data, args.runs, rows))
            if full is not None:
                attempt("2 unchanged night", rows, lambda: figure_stored(b, args.runs, full, rows))
                attempt("3 changed rows", rows, lambda: figure_changed(b, data, args.runs, full, rows))
            attempt("4 restore", rows, lambda: figure_restore(b, data, args.runs, rows))
            if args.subs:
                attempt(f"5 {args.subs} subscriptions", rows, lambda: figure_many(b, args.subs, rows))
            print()
            print(table(rows, data, load_start, load(), started, time.perf_counter() - t_start))
        finally:
            b.close()
            if not args.keep:  # this bench's own environment only
                embedded.env_down(b.state, only=b.specs, destroy_data=True)
                shutil.rmtree(root, ignore_errors=True)
            else:
                print(f"environment left up: TENANTCTL_STATE_DIR={b.state} tenantctl ... -f {b.desired}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
