"""One backup run: every chosen subscription backed up on the servers that hold it, then
copied to every other region (BKP-1, BKP-3), all of it recorded in the ledger.

Per source server (servers in parallel, ``SERVERS_AT_ONCE``; on a server the agent
backs up ``CONCURRENCY`` subscriptions at once, never all): one ``backup`` job into the
server's own region, then one ``copy`` job into each target region. A subscription
counts as backed up only when every part of it succeeded (a failed dump leaves no
snapshot: the agent's guard); the run is then *PartiallyFailed* and names each failed
subscription and why. A copy that fails (a region unreachable) does not stop the other
regions; the next run copies what is missing (restic copies only what the target lacks).
Fencing (DR-1): a run reads the subscriptions' generations once; each backup job carries
them, and a subscription the server refused (it has seen a newer generation: this
controller is stale) fails with both generations named (its parts fail; a job refused
whole is ``transport.Fenced``).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import errors, provisioning
from controller.agent import backupjobs, jobs
from controller.drivers import transport
from controller.drivers.backup import topology, units
from controller.state import backups as ledger
from controller.state import regions as regions_mod
from controller.state import store as state_store

SERVERS_AT_ONCE = 4
CONCURRENCY = 2
CA_FILE = "backup-ca.pem"
#: seconds one server's backup job may take (a nightly run of a big server)
TIMEOUT = 6 * 3600.0

_TIME = re.compile(r"^(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d+))?(?P<offset>Z|[+-]\d\d:\d\d)?$")

SettingsOf = Callable[[Mapping[str, Any]], bytes]
Progress = Callable[[str, int], None]


@dataclass
class Report:
    """What a run did: per subscription an error or None; per (server, region) the same."""

    subscriptions: dict[str, str | None] = field(default_factory=dict)
    targets: dict[tuple[str, str], str | None] = field(default_factory=dict)
    added: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> dict[str, str]:
        return {s: e for s, e in self.subscriptions.items() if e is not None}

    @property
    def copies_missing(self) -> dict[tuple[str, str], str]:
        return {k: e for k, e in self.targets.items() if e is not None}

    @property
    def ok(self) -> bool:
        return not self.failed and not self.copies_missing


def restic_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_time(text: str) -> dt.datetime:
    """A time as restic prints it (RFC 3339, up to nanoseconds, any offset) in UTC."""
    m = _TIME.match(text)
    if m is None:
        raise ValueError(f"not a restic time: {text!r}")
    frac = (m["frac"] or "")[:6].ljust(6, "0")
    offset = "+00:00" if m["offset"] in (None, "Z") else m["offset"]
    return dt.datetime.fromisoformat(f"{m['base']}.{frac}{offset}").astimezone(dt.UTC)


def agent(pool: transport.Pool, server: str) -> transport.Agent:
    return transport.Agent(pool.get(server), "backup")


def run_job(pool: transport.Pool, server: str, op: jobs.Op, job: backupjobs.BackupJob,
            files: Sequence[transport.File] = (), *, timeout: float = TIMEOUT) -> backupjobs.BackupOutcome:
    """One backup-agent job on ``server`` (the CA bundle always staged)."""
    ca = transport.File(CA_FILE, provisioning.backup.ca_pem(pool.ctx.state_dir).encode(), 0o600)
    out = agent(pool, server).run(jobs.Job(jobs.VERSION, op, backup=job), [ca, *files], timeout=timeout)
    if out.backup is None:
        raise errors.PermanentError(f"server {server}: the backup agent answered without a backup outcome")
    return out.backup


def listing_rows(region: str, server: str, listing: Iterable[backupjobs.Snapshot]) -> list[ledger.Snapshot]:
    """Ledger rows for snapshots a repository listed (copies, or what an earlier run left)."""
    rows = []
    for snap in listing:
        tags = units.describe(snap.tags)
        if "sub" not in tags or tags.get("kind") not in ("db", "files", "settings"):
            continue
        name = tags.get("db") or ("webspace" if tags["kind"] == "files" else "settings")
        rows.append(ledger.Snapshot(region=region, id=snap.id, subscription=tags["sub"], server=server,
                                    kind=tags["kind"], name=name, taken_at=parse_time(snap.time),
                                    original=snap.original or None, final="final" in snap.tags))
    return rows


class Runner:
    """Backs up subscriptions and copies their snapshots (see the module docstring)."""

    def __init__(self, topo: topology.Topology, store: state_store.Store, pool: transport.Pool,
                 settings_of: SettingsOf) -> None:
        self.topo = topo
        self.store = store
        self.pool = pool
        self.settings_of = settings_of

    def run(self, items: Sequence[Mapping[str, Any]], now: dt.datetime, *, only: Iterable[str] | None = None,
            tags: Sequence[str] = (), progress: Progress | None = None) -> Report:
        started = time.monotonic()
        self.pool.use_generations(regions_mod.generations(self.store))
        by_name = {i["name"]: i for i in items}
        plan = units.by_server(items, only)
        report = Report()
        for server_units in plan.values():
            for u in server_units:
                report.subscriptions.setdefault(u.subscription, None)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(SERVERS_AT_ONCE, len(plan)))) as pool:
            futures = {pool.submit(self._server, server, us, by_name, now, tags): server for server, us in plan.items()}
            for fut in concurrent.futures.as_completed(futures):
                server = futures[fut]
                try:
                    part = fut.result()
                except errors.TenantctlError as exc:
                    part = Report(subscriptions={u.subscription: f"server {server}: {exc}" for u in plan[server]})
                for sub, err in part.subscriptions.items():
                    if err is not None and report.subscriptions.get(sub) is None:
                        report.subscriptions[sub] = err
                report.targets.update(part.targets)
                report.added += part.added
                if progress is not None:
                    progress(server, len(plan[server]))
        for sub, err in report.subscriptions.items():
            server = by_name[sub]["server"]
            regions = self.topo.regions_of(server) if server in self.topo.ctx.servers else ()
            ledger.record_attempt(self.store, sub, server, now, err, regions)
        report.seconds = time.monotonic() - started
        return report

    def _server(self, server: str, us: list[backupjobs.Unit], items: Mapping[str, Mapping[str, Any]],
                now: dt.datetime, tags: Sequence[str]) -> Report:
        report = Report(subscriptions={u.subscription: None for u in us})
        local = self.topo.local_region(server)
        if local is None:
            msg = f"region {self.topo.region_of(server)} has no server with the backup role"
            return Report(subscriptions={u.subscription: msg for u in us})
        staged: list[transport.File] = []
        chosen: list[backupjobs.Unit] = []
        for i, u in enumerate(us):
            ps = []
            for p in u.parts:
                if p.kind == "settings":
                    name = f"settings-{i}.json"
                    staged.append(transport.File(name, self.settings_of(items[u.subscription]), 0o600))
                    p = backupjobs.Part(kind="settings", name=p.name, path=name)
                ps.append(p)
            chosen.append(backupjobs.Unit(subscription=u.subscription, parts=ps))
        t0 = time.monotonic()
        job = backupjobs.BackupJob(host=server, time=restic_time(now), cacert=CA_FILE,
                                   local=self.topo.repo(server, local), units=chosen, tags=list(tags),
                                   concurrency=CONCURRENCY)
        out = run_job(self.pool, server, "backup", job, staged)
        rows = []
        for r in out.parts:
            if not r.ok:
                prev = report.subscriptions.get(r.subscription)
                report.subscriptions[r.subscription] = "; ".join(filter(None, [prev, f"{r.kind} {r.name}: {r.error}"]))
                continue
            report.added += r.added
            sums: dict[str, Any] = {"tables": {t: {"rows": s.rows, "digest": s.digest} for t, s in r.tables.items()},
                                    "files": r.files, "digest": r.digest, "unstable": r.unstable}
            rows.append(ledger.Snapshot(region=local, id=r.snapshot, subscription=r.subscription, server=server,
                                        kind=r.kind, name=r.name, taken_at=now, bytes=r.added, sums=sums,
                                        final="final" in tags))
        ledger.add_snapshots(self.store, rows)
        failed_all = all(report.subscriptions[u.subscription] for u in us)
        ledger.record_target(self.store, server, local, now, seconds=time.monotonic() - t0, added=report.added,
                             error="every subscription failed" if failed_all else None)
        report.targets[(server, local)] = "every subscription failed" if failed_all else None
        self._copy(server, local, [u.subscription for u in us], now, report)
        return report

    def _copy(self, server: str, local: str, subs: list[str], now: dt.datetime, report: Report) -> None:
        regions = self.topo.target_regions(server)
        if not regions:
            return
        t0 = time.monotonic()
        job = backupjobs.BackupJob(host=server, cacert=CA_FILE, local=self.topo.repo(server, local),
                                   targets=[self.topo.repo(server, r) for r in regions],
                                   units=[backupjobs.Unit(subscription=s, parts=[]) for s in subs])
        try:
            out = run_job(self.pool, server, "copy", job)
        except errors.TenantctlError as exc:
            for r in regions:
                report.targets[(server, r)] = str(exc)
                ledger.record_target(self.store, server, r, now, seconds=0.0, added=0, error=str(exc))
            return
        known = {s.id: s for s in ledger.snapshots(self.store) if s.region == local and s.server == server}
        for rr in out.repos:
            err = None if rr.ok else (rr.error or "copy failed")
            report.targets[(server, rr.region)] = err
            ledger.record_target(self.store, server, rr.region, now, seconds=rr.seconds or time.monotonic() - t0,
                                 added=rr.added, error=err)
            if not rr.ok:
                continue
            rows = []
            for row in listing_rows(rr.region, server, rr.snapshots):
                src = known.get(row.original or "")
                rows.append(row if src is None else ledger.Snapshot(
                    region=row.region, id=row.id, subscription=src.subscription, server=server, kind=src.kind,
                    name=src.name, taken_at=src.taken_at, bytes=src.bytes, original=src.id, final=src.final))
            ledger.add_snapshots(self.store, rows)
            ledger.sync_region(self.store, rr.region, server, [s.id for s in rr.snapshots], subs)
