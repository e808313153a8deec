"""What the ledger says about backups, for every reader at once: the ``backup`` object of
``status -o json``, the ``BackupReady`` condition, and the Prometheus figures. One
function of the ledger and the clock, so that status, conditions and metrics never
disagree (they are computed here, from the same rows, never stored twice).

A subscription's backup is *fresh* when it succeeded within ``FRESH`` (a nightly
schedule plus slack; the alert BackupTooOld uses the same bound), and *complete* when
every region that should hold it (its own and the copy targets: ``topology``) has a
snapshot of that run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller import metrics
from controller.drivers.backup import topology, units
from controller.state import backups as ledger
from controller.state import drills, records
from controller.state import store as state_store

FRESH = dt.timedelta(hours=26)
CONDITION = "BackupReady"


@dataclass(frozen=True)
class Facts:
    """The ledger, read once (one snapshot of the store)."""

    snapshots: Sequence[ledger.Snapshot]
    attempts: Mapping[str, ledger.Attempt]
    targets: Sequence[ledger.Target]
    checks: Mapping[str, ledger.Check]
    #: each subscription's latest disaster-recovery drill on a spare server (DR-1)
    dr: Mapping[str, drills.Drill] = dataclasses.field(default_factory=dict)

    @classmethod
    def read(cls, store: state_store.Store) -> Facts:
        with store.snapshot():
            return cls(ledger.snapshots(store), ledger.attempts(store), ledger.targets(store), ledger.checks(store),
                       drills.latest(store))

    def of(self, sub: str) -> list[ledger.Snapshot]:
        return [s for s in self.snapshots if s.subscription == sub]


def _iso(t: dt.datetime | None) -> str | None:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if t else None


def newest_by_region(snaps: Sequence[ledger.Snapshot]) -> dict[str, ledger.Snapshot]:
    out: dict[str, ledger.Snapshot] = {}
    for s in snaps:  # newest first
        out.setdefault(s.region, s)
    return out


def subscription(facts: Facts, sub: str) -> dict[str, Any] | None:
    """The ``backup`` object of one subscription's status (None: never backed up)."""
    a = facts.attempts.get(sub)
    snaps = facts.of(sub)
    d = facts.dr.get(sub)
    if a is None and not snaps and d is None:
        return None
    regions = {r: {"lastSnapshot": _iso(s.taken_at), "verified": s.verified}
               for r, s in sorted(newest_by_region(snaps).items())}
    return {"lastSuccess": _iso(a.succeeded_at) if a else None, "lastAttempt": _iso(a.attempted_at) if a else None,
            "error": a.error if a else None, "regions": regions,
            "lastDrill": _iso(a.drilled_at) if a else None, "drillError": a.drill_error if a else None,
            "drDrill": d.as_dict() if d else None}


def condition(facts: Facts, sub: str, now: dt.datetime) -> records.Condition:
    """``BackupReady`` of one subscription (see the module docstring)."""
    a = facts.attempts.get(sub)

    def cond(ok: bool, reason: str, message: str) -> records.Condition:
        return records.Condition(CONDITION, "True" if ok else "False", reason, message)

    if a is None or a.succeeded_at is None:
        return cond(False, "BackupFailed" if a and a.error else "NoBackupYet",
                    a.error if a and a.error else "no backup has been taken yet")
    if a.error:
        return cond(False, "BackupFailed", f"the latest backup failed: {a.error}")
    if now - a.succeeded_at > FRESH:
        return cond(False, "BackupTooOld", f"last success {_iso(a.succeeded_at)}, older than {FRESH}")
    if a.drill_error:
        return cond(False, "RestoreDrillFailed", f"the latest restore drill failed: {a.drill_error}")
    held = newest_by_region(facts.of(sub))
    wanted = a.regions or tuple(held)
    missing = [r for r in wanted if r not in held or held[r].taken_at < a.succeeded_at]
    if missing:
        return cond(False, "CopyMissing", f"no copy of the latest backup in {', '.join(missing)}")
    verified = all(held[r].verified for r in wanted)
    return cond(True, "Ready", f"last success {_iso(a.succeeded_at)} in {', '.join(wanted)}"
                + ("" if verified else "; not verified by a restore drill yet"))


def figures(facts: Facts, topo: topology.Topology, items: Sequence[Mapping[str, Any]],
            now: dt.datetime, spares: Sequence[str] = ()) -> metrics.BackupFigures:
    """The Prometheus figures (low cardinality: by server and region, never by subscription)."""
    want = units.wanted(items)
    stale: dict[str, int] = {r: 0 for r in topo.repositories}
    for sub, w in want.items():
        if w.server not in topo.ctx.servers:
            continue
        held = newest_by_region(facts.of(sub))
        for r in topo.regions_of(w.server):
            if r not in held or now - held[r].taken_at > FRESH:
                stale[r] = stale.get(r, 0) + 1
    failed: dict[str, int] = {}
    for a in facts.attempts.values():
        if a.subscription in want and a.error:
            failed[a.server] = failed.get(a.server, 0) + 1
    ok_targets = [t for t in facts.targets if t.succeeded_at is not None and t.server in topo.ctx.servers]
    drill = facts.checks.get("drill")
    repo_checks = {k.removeprefix("region:"): c for k, c in facts.checks.items() if k.startswith("region:")}
    return metrics.BackupFigures(
        last_success={(t.server, t.region): t.succeeded_at.timestamp() for t in ok_targets if t.succeeded_at},
        last_duration={(t.server, t.region): t.seconds for t in ok_targets},
        stale=stale,
        failed={s: failed.get(s, 0) for s in topo.sources()},
        added_bytes={t.server: float(t.added) for t in ok_targets if t.region == topo.region_of(t.server)},
        drill_failed=sum(1 for a in facts.attempts.values() if a.subscription in want and a.drill_error),
        drill_last=drill.at.timestamp() if drill else None,
        drill_seconds=drill.seconds if drill else None,
        repo_ok={r: c.ok for r, c in repo_checks.items()},
        repo_checked={r: c.at.timestamp() for r, c in repo_checks.items()},
        **dr_figures(facts, items, bool(spares)),
    )


def dr_figures(facts: Facts, items: Sequence[Mapping[str, Any]], enabled: bool) -> dict[str, Any]:
    """The DR drill's figures (DR-1) by the drilled subscriptions' own region: the worst
    RTO/RPO of the latest successful drills, the failed ones, the newest drill's time."""
    region = {i["name"]: i.get("region") or "" for i in items if i.get("state") in units.LIVE}
    rto: dict[str, float] = {}
    rpo: dict[str, float] = {}
    failed: dict[str, int] = dict.fromkeys(sorted({region[s] for s in facts.dr if s in region}), 0)
    for sub, d in facts.dr.items():
        if sub not in region:
            continue  # deleted since
        r = region[sub]
        if not d.ok:
            failed[r] += 1
            continue
        if d.rto_seconds is not None:
            rto[r] = max(rto.get(r, 0.0), d.rto_seconds)
        if d.rpo_seconds is not None:
            rpo[r] = max(rpo.get(r, 0.0), d.rpo_seconds)
    last = max((d.started_at.timestamp() for d in facts.dr.values()), default=None)
    return {"dr_enabled": enabled, "dr_rto": rto, "dr_rpo": rpo, "dr_failed": failed, "dr_last": last}
