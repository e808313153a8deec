"""The nightly care of the repositories: rotation (BKP-2), ``restic check`` with a
rotating read of the data, and the restore drill. Everything that deletes runs on the
repository's own server (the clients' logins are append-only).

* Rotation: ``forget --keep-daily N`` grouped by tags, per subscription, on the
  repository server; never for a subscription whose latest backup failed (a silent
  failure plus rotation leaves nothing), never removing the newest verified snapshot of
  a subscription, never touching final backups (LIFE-6: kept until their purge).
* Check: every region's repositories, reading the pack bucket ``n/7`` of the weekday,
  so every pack is read within a week.
* Drill: a rotating share of the subscriptions (each within ``keepDaily`` nights) is
  restored from ANOTHER region's copy into scratch databases and directories on its own
  server, and compared with what the backup recorded (rows and digest per table, the
  files' manifest digest, the settings' digest). A mismatch or a failed restore marks
  the subscription's backup unverified (``BackupReady`` False, RestoreDrillFailed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.agent import backupjobs
from controller.drivers import transport
from controller.drivers.backup import runner, topology, units
from controller.state import backups as ledger
from controller.state import store as state_store


@dataclass
class Outcome:
    removed: dict[str, list[str]] = field(default_factory=dict)   # region -> snapshot ids
    checks: dict[str, str | None] = field(default_factory=dict)   # region -> error
    drills: dict[str, str | None] = field(default_factory=dict)   # subscription -> error
    seconds: float = 0.0


def subset(now: dt.datetime) -> str:
    """The weekday's pack bucket: ``1/7`` on Monday ... ``7/7`` on Sunday."""
    return f"{now.isoweekday()}/7"


def drill_today(sub: str, keep_daily: int, now: dt.datetime) -> bool:
    """Whether ``sub`` is drilled tonight: each subscription once every ``keep_daily`` nights."""
    n = max(1, keep_daily)
    return int(hashlib.sha256(sub.encode()).hexdigest(), 16) % n == now.date().toordinal() % n


