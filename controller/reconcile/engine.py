"""The reconcile engine: plan, then apply per concern in one batch per server.

``plan`` is pure over the store's snapshot. ``Engine.reconcile`` records what it
decided before any driver acts (placements, sticky values, transfers: a crash then a
re-run reuses them, so nothing is created twice), calls each concern's driver once per
server, then records fingerprints of what was applied, conditions, backoff, events and
the status snapshot. Level-triggered: it compares desired with last-applied, never
replays events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.drivers import base
from controller.effective import Subscription
from controller.model.desired import DesiredState
from controller.ratelimit import RateLimits
from controller.reconcile import planner
from controller.reconcile.queue import ExponentialBackoff
from controller.state import events, records
from controller.state import store as state_store

RETENTION_DAYS = 60  # LIFE-6
WHOLE = planner.WHOLE
#: Deletion order (LIFE-6): every driver keeps a final copy of its data before it removes
#: anything; the concerns whose final copy is most likely to fail (database dumps) go
#: first, so that a failure stops the deletion before the rest is gone. DNS last.
DELETE_ORDER = ("backup", "db", "web", "php", "tls", "dns")


def default_drivers() -> dict[str, base.Driver]:
    """The driver of every concern; ``NotProvisioned`` until a concern has its own."""
    return {c: base.NotProvisioned(c) for c in base.CONCERNS}


def plan(
    ds: DesiredState,
    now: dt.datetime,
    store: state_store.Store | None,
    drivers: Mapping[str, base.Driver] | None = None,
) -> planner.Planned:
    return planner.plan(ds, now, drivers if drivers is not None else default_drivers(), store)


@dataclass
class Report:
    planned: planner.Planned
    #: name -> concern -> outcome, for the subscriptions this pass touched
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: name -> messages of failed concerns
    failed: dict[str, list[str]] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)
    #: when failed or deferred subscriptions are due again (store clock)
    retry_at: dict[str, dt.datetime] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _ready_condition(concern: str, outcome: str, message: str) -> records.Condition:
    status: records.ConditionStatus = {"provisioned": "True", "failed": "False"}.get(outcome, "Unknown")  # type: ignore[assignment]
    reason = {"provisioned": "Provisioned", "failed": "Failed"}.get(outcome, "NotProvisioned")
    return records.Condition(type=f"{concern.capitalize()}Ready", status=status, reason=reason,
                             message=message, last_transition=None)


class Engine:
    """One reconcile pass over a desired state, against one state store."""

    def __init__(
        self,
        store: state_store.Store,
        drivers: Mapping[str, base.Driver] | None = None,
        *,
        limits: RateLimits | None = None,
        backoff: ExponentialBackoff | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        actor: str = "controller",
    ) -> None:
        self.store = store
        self.limits = limits or RateLimits()
        self.drivers: dict[str, base.Driver] = {}
        self.set_drivers(drivers if drivers is not None else default_drivers())
        self.backoff = backoff or ExponentialBackoff()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.actor = actor
        self._backoff_keys: set[str] = set()

    def set_drivers(self, drivers: Mapping[str, base.Driver]) -> None:
        """Use these drivers; those that call an external service share this engine's
        rate limits (one token bucket per dependency, e.g. per ACME directory)."""
        self.drivers = dict(drivers)
        for driver in self.drivers.values():
            use_limits = getattr(driver, "use_limits", None)
            if use_limits is not None:
                use_limits(self.limits)

    def plan(self, ds: DesiredState) -> planner.Planned:
        return planner.plan(ds, self.clock(), self.drivers, self.store)

    # --- the pass ---------------------------------------------------------------

    def reconcile(
        self,
        ds: DesiredState,
        only: Iterable[str] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Report:
        """One pass. ``progress(what, done, total)`` is called after each server batch."""
        started = time.perf_counter()
        now = self.clock()
        planned = self.plan(ds)
        wanted = set(only) if only is not None else None
        targets = [
            n for n, acts in planned.actions.items()
            if acts and (wanted is None or n in wanted)
        ]
        report = Report(planned)
        self._backoff_keys = {b.key for b in self.store.list_backoff()}
        self._record_decisions(planned, targets, now)
        if targets:
            # What was just recorded (placements, sticky values) is part of the inputs.
            keys = planner.input_keys(ds, now, planner.observe(self.store), self.drivers)
            for name in targets:
                planned.fingerprints[name][planner.INPUTS] = keys[name]
        for name in planned.refresh:
            if wanted is None or name in wanted:
                fps = self.store.get_fingerprints(name)
                fps[planner.INPUTS] = planned.fingerprints[name][planner.INPUTS]
                self.store.set_fingerprints(name, fps)
        batches: dict[tuple[str, str | None], list[base.Change]] = defaultdict(list)
        for name in targets:
            sub = planned.subscriptions[name]
            action: base.Action = "suspend" if sub.item["state"] == "suspended" else "ensure"
            for concern in planned.changed[name]:
                if self._backing_off(name, concern, report):
                    report.deferred.append(f"{name}/{concern}")
                    continue
                driver = self.drivers[concern]
                batches[(concern, sub.placement.server)].append(base.Change(name, action, driver.slice(sub.item)))
        total = sum(len(c) for c in batches.values())
        done = 0
        # Concerns in dependency order (web makes the user and web space php runs in).
        order = {c: i for i, c in enumerate(base.CONCERNS)}
        for (concern, server), changes in sorted(batches.items(), key=lambda kv: (order[kv[0][0]], kv[0][1] or "")):
            results = self._run_driver(concern, server, changes)
            self._record_usage(self.drivers[concern])
            done += len(changes)
            if progress is not None:
                progress(f"{concern} on {server or '-'}", done, total)
            with self.store.transaction():  # one commit per server batch
                for res in results:
                    report.outcomes.setdefault(res.name, {})[concern] = res.outcome
                    self._after(res, concern, report)
        with self.store.transaction():
            for name in targets:
                self._finish(planned.subscriptions[name], planned, report)
        self._delete(planned.deletions, report, now)
        self._purge(now)
        report.seconds = time.perf_counter() - started
        return report

    def resync(self, ds: DesiredState) -> dict[str, dict[str, str]]:
        """Drift repair: ask every drift-aware driver whether each server still has what
        was applied (one round trip per server and concern); re-apply what drifted and
        record an event. Returns ``{name: {concern: what differed}}``."""
        planned = self.plan(ds)
        found: dict[str, dict[str, str]] = {}
        self._backoff_keys = {b.key for b in self.store.list_backoff()}
        self._measure(planned)
        for concern, driver in self.drivers.items():
            if not isinstance(driver, base.DriftAware):
                continue
            per_server: dict[str | None, list[base.Change]] = defaultdict(list)
            for name, sub in planned.subscriptions.items():
                if sub.placement.server is None or planned.actions.get(name):
                    continue  # unplaced, or about to be applied anyway
                action: base.Action = "suspend" if sub.item["state"] == "suspended" else "ensure"
                per_server[sub.placement.server].append(base.Change(name, action, driver.slice(sub.item)))
            for server, changes in per_server.items():
                drifted = driver.drifted(server, changes)
                if not drifted:
                    continue
                # A drifted subscription still backing off from a failure waits its turn.
                report = Report(planned)
                repair = [c for c in changes if c.name in drifted and not self._backing_off(c.name, concern, report)]
                with self.store.transaction():
                    for name, what in drifted.items():
                        found.setdefault(name, {})[concern] = what
                        events.record(self.store, actor=self.actor, action="drift", subject=name,
                                      message=f"{concern} on {server}: {what}; repairing")
                if not repair:
                    continue
                results = self._run_driver(concern, server, repair)
                with self.store.transaction():
                    for res in results:
                        self._after(res, concern, report)
        return found

    def _record_decisions(self, planned: planner.Planned, targets: list[str], now: dt.datetime) -> None:
        """Placements, sticky values and transfers, before any driver acts."""
        known = {r.name: r for r in self.store.list_subscriptions(include_deleted=True)} if targets else {}
        with self.store.transaction():
            for name in targets:
                sub = planned.subscriptions[name]
                old = known.get(name)
                pl = sub.placement
                rec = records.SubscriptionRecord(
                    name=name,
                    customer=sub.item["customer"],
                    created_at=old.created_at if old and old.deleted_at is None else now,
                    server=pl.server,
                    ip=pl.ip,
                    db_servers={k: v for k, v in pl.dbServers.items() if v is not None},
                )
                if old != rec:
                    self.store.upsert_subscription(rec)
                for act in planned.actions[name]:
                    if act.startswith(("create", "place:", "move:")):
                        events.record(self.store, actor=self.actor, action=act.split(":")[0], subject=name,
                                      message=act, data={"server": pl.server, "ip": pl.ip})
                ch = sub.changes
                for group, values in ch.sticky_set.items():
                    self.store.set_sticky(name, group, values)
                    events.record(self.store, actor=self.actor, action="sticky", subject=name,
                                  message=f"recorded {group} values (SYNC-2/SYNC-4)")
                for group in ch.sticky_drop:
                    self.store.drop_sticky(name, group)
                    events.record(self.store, actor=self.actor, action="unsticky", subject=name,
                                  message=f"dropped {group} values: synchronised again")
                if ch.transfer is not None and old is not None:
                    self.store.set_transfer(records.TransferRecord(
                        name=name, from_customer=old.customer, to_customer=sub.item["customer"], at=now,
                        frozen=ch.transfer))
                    events.record(self.store, actor=self.actor, action="transfer", subject=name,
                                  message=f"transferred from {old.customer} to {sub.item['customer']}: "
                                          "now custom, keeping its values (PLAN-7)")

    def _measure(self, planned: planner.Planned) -> None:
        """Usage (RES-2) of every placed subscription, from drivers that measure it."""
        for driver in self.drivers.values():
            usage = getattr(driver, "usage", None)
            if usage is None:
                continue
            changes = [base.Change(n, "ensure", driver.slice(s.item)) for n, s in planned.subscriptions.items()
                       if s.placement.server is not None]
            measured = usage(changes) if changes else {}
            with self.store.transaction():
                for name, values in measured.items():
                    self.store.put_usage(name, values)

    def _record_usage(self, driver: base.Driver) -> None:
        """Measurements a driver made while applying (e.g. database sizes, RES-2)."""
        usage = getattr(driver, "last_usage", None)
        if isinstance(usage, dict) and usage:
            with self.store.transaction():
                for name, values in usage.items():
                    self.store.put_usage(name, values)

    def _backing_off(self, name: str, concern: str, report: Report) -> bool:
        key = f"{name}/{concern}"
        if key not in self._backoff_keys:
            return False
        rec = self.store.get_backoff(key)
        # the store stamps next_attempt with its own clock: compare with the same one
        if rec is None or rec.next_attempt <= self.store.now():
            return False
        report.retry_at[name] = min(report.retry_at.get(name, rec.next_attempt), rec.next_attempt)
        return True

    def _run_driver(self, concern: str, server: str | None, changes: list[base.Change]) -> list[base.Result]:
        dep = f"{concern}:{server or '-'}"
        if not self.limits.acquire(dep, timeout=30.0):
            return [base.Result(c.name, "failed", f"rate limit of {dep} exhausted", retry_after=30.0)
                    for c in changes]
        try:
            results = self.drivers[concern].apply(server, changes)
        except errors.DriverError as exc:
            return [base.Result(c.name, "failed", str(exc)) for c in changes]
        by_name = {r.name: r for r in results}
        return [by_name.get(c.name) or base.Result(c.name, "failed", "the driver returned no result")
                for c in changes]

    def _after(self, res: base.Result, concern: str, report: Report) -> None:
        key = f"{res.name}/{concern}"
        self.store.set_condition(res.name, _ready_condition(concern, res.outcome, res.message))
        if res.outcome == "failed":
            prev = self.store.get_backoff(key)
            self._backoff_keys.add(key)
            delay = res.retry_after or self.backoff.delay((prev.failures if prev else 0) + 1)
            rec = self.store.record_failure(key, res.message, delay)
            report.retry_at[res.name] = min(report.retry_at.get(res.name, rec.next_attempt), rec.next_attempt)
            report.failed.setdefault(res.name, []).append(f"{concern}: {res.message}")
            events.record(self.store, actor=self.actor, action="failed", subject=res.name,
                          message=f"{concern}: {res.message}", data={"retryIn": delay})
            return
        if key in self._backoff_keys:
            self.store.clear_backoff(key)
            self._backoff_keys.discard(key)

    def _finish(self, sub: Subscription, planned: planner.Planned, report: Report) -> None:
        name = sub.name
        conds = {c.type: c for c in self.store.get_conditions(name)}
        concerns: dict[str, str] = {}
        for c in base.CONCERNS:
            cond = conds.get(f"{c.capitalize()}Ready")
            concerns[c] = ("provisioned" if cond and cond.status == "True"
                           else "failed" if cond and cond.status == "False" else "not provisioned")
        # Record what was applied: a failed or deferred concern keeps its old
        # fingerprint (so the next pass retries it), and the whole-subscription one is
        # only recorded once every concern is through.
        fps = dict(self.store.get_fingerprints(name))
        fps.pop(WHOLE, None)
        held = self._deferred(report, name) | {
            c for c, outcome in report.outcomes.get(name, {}).items() if outcome == "failed"
        }
        fps.update({c: fp for c, fp in planned.fingerprints[name].items() if c != WHOLE and c not in held})
        if not held:
            fps[WHOLE] = planned.fingerprints[name][WHOLE]
        self.store.set_fingerprints(name, fps)
        item = sub.item
        doc: dict[str, Any] = {
            **item,
            "conditions": item["conditions"] + [
                {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
                 "lastTransitionTime": c.last_transition.isoformat() if c.last_transition else None}
                for c in sorted(conds.values(), key=lambda c: c.type)
            ],
            "concerns": concerns,
            "dnsServers": self._dns_servers(item) if concerns["dns"] == "provisioned" else [],
        }
        self.store.put_status(name, doc)

    def _dns_servers(self, item: dict[str, Any]) -> list[str]:
        """``ip:port`` of every DNS server serving the zone, primary first."""
        fn = getattr(self.drivers["dns"], "dns_servers", None)
        return list(fn(item)) if fn is not None else []

    @staticmethod
    def _deferred(report: Report, name: str) -> set[str]:
        return {d.split("/", 1)[1] for d in report.deferred if d.split("/", 1)[0] == name}

    def _purge(self, now: dt.datetime) -> None:
        """LIFE-6: once the retention period is over, the final copies of a deleted
        subscription (``<state>/retained/<domain>/``) are purged, with an event."""
        root = (self.store.path.parent / "retained").resolve()
        for rec in self.store.list_subscriptions(include_deleted=True):
            if rec.deleted_at is None or rec.purge_after is None or rec.purge_after > now:
                continue
            target = (root / rec.name).resolve()
            if target.parent != root:  # never outside the retained directory
                continue
            shutil.rmtree(target, ignore_errors=True)
            with self.store.transaction():
                self.store.upsert_subscription(dataclasses.replace(rec, purge_after=None))
                events.record(self.store, actor=self.actor, action="purge", subject=rec.name,
                              message=f"retention of {RETENTION_DAYS} days over: final copies purged (LIFE-6)")

    def _delete(self, names: list[str], report: Report, now: dt.datetime) -> None:
        """LIFE-6: a final backup first, then removal; data kept RETENTION_DAYS."""
        for name in names:
            old = self.store.get_subscription(name)
            if old is None or old.deleted_at is not None:
                continue
            outcome: dict[str, str] = {}
            for concern in DELETE_ORDER:
                res = self._run_driver(concern, old.server, [base.Change(name, "delete", {"name": name})])[0]
                outcome[concern] = res.outcome
                if res.outcome == "failed":
                    report.failed.setdefault(name, []).append(f"delete {concern}: {res.message}")
                    break
            report.outcomes[name] = outcome
            if name in report.failed:
                continue
            purge_after = now + dt.timedelta(days=RETENTION_DAYS)
            with self.store.transaction():
                self.store.upsert_subscription(dataclasses.replace(old, deleted_at=now, purge_after=purge_after))
                self.store.drop_fingerprints(name)
                self.store.drop_status(name)
                self.store.drop_sticky(name)
                events.record(self.store, actor=self.actor, action="delete", subject=name,
                              message=f"deleted; data kept until {purge_after.date()} "
                                      "(LIFE-6)")