class Nightly:
    def __init__(self, topo: topology.Topology, store: state_store.Store, pool: transport.Pool) -> None:
        self.topo = topo
        self.store = store
        self.pool = pool

    def _sources_in(self, region: str) -> list[str]:
        return [s for s in self.topo.sources() if region in self.topo.regions_of(s)]

    # -- rotation ---------------------------------------------------------------------

    def rotate(self, items: Sequence[Mapping[str, Any]], now: dt.datetime, out: Outcome) -> None:
        want = units.wanted(items)
        attempts = ledger.attempts(self.store)
        skip = sorted(s for s, a in attempts.items() if a.error)
        protect = sorted({s.id for s in self._newest_verified()})
        for region, repo_server in sorted(self.topo.repositories.items()):
            by_keep: dict[int, list[str]] = {}
            for sub, w in want.items():
                if w.server in self.topo.ctx.servers and region in self.topo.regions_of(w.server):
                    by_keep.setdefault(w.keep_daily, []).append(sub)
            sources = self._sources_in(region)
            for keep, subs in sorted(by_keep.items()):
                job = backupjobs.BackupJob(targets=[self.topo.owner_repo(s, region) for s in sources],
                                           units=[backupjobs.Unit(subscription=s, parts=[]) for s in sorted(subs)],
                                           keep_daily=keep, keep_tags=["final"], protect=protect, skip=skip)
                try:
                    res = runner.run_job(self.pool, repo_server, "forget", job)
                except errors.TenantctlError as exc:
                    out.checks.setdefault(region, f"rotation: {exc}")
                    continue
                for source, rr in zip(sources, res.repos, strict=False):
                    out.removed.setdefault(region, []).extend(rr.removed)
                    if rr.ok:
                        ledger.sync_region(self.store, region, source, [s.id for s in rr.snapshots])

    def _newest_verified(self) -> list[ledger.Snapshot]:
        seen: set[tuple[str, str, str, str]] = set()
        out = []
        for s in ledger.snapshots(self.store):  # newest first
            key = (s.region, s.subscription, s.kind, s.name)
            if s.verified and key not in seen:
                seen.add(key)
                out.append(s)
        return out

    # -- repository check -------------------------------------------------------------

    def check(self, now: dt.datetime, out: Outcome, *, read: str | None = None) -> None:
        # a source that never backed up into a region (a spare server, a new one) has no
        # repository there yet: nothing to check
        wrote = {(t.server, t.region) for t in ledger.targets(self.store)}
        for region, repo_server in sorted(self.topo.repositories.items()):
            sources = [s for s in self._sources_in(region) if (s, region) in wrote]
            if not sources:
                continue
            t0 = time.monotonic()
            job = backupjobs.BackupJob(targets=[self.topo.owner_repo(s, region) for s in sources],
                                       subset=subset(now) if read is None else read)
            try:
                res = runner.run_job(self.pool, repo_server, "check", job)
                bad = [f"{src}: {rr.error or 'errors found'}" for src, rr in zip(sources, res.repos, strict=False)
                       if not rr.ok]
                err = "; ".join(bad) or None
            except errors.TenantctlError as exc:
                err = f"check could not run: {exc}"
            out.checks[region] = err
            ledger.record_check(self.store, f"region:{region}", now, ok=err is None,
                                seconds=time.monotonic() - t0, detail=err)

    # -- restore drill ----------------------------------------------------------------

    def drill(self, items: Sequence[Mapping[str, Any]], now: dt.datetime, out: Outcome, *,
              only: Iterable[str] | None = None, final: bool = False) -> None:
        """Drill tonight's share (or ``only`` these); ``final``: their final backups."""
        t0 = time.monotonic()
        want = units.wanted(items)
        chosen = set(only) if only is not None else {s for s, w in want.items() if drill_today(s, w.keep_daily, now)}
        plan = units.by_server(items, chosen)
        for server, us in sorted(plan.items()):
            regions = self.topo.target_regions(server) or (self.topo.regions_of(server)[:1])
            if not regions:
                continue
            self._drill_server(server, regions[0], us, now, out, asked=only is not None, final=final)
        ledger.record_check(self.store, "drill", now, ok=not any(out.drills.values()),
                            seconds=time.monotonic() - t0,
                            detail="; ".join(f"{s}: {e}" for s, e in sorted(out.drills.items()) if e) or None)

    def _drill_server(self, server: str, region: str, us: list[backupjobs.Unit], now: dt.datetime,
                      out: Outcome, *, asked: bool, final: bool = False) -> None:
        """Drill ``us`` from ``region``. A subscription with no copy there yet is skipped
        tonight (BackupCopyMissing already says so) unless it was ``asked`` for."""
        snaps = [s for s in ledger.snapshots(self.store) if s.server == server and (s.final or not final)]
        originals = {s.id: s for s in snaps if s.original is None}
        drilled: list[backupjobs.Unit] = []
        expected: dict[tuple[str, str, str], ledger.Snapshot] = {}
        for u in us:
            parts = []
            for p in u.parts:
                copy = next((s for s in snaps if s.region == region and s.subscription == u.subscription
                             and s.kind == p.kind and s.name == p.name and s.final == final), None)
                if copy is None:
                    if asked:
                        out.drills[u.subscription] = f"no {p.kind} {p.name} snapshot in {region}"
                    break
                want = originals.get(copy.source_id, copy)
                expected[(u.subscription, p.kind, p.name)] = want
                unstable = list((want.sums or {}).get("unstable") or [])
                parts.append(backupjobs.Part(kind=p.kind, name=p.name, engine=p.engine, path=p.path,
                                             exclude=p.exclude, owner=p.owner, snapshot=copy.id,
                                             unstable=unstable))
            else:
                drilled.append(backupjobs.Unit(subscription=u.subscription, parts=parts))
        if not drilled:
            self._record(out, us, now)
            return
        scratch = hashlib.sha256(f"{server}{now.isoformat()}".encode()).hexdigest()[:10]
        job = backupjobs.BackupJob(host=server, cacert=runner.CA_FILE, local=self.topo.repo(server, region),
                                   units=drilled, scratch=scratch, concurrency=1)
        try:
            res = runner.run_job(self.pool, server, "drill", job)
        except errors.TenantctlError as exc:
            for u in drilled:
                out.drills[u.subscription] = f"drill could not run: {exc}"
            self._record(out, us, now)
            return
        passed: dict[str, list[str]] = {}
        for r in res.parts:
            recorded = expected.get((r.subscription, r.kind, r.name))
            problem = r.error if not r.ok else compare(recorded, r)
            if problem:
                prev = out.drills.get(r.subscription)
                out.drills[r.subscription] = "; ".join(filter(None, [prev, f"{r.kind} {r.name}: {problem}"]))
            elif recorded is not None:
                passed.setdefault(r.subscription, []).append(recorded.id)
        for u in drilled:
            out.drills.setdefault(u.subscription, None)
            if out.drills[u.subscription] is None:
                ledger.set_verified(self.store, passed.get(u.subscription, []))
        self._record(out, us, now)

    def _record(self, out: Outcome, us: list[backupjobs.Unit], now: dt.datetime) -> None:
        for u in us:
            if u.subscription in out.drills:
                ledger.record_drill(self.store, u.subscription, now, out.drills[u.subscription])


def compare(want: ledger.Snapshot | None, got: backupjobs.PartResult) -> str | None:
    """What differs between what a backup recorded and what its restore gave (None: equal)."""
    if want is None or want.sums is None:
        return "nothing recorded at backup time to compare with"
    sums = want.sums
    if got.kind == "db":
        recorded = {t: (v["rows"], v["digest"]) for t, v in sums.get("tables", {}).items()}
        restored = {t: (v.rows, v.digest) for t, v in got.tables.items()}
        if recorded != restored:
            diff = sorted(t for t in set(recorded) | set(restored) if recorded.get(t) != restored.get(t))
            return "tables differ: " + ", ".join(
                f"{t} (rows {recorded.get(t, (None,))[0]} -> {restored.get(t, (None,))[0]})" for t in diff[:10])
        return None
    if sums.get("digest") != got.digest:
        return f"digest {sums.get('digest', '')[:12]} recorded, {got.digest[:12]} restored"
    return None
