"""The reconcile engine: plan, then apply per concern in one batch per server.

``plan`` is pure over the store's snapshot. ``Engine.reconcile`` records what it
decided before any driver acts (placements, sticky values, transfers: a crash then a
re-run reuses them, so nothing is created twice), calls each concern's driver once per
server (once per pass for a driver with servers of its own: dns), then records
fingerprints of what was applied, conditions, backoff, events and the status snapshot.
Level-triggered: it compares desired with last-applied, never replays events.
``force`` (``apply --force``) hands every concern to the drivers whatever changed: a
result that found everything in place (``base.UP_TO_DATE``) writes no event and leaves a
ready condition as it was, so a forced pass over unchanged subscriptions writes only
its run record. Fencing (DR-1): no driver is called for a server of an evacuated region,
and the subscriptions' generations are read once per pass and handed to the drivers
whose agent jobs carry them (``transport.UsesGenerations``): an agent refuses a job of a
generation older than the one it has seen, a permanent failure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.drivers import base, identity, transport
from controller.effective import Subscription, spec
from controller.model.desired import DesiredState
from controller.ratelimit import RateLimits
from controller.reconcile import audit, drift, guard, migration, planner
from controller.reconcile.queue import ExponentialBackoff
from controller.state import events, records, regions
from controller.state import store as state_store

log = logging.getLogger("tenantctl")

RETENTION_DAYS = 60  # LIFE-6
#: Rows written per transaction when a pass records many subscriptions at once
BATCH = 500
WHOLE = planner.WHOLE
#: Deletion order (LIFE-6): every driver keeps a final copy of its data before it removes
#: anything; the concerns whose final copy is most likely to fail (database dumps) go
#: first, so that a failure stops the deletion before the rest is gone. DNS last.
DELETE_ORDER = ("backup", "db", "web", "php", "tls", "dns")
#: Apply order in a pass: web makes the user and web space php runs in; tls needs the
#: zone (DNS-01) and the vhost (HTTP-01) of the same pass.
ORDER = ("web", "php", "db", "dns", "tls", "backup")
#: A concern is not tried in a pass where one it depends on failed for the same
#: subscription (no wasted ACME order when the zone could not be written).
DEPENDS: dict[str, tuple[str, ...]] = {"php": ("web",), "tls": ("web", "dns")}
#: The one backoff formula (``base * 2**(n-1)``, capped), with a gentler start for the
#: concerns that call a third party with rate limits of its own: an ACME CA.
BACKOFF: dict[str, ExponentialBackoff] = {"tls": ExponentialBackoff(base=60.0, cap=6 * 3600.0)}


def default_drivers() -> dict[str, base.Driver]:
    """The driver of every concern; ``NotProvisioned`` until a concern has its own."""
    return {c: base.NotProvisioned(c) for c in base.CONCERNS}


def plan(
    ds: DesiredState,
    now: dt.datetime,
    store: state_store.Store | None,
    drivers: Mapping[str, base.Driver] | None = None,
    *,
    recorded: bool = True,
    override_windows: bool = False,
) -> planner.Planned:
    return planner.plan(ds, now, drivers if drivers is not None else default_drivers(), store, recorded=recorded,
                        override_windows=override_windows)


def forced(planned: planner.Planned, drivers: Mapping[str, base.Driver], names: set[str] | None) -> None:
    """``apply --force``: every concern of the subscriptions ``names`` (None: all) counts
    as changed in ``planned`` (action ``force:<concern>``): the drivers get them all and
    compare with the servers."""
    for name in planned.subscriptions:
        if names is not None and name not in names:
            continue
        per = planner.concern_fingerprints(planned.subscriptions[name].typed, drivers)
        planned.fingerprints[name].update(per)
        changed = planned.changed.get(name) or []
        planned.changed[name] = [*changed, *(c for c in per if c not in changed)]
        planned.actions.setdefault(name, []).extend(f"force:{c}" for c in per if c not in changed)


@dataclass
class Report:
    planned: planner.Planned
    #: name -> concern -> outcome, for the subscriptions this pass touched
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: name -> messages of failed concerns
    failed: dict[str, list[str]] = field(default_factory=dict)
    #: "name/concern" pairs not tried this pass: backing off after a failure
    deferred: list[str] = field(default_factory=list)
    #: "name/concern" pairs held by a permanent failure until their inputs change
    held: list[str] = field(default_factory=list)
    #: when failed or deferred subscriptions are due again (store clock)
    retry_at: dict[str, dt.datetime] = field(default_factory=dict)
    #: the mass-deletion guard's decision (None: nothing to delete)
    deletion: guard.Decision | None = None
    #: servers whose identity marker changed or vanished this pass -> what was re-marked
    replaced: dict[str, int] = field(default_factory=dict)
    #: servers that could not be asked for their identity marker -> why
    unreachable: dict[str, str] = field(default_factory=dict)
    #: "name/concern" failures that left what dependents need in place (``Result.degraded``)
    degraded: set[str] = field(default_factory=set)
    run_id: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def deletions_held(self) -> bool:
        return self.deletion is not None and self.deletion.held

    @property
    def converged(self) -> bool:
        return not self.failed and not self.deferred and not self.held and not self.deletions_held


def _ready_condition(concern: str, outcome: str, message: str) -> records.Condition:
    status: records.ConditionStatus = {"provisioned": "True", "failed": "False"}.get(outcome, "Unknown")  # type: ignore[assignment]
    reason = {"provisioned": "Provisioned", "failed": "Failed"}.get(outcome, "NotProvisioned")
    return records.Condition(type=f"{concern.capitalize()}Ready", status=status, reason=reason,
                             message=message, last_transition=None)


class _Recorded:
    """The last recorded item of each subscription (what its drivers applied before this
    pass), read from the store only once a driver reports a change to audit."""

    def __init__(self, store: state_store.Store) -> None:
        self.store = store
        self._raw: dict[str, str] | None = None

    def get(self, name: str) -> dict[str, Any] | None:
        if self._raw is None:
            self._raw = self.store.get_status_raw()
        text = self._raw.get(name)
        if not text:
            return None
        doc: dict[str, Any] = json.loads(text)
        if not doc.get("effective"):
            return None
        return planner.recorded_item(doc)


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
        probe: identity.Probe | None = None,
        threshold: guard.Threshold | None = None,
        override_windows: bool = False,
    ) -> None:
        self.store = store
        #: ``apply --now``: disruptive changes run now, whatever the maintenance windows (OPS-2)
        self.override_windows = override_windows
        self.limits = limits or RateLimits()
        self.drivers: dict[str, base.Driver] = {}
        self.probe: identity.Probe | None = None
        self.set_drivers(drivers if drivers is not None else default_drivers(), probe)
        self.backoff = backoff or ExponentialBackoff()
        #: per-concern parameters of the formula (an explicit ``backoff`` applies to all)
        self.backoffs: dict[str, ExponentialBackoff] = dict(BACKOFF) if backoff is None else {}
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.actor = actor
        self.threshold = threshold or guard.Threshold()
        #: server -> answered the last identity check
        self.reachable: dict[str, bool] = {}
        #: servers found replaced by the last ``check_servers`` -> subscriptions re-marked
        self.last_replaced: dict[str, int] = {}
        self._backoff: dict[str, records.BackoffRecord] = {}
        self._held_reported: tuple[str, ...] = ()
        self._purge_failed: dict[str, str] = {}

    def set_drivers(self, drivers: Mapping[str, base.Driver], probe: identity.Probe | None = None) -> None:
        """Use these drivers (the engine owns them: the previous ones are closed); those
        that call an external service share this engine's rate limits (one token bucket
        per dependency, e.g. per ACME directory). ``probe`` reads the servers' identity
        markers (None: drivers off, nothing to ask)."""
        self.close()
        self.drivers = dict(drivers)
        self.probe = probe
        #: servers of evacuated regions -> their region (set at each pass): never written to
        self._fenced: dict[str, str] = {}
        #: PLAT-4: subscription -> the PHP it runs, kept in its status while its version change waits
        self._php_kept: dict[str, Any] = {}
        for driver in self.drivers.values():
            if isinstance(driver, base.RateLimited):
                driver.use_limits(self.limits)
            if isinstance(driver, base.UsesStore):
                driver.use_store(self.store)

    def close(self) -> None:
        """Close every driver holding connections (SSH masters, API sessions)."""
        for driver in self.drivers.values():
            if isinstance(driver, base.Closeable):
                try:
                    driver.close()
                except Exception as exc:  # closing never fails a pass
                    log.warning("closing the %s driver: %s", type(driver).__name__, exc)
        if self.probe is not None:
            self.probe.close()

    def plan(self, ds: DesiredState) -> planner.Planned:
        return planner.plan(ds, self.clock(), self.drivers, self.store, override_windows=self.override_windows)

    # --- the pass ---------------------------------------------------------------

    def reconcile(
        self,
        ds: DesiredState,
        only: Iterable[str] | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        *,
        allow_mass_delete: bool = False,
        check_servers: bool = True,
        command: str = "apply",
        planned: planner.Planned | None = None,
        force: bool | Iterable[str] = False,
    ) -> Report:
        """One pass. ``progress(what, done, total)`` is called after each server batch.

        ``check_servers``: read every server's identity marker first (one round trip per
        server) and re-ensure what was placed on a replaced or wiped server.
        ``planned``: this engine's ``plan(ds)`` made by the caller just before (``apply``
        decides the deletion guard on it): used unless a server was found replaced, so
        that a pass with nothing to do costs one plan, not two.
        ``force``: hand every concern of every subscription (True) or of the named ones
        to the drivers, changed or not (``apply --force``: what an upgrade triggers);
        drivers compare with the servers and send only what differs."""
        started = time.perf_counter()
        now = self.clock()
        run_id = self._begin_run(command)
        report = Report(planner.Planned({}, {}, {}, {}), run_id=run_id)
        try:
            self._pass(ds, only, progress, report, now, allow_mass_delete=allow_mass_delete,
                       check_servers=check_servers, planned=planned, force=force)
        finally:
            report.seconds = time.perf_counter() - started
            self._finish_run(run_id, report)
        return report

    def _pass(
        self, ds: DesiredState, only: Iterable[str] | None, progress: Callable[[str, int, int], None] | None,
        report: Report, now: dt.datetime, *, allow_mass_delete: bool, check_servers: bool,
        planned: planner.Planned | None = None, force: bool | Iterable[str] = False,
    ) -> None:
        evacuated = regions.targets(self.store)
        self._fenced = {s: spec.region for s, spec in ds.servers.items() if spec.region in evacuated}
        self._use_generations()
        if check_servers and self.probe is not None:
            self.check_servers(ds, report)
        if planned is None or report.replaced:
            planned = self.plan(ds)
        if force is not False:
            forced(planned, self.drivers, None if force is True else set(force))
        report.planned = planned
        wanted = set(only) if only is not None else None
        targets = [
            n for n, acts in planned.actions.items()
            if acts and (wanted is None or n in wanted)
        ]
        self._load_backoff()
        self._record_decisions(planned, targets, now, report.run_id)
        if targets:
            # What was just recorded (placements, sticky values) is part of the inputs.
            keys = planner.input_keys(ds, now, planner.observe(self.store), self.drivers)
            for name in targets:
                planned.fingerprints[name][planner.INPUTS] = keys[name]
        refresh = [n for n in planned.refresh if wanted is None or n in wanted]
        for start in range(0, len(refresh), BATCH):  # one transaction per batch of rows
            with self.store.transaction():
                for name in refresh[start:start + BATCH]:
                    fps = self.store.get_fingerprints(name)
                    fps[planner.INPUTS] = planned.fingerprints[name][planner.INPUTS]
                    self.store.set_fingerprints(name, fps)
        before = _Recorded(self.store)  # read on the first change a driver reports
        # (concern, server) -> (name, action): each batch's slices are made when it runs
        # and dropped after it, not held for the whole pass (50,000 subscriptions)
        batches: dict[tuple[str, str | None], list[tuple[str, base.Action]]] = defaultdict(list)
        #: subscription -> its server, for the batches of drivers that take one per pass
        placed: dict[str, str | None] = {}
        # a runtime Protocol check walks the protocol's attributes: once per concern, not per row
        one_per_pass = {c for c, d in self.drivers.items() if isinstance(d, base.OwnServers) and d.one_batch_per_pass}
        for name in targets:
            sub = planned.subscriptions[name]
            action: base.Action = "suspend" if sub.item["state"] == "suspended" else "ensure"
            for concern in planned.changed[name]:
                if self._backing_off(name, concern, planned.fingerprints[name].get(concern), report):
                    continue
                server = sub.placement.server
                if concern in one_per_pass:
                    placed[name], server = server, None
                batches[(concern, server)].append((name, action))
        php = [n for (c, _s), changes in batches.items() if c == "php" for n, _a in changes]
        self._php_kept = {}
        waits = self._backup_first(planned, php, before, now, report)  # PLAT-4
        total = sum(len(c) for c in batches.values())
        done = 0
        # Concerns in dependency order: web makes the user and web space php runs in; tls
        # needs the zone (dns) and the vhost (web) of the same pass to have succeeded.
        order = {c: i for i, c in enumerate(ORDER)}
        for concern, server in sorted(batches, key=lambda k: (order[k[0]], k[1] or "")):
            changes = batches.pop((concern, server))
            driver = self.drivers[concern]
            runnable = []
            held: list[base.Result] = []
            for name, action in changes:
                if self._blocked(name, concern, report):
                    report.deferred.append(f"{name}/{concern}")  # retried with what it waits for
                elif concern == "php" and name in waits:
                    held.append(base.Result(name, "failed", waits[name]))
                else:
                    runnable.append(base.Change(name, action, driver.slice(planned.subscriptions[name].typed)))
            one = concern in one_per_pass
            results = held + (self._run_driver(concern, server, runnable, placed if one else None) if runnable else [])
            self._record_usage(self.drivers[concern])
            done += len(changes)
            if progress is not None:
                progress(f"{concern} on {'every server' if one else server or '-'}", done, total)
            with self.store.transaction():  # one commit per server batch
                self.store.set_conditions(self._conditions(concern, results))
                for res in results:
                    report.outcomes.setdefault(res.name, {})[concern] = res.outcome
                    if res.degraded and res.outcome == "failed":
                        report.degraded.add(f"{res.name}/{concern}")
                    self._after(res, concern, report, planned, before)
        for start in range(0, len(targets), BATCH):  # one transaction, a few statements, per batch
            with self.store.transaction():
                self._finish([planned.subscriptions[n] for n in targets[start:start + BATCH]], planned, report)
        decision = guard.decide(planned.deletions, self._live_count(), self.threshold, allowed=allow_mass_delete)
        report.deletion = decision if planned.deletions else None
        if decision.held:
            self._hold_deletions(decision, planned)
        else:
            self._held_reported = ()
            self._delete(planned.deletions, report, now)
        self._purge(now)

    def _backup_first(self, planned: planner.Planned, php: list[str], before: _Recorded, now: dt.datetime,
                      report: Report) -> dict[str, str]:
        """PLAT-4: the subscriptions whose ``php`` concern runs in this pass (``php``)
        and changes the PHP version they run are backed up first (``reconcile.migration``); those whose backup failed: why
        their ``php`` concern waits (the old version keeps serving, retried with backoff)."""
        found = migration.find(php, planned.changed, planned.item, before.get)
        if not found:
            return {}
        driver = self.drivers.get("backup")
        if isinstance(driver, base.BacksUpNow):
            try:
                out = migration.backup_first(found, before.get, driver.has_repository, driver.backup_now, now)
            except errors.TenantctlError as exc:
                out = migration.Outcome(failed={m.subscription: str(exc) for m in found})
        else:
            out = migration.Outcome(without={m.subscription: "this controller runs without the backup concern"
                                             for m in found})
        waits = {}
        for m in found:
            if m.subscription in out.failed:
                waits[m.subscription] = f"{m.what} waits for the backup taken first (PLAT-4): " \
                                        f"{out.failed[m.subscription]}"
                # the status keeps the PHP it runs (the php driver did not run): the
                # next pass still sees a migration, and takes the backup first again
                self._php_kept[m.subscription] = (before.get(m.subscription) or {})["effective"]["hosting"]["php"]
                continue  # the failure's event is the php concern's
            why = out.without.get(m.subscription)
            events.record(self.store, actor=self.actor, action="backed-up" if why is None else "migrating",
                          subject=m.subscription, concern="php", run_id=report.run_id,
                          message=f"{m.what}: backed up first (PLAT-4)" if why is None
                          else f"{m.what} without a backup first: {why} (PLAT-4)")
        return waits

    def _use_generations(self) -> None:
        """Fencing on the agents' side (DR-1): the subscriptions' generations, read once
        per pass, are what every agent job of this pass carries (``transport.Generations``)."""
        users = [d for d in self.drivers.values() if isinstance(d, transport.UsesGenerations)]
        if users:
            gens = regions.generations(self.store)
            for driver in users:
                driver.use_generations(gens)

    def _conditions(self, concern: str, results: list[base.Result]) -> list[tuple[str, records.Condition]]:
        """The ready condition of each result; one that found everything in place keeps a
        ready condition as it is (its message says what was last done)."""
        conds = [(res.name, _ready_condition(concern, res.outcome, res.message)) for res in results]
        quiet = [res.name for res in results if res.outcome == "provisioned" and res.message == base.UP_TO_DATE]
        if not quiet:
            return conds
        kind = f"{concern.capitalize()}Ready"
        ready = {n for n, cs in self.store.conditions_of(quiet).items()
                 if any(c.type == kind and c.status == "True" for c in cs)}
        return [(n, c) for n, c in conds if n not in ready or c.message != base.UP_TO_DATE]

    # --- reality checks -----------------------------------------------------------

    def check_servers(self, ds: DesiredState, report: Report | None = None) -> dict[str, int]:
        """Read every server's identity marker (one round trip each); a server whose
        marker changed or vanished since the last pass lost what was applied there:
        forget those fingerprints so that this pass re-ensures all of it. Returns
        ``{server: subscriptions re-marked}``."""
        if self.probe is None or not ds.servers:
            return {}
        probed = self.probe.probe(ds.servers)
        known = self.store.get_server_generations()
        replaced: dict[str, int] = {}
        planned: planner.Planned | None = None
        for server, gen in sorted(probed.generations.items()):
            old = known.get(server)
            if old == gen:
                continue
            with self.store.transaction():
                self.store.set_server_generation(server, gen)
                if old is None:
                    continue  # first sight of this server: nothing was applied under another marker
                if planned is None:
                    planned = self.plan(ds)
                srv = ds.servers[server]
                hit = drift.touching(planned, server, tuple(srv.roles), srv.region)
                for name, concerns in hit.items():
                    self.store.drop_fingerprints(name, [*concerns, planner.WHOLE])
                replaced[server] = len(hit)
                what = "vanished" if gen == identity.MISSING else f"changed ({old[:8]} -> {gen[:8]})"
                events.record(self.store, actor=self.actor, action="server-replaced", subject=server,
                              message=f"identity marker {what}: re-ensuring {len(hit)} subscriptions placed there",
                              data={"old": old, "new": gen, "subscriptions": sorted(hit)})
        self.last_replaced = replaced
        if report is not None:
            report.replaced = replaced
            report.unreachable = dict(probed.unreachable)
        self.reachable = {**{s: True for s in probed.generations}, **{s: False for s in probed.unreachable}}
        return replaced

    def resync(self, ds: DesiredState) -> dict[str, dict[str, str]]:
        """Drift repair: find what drifted and mark it (forget the applied fingerprint
        of that concern, with an event); the next ``reconcile`` pass repairs it like any
        other change. Returns ``{name: {concern: what differed}}``."""
        planned = self.plan(ds)  # marking below changes fingerprints only, not what is placed where
        found = drift.detect(self.drivers, planned)
        for (concern, server), why in sorted(found.unreachable.items()):
            log.warning("drift check of %s on %s: %s", concern, server, why)
        # What is already waiting out a failure is marked again once its wait is over,
        # not at every resync (no event per timer tick for a repair that keeps failing).
        self._load_backoff()
        now = self.store.now()
        waiting = {k for k, b in self._backoff.items() if b.permanent or b.next_attempt > now}
        marked = {n: {c: w for c, w in cs.items() if f"{n}/{c}" not in waiting} for n, cs in found.drifted.items()}
        self.mark_drift({n: cs for n, cs in marked.items() if cs})
        self._measure(planned)
        return found.drifted

    def mark_drift(self, drifted: Mapping[str, Mapping[str, str]]) -> None:
        with self.store.transaction():
            for name, concerns in sorted(drifted.items()):
                self.store.drop_fingerprints(name, [*concerns, planner.WHOLE])
                for concern, what in sorted(concerns.items()):
                    events.record(self.store, actor=self.actor, action="drift", subject=name, concern=concern,
                                  message=f"{concern}: {what}; marked for repair")

    def _record_decisions(
        self, planned: planner.Planned, targets: list[str], now: dt.datetime, run_id: int | None = None,
    ) -> None:
        """Placements, sticky values and transfers, before any driver acts."""
        known = {r.name: r for r in self.store.list_subscriptions(include_deleted=True)} if targets else {}
        placed: list[records.SubscriptionRecord] = []
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
                    placed.append(rec)
                for act in planned.actions[name]:
                    if act.startswith(("create", "place:", "move:")):
                        events.record(self.store, actor=self.actor, run_id=run_id, action=act.split(":")[0], subject=name,
                                      message=act, data={"server": pl.server, "ip": pl.ip})
                ch = sub.changes
                for group, values in ch.sticky_set.items():
                    self.store.set_sticky(name, group, values)
                    events.record(self.store, actor=self.actor, run_id=run_id, action="sticky", subject=name,
                                  message=f"recorded {group} values (SYNC-2/SYNC-4)")
                for group in ch.sticky_drop:
                    self.store.drop_sticky(name, group)
                    events.record(self.store, actor=self.actor, run_id=run_id, action="unsticky", subject=name,
                                  message=f"dropped {group} values: synchronised again")
                if ch.transfer is not None and old is not None:
                    self.store.set_transfer(records.TransferRecord(
                        name=name, from_customer=old.customer, to_customer=sub.item["customer"], at=now,
                        frozen=ch.transfer))
                    events.record(self.store, actor=self.actor, run_id=run_id, action="transfer", subject=name,
                                  message=f"transferred from {old.customer} to {sub.item['customer']}: "
                                          "now custom, keeping its values (PLAN-7)")
            self.store.upsert_subscriptions(placed)  # one statement for the batch of rows

    def _measure(self, planned: planner.Planned) -> None:
        """Usage (RES-2) of every placed subscription, from drivers that measure it."""
        for driver in self.drivers.values():
            if not isinstance(driver, base.Measuring):
                continue
            try:
                changes = [base.Change(n, "ensure", driver.slice(s.typed)) for n, s in planned.subscriptions.items()
                           if s.placement.server is not None]
                measured = driver.usage(changes) if changes else {}
            except (errors.DriverError, KeyError, TypeError) as exc:  # a server down, an unreadable record
                log.warning("usage of %s: %s", type(driver).__name__, exc)
                continue
            with self.store.transaction():
                for name, values in measured.items():
                    self.store.put_usage(name, values)

    def _record_usage(self, driver: base.Driver) -> None:
        """Measurements a driver made while applying (e.g. database sizes, RES-2)."""
        if isinstance(driver, base.Measuring) and driver.last_usage:
            with self.store.transaction():
                for name, values in driver.last_usage.items():
                    self.store.put_usage(name, values)

    # --- backoff: one record per name/concern, in the store -------------------------

    def _load_backoff(self) -> None:
        self._backoff = {b.key: b for b in self.store.list_backoff()}

    def _backing_off(self, name: str, concern: str, fingerprint: str | None, report: Report) -> bool:
        """Whether ``name/concern`` waits: a temporary failure until its next attempt, a
        permanent one until its inputs change. A changed input is retried at once."""
        key = f"{name}/{concern}"
        rec = self._backoff.get(key)
        if rec is None:
            return False
        if rec.fingerprint is not None and fingerprint is not None and rec.fingerprint != fingerprint:
            return False  # the desired slice changed since it failed: try the new one now
        if rec.permanent:
            report.held.append(key)
            return True
        # the store stamps next_attempt with its own clock: compare with the same one
        if rec.next_attempt <= self.store.now():
            return False
        report.deferred.append(key)
        report.retry_at[name] = min(report.retry_at.get(name, rec.next_attempt), rec.next_attempt)
        return True

    @staticmethod
    def _blocked(name: str, concern: str, report: Report) -> bool:
        """Whether ``concern`` waits for a concern it depends on that failed, or is
        held, in this pass (DEPENDS): it is deferred, not tried, not counted failed."""
        done = report.outcomes.get(name, {})
        waiting = {*report.held, *report.deferred}
        return any((done.get(dep) == "failed" and f"{name}/{dep}" not in report.degraded) or f"{name}/{dep}" in waiting
                   for dep in DEPENDS.get(concern, ()))

    def _run_driver(
        self, concern: str, server: str | None, changes: list[base.Change[Any]],
        placed: Mapping[str, str | None] | None = None,
    ) -> list[base.Result]:
        """The driver's results, one per change; every error becomes a failed result
        (temporary with the driver's delay hint, or permanent): nothing a driver raises
        ends a pass. ``placed``: each change's own server (a batch of every server)."""
        if placed is not None:  # DR-1 per change: fenced ones fail, the others go ahead
            fenced = {c.name: self._fence(placed.get(c.name), c.name) for c in changes
                      if placed.get(c.name) in self._fenced}
            rest = [c for c in changes if c.name not in fenced]
            got = {r.name: r for r in self._run_driver(concern, server, rest)} if rest else {}
            return [fenced.get(c.name) or got[c.name] for c in changes]
        dep = f"{concern}:{server or '-'}"
        if server in self._fenced:  # DR-1: nothing is written to a server of an evacuated region
            return [self._fence(server, c.name) for c in changes]
        if not self.limits.acquire(dep, timeout=30.0):
            return [base.Result(c.name, "failed", f"rate limit of {dep} exhausted", retry_after=30.0)
                    for c in changes]
        try:
            results = self.drivers[concern].apply(server, changes)
        except errors.PermanentError as exc:
            return [base.Result(c.name, "failed", str(exc), permanent=True) for c in changes]
        except errors.TemporaryError as exc:
            return [base.Result(c.name, "failed", str(exc), retry_after=exc.delay) for c in changes]
        except errors.DriverError as exc:
            return [base.Result(c.name, "failed", str(exc)) for c in changes]
        except Exception as exc:  # a driver bug: reported, retried with backoff, never fatal
            log.exception("%s driver on %s", concern, server or "-")
            return [base.Result(c.name, "failed", f"internal error in the {concern} driver: "
                                                  f"{type(exc).__name__}: {exc}") for c in changes]
        by_name = {r.name: r for r in results}
        return [by_name.get(c.name) or base.Result(c.name, "failed", "the driver returned no result")
                for c in changes]

    def _fence(self, server: str | None, name: str) -> base.Result:
        assert server is not None
        region = self._fenced[server]
        return base.Result(name, "failed", f"server {server} is fenced: region {region} is evacuated "
                                           f"(`tenantctl region end {region}` lifts it)", retry_after=300.0)

    def _after(
        self, res: base.Result, concern: str, report: Report, planned: planner.Planned, before: _Recorded,
    ) -> None:
        key = f"{res.name}/{concern}"  # its condition: written for the batch by the caller
        fingerprint = planned.fingerprints.get(res.name, {}).get(concern)
        if res.outcome == "failed":
            prev = self._backoff.get(key)
            failures = (prev.failures if prev else 0) + 1
            formula = self.backoffs.get(concern, self.backoff)
            delay = max(res.retry_after or 0.0, formula.delay(failures))
            rec = self.store.record_failure(key, res.message, delay, fingerprint=fingerprint,
                                            permanent=res.permanent)
            self._backoff[key] = rec
            if not res.permanent:
                report.retry_at[res.name] = min(report.retry_at.get(res.name, rec.next_attempt), rec.next_attempt)
            report.failed.setdefault(res.name, []).append(f"{concern}: {res.message}")
            events.record(self.store, actor=self.actor, action="failed", subject=res.name, concern=concern,
                          run_id=report.run_id,
                          message=f"{concern}: {res.message}",
                          data={"retryIn": None if res.permanent else delay, "permanent": res.permanent})
            return
        if key in self._backoff:
            self.store.clear_backoff(key)
            del self._backoff[key]
        if res.outcome == "provisioned" and res.message != base.UP_TO_DATE:  # nothing done: nothing to audit
            self._audit(res.name, concern, report, planned, before.get(res.name))

    def _audit(
        self, name: str, concern: str, report: Report, planned: planner.Planned, before: Mapping[str, Any] | None,
    ) -> None:
        """One event per change a driver made (OPS-5): action and what changed."""
        sub = planned.subscriptions[name]
        driver = self.drivers[concern]
        new = dict(driver.slice(sub.typed))
        old: dict[str, Any] | None = None
        if before is not None:
            try:
                old = dict(driver.slice(spec.check(before)))
            except ValueError:  # recorded by an older tenantctl in another shape: no diff
                old = None
        act = audit.action(first=before is None, suspending=sub.item.get("state") == "suspended",
                           was_suspended=before is not None and before.get("state") == "suspended")
        text, paths = audit.summary(old, new, act)
        events.record(self.store, actor=self.actor, action=act, subject=name, concern=concern,
                      run_id=report.run_id, message=f"{concern}: {text}",
                      data={"changed": paths} if paths else None)

    def _finish(self, subs: list[Subscription], planned: planner.Planned, report: Report) -> None:
        """Record what was applied to ``subs``: fingerprints and status documents, with a
        few statements for all of them (a first apply writes 10,000)."""
        names = [sub.name for sub in subs]
        conds_of = self.store.conditions_of(names)
        applied = self.store.fingerprints_of(names)
        fps_of: dict[str, dict[str, str]] = {}
        docs: dict[str, dict[str, Any]] = {}
        web, dns = self.drivers["web"], self.drivers["dns"]  # Protocol checks once, not per row
        access = web.access if isinstance(web, base.GivesAccess) else None
        dns_servers = dns.dns_servers if isinstance(dns, base.ServesDns) else None
        for sub in subs:
            name = sub.name
            conds = {c.type: c for c in conds_of[name]}
            concerns: dict[str, str] = {}
            for c in base.CONCERNS:
                cond = conds.get(f"{c.capitalize()}Ready")
                concerns[c] = ("provisioned" if cond and cond.status == "True"
                               else "failed" if cond and cond.status == "False" else "not provisioned")
            # Record what was applied: a failed or deferred concern keeps its old
            # fingerprint (so the next pass retries it), and the whole-subscription one is
            # only recorded once every concern is through.
            fps = dict(applied[name])
            fps.pop(WHOLE, None)
            held = self._deferred(report, name) | {
                c for c, outcome in report.outcomes.get(name, {}).items() if outcome == "failed"
            }
            fps.update({c: fp for c, fp in planned.fingerprints[name].items() if c != WHOLE and c not in held})
            if not held:
                fps[WHOLE] = planned.fingerprints[name][WHOLE]
            fps_of[name] = fps
            item = sub.item
            if name in self._php_kept:  # PLAT-4: the version change waits for its backup
                hosting = {**item["effective"]["hosting"], "php": self._php_kept[name]}
                item = {**item, "effective": {**item["effective"], "hosting": hosting}}
            docs[name] = {
                **item,
                # the item's own conditions (a recorded one, forced, already has the store's)
                "conditions": [c for c in item["conditions"] if c.get("type") not in conds] + [
                    {"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
                     "lastTransitionTime": c.last_transition.isoformat() if c.last_transition else None}
                    for c in sorted(conds.values(), key=lambda c: c.type)
                ],
                "concerns": concerns,
                # ``ip:port`` of every DNS server serving the zone, primary first
                "dnsServers": list(dns_servers(sub.typed)) if dns_servers and concerns["dns"] == "provisioned" else [],
                # ``{"sftp": "USER@HOST:PORT"}`` of a subscription with hosting (issue 14)
                "access": dict(access(sub.typed)) if access and concerns["web"] == "provisioned" else {},
            }
        self.store.set_fingerprints_many(fps_of)
        self.store.put_status_many(docs)

    @staticmethod
    def _deferred(report: Report, name: str) -> set[str]:
        """Concerns of ``name`` not tried this pass (backing off, held, or waiting)."""
        return {k.split("/", 1)[1] for k in [*report.deferred, *report.held] if k.split("/", 1)[0] == name}

    # --- runs and deletions ---------------------------------------------------------

    def _begin_run(self, command: str) -> int | None:
        try:
            with self.store.transaction():
                return self.store.begin_run(self.actor, command)
        except errors.StateError as exc:
            log.warning("cannot record the run: %s", exc)
            return None

    def _finish_run(self, run_id: int | None, report: Report) -> None:
        if run_id is None:
            return
        summary = {
            "changed": sum(1 for o in report.outcomes.values() if o),
            "failed": len(report.failed), "deferred": len(report.deferred), "held": len(report.held),
            "deletionsHeld": len(report.deletion.deletions) if report.deletions_held and report.deletion else 0,
            "replacedServers": sorted(report.replaced), "unreachableServers": sorted(report.unreachable),
            "seconds": round(report.seconds, 3),
        }
        with self.store.transaction():
            self.store.finish_run(run_id, summary)

    def _live_count(self) -> int:
        return self.store.count_live()

    def _hold_deletions(self, decision: guard.Decision, planned: planner.Planned) -> None:
        """Keep every subscription of a held mass deletion, say so on each (condition
        ``DeletionHeld``) and once in the audit log per distinct set."""
        with self.store.transaction():
            for name in decision.deletions:
                self.store.set_condition(name, records.Condition(
                    type="DeletionHeld", status="True", reason="MassDeletionGuard",
                    message=decision.message, last_transition=None))
            if decision.deletions != self._held_reported:
                events.record(self.store, actor=self.actor, action="deletion-held", subject="*",
                              message=decision.message, data={"subscriptions": list(decision.deletions)})
                self._held_reported = decision.deletions

    def _purge(self, now: dt.datetime) -> None:
        """LIFE-6: once the retention period is over, the final copies of a deleted
        subscription (``<state>/retained/<domain>/``, and its snapshots in every region's
        repository) are purged, with an event; a repository that cannot be reached now
        is tried again at the next pass."""
        root = (self.store.path.parent / "retained").resolve()
        for rec in self.store.list_deleted():
            if rec.deleted_at is None or rec.purge_after is None or rec.purge_after > now:
                continue
            target = (root / rec.name).resolve()
            if target.parent != root:  # never outside the retained directory
                continue
            failed = None
            for driver in self.drivers.values():
                if isinstance(driver, base.Purging):
                    try:
                        driver.purge(rec.name)
                    except errors.TenantctlError as exc:
                        failed = str(exc)
            if failed is not None:
                if self._purge_failed.get(rec.name) != failed:  # one event per distinct failure
                    events.record(self.store, actor=self.actor, action="failed", subject=rec.name,
                                  message=f"purge after {RETENTION_DAYS} days: {failed}")
                    self._purge_failed[rec.name] = failed
                continue
            self._purge_failed.pop(rec.name, None)
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
                    events.record(self.store, actor=self.actor, action="failed", subject=name, concern=concern,
                                  run_id=report.run_id, message=f"delete {concern}: {res.message}")
                    break
                if res.outcome == "provisioned":
                    events.record(self.store, actor=self.actor, action="delete", subject=name, concern=concern,
                                  run_id=report.run_id,
                                  message=f"{concern}: removed{' (' + res.message + ')' if res.message else ''}")
            report.outcomes[name] = outcome
            if name in report.failed:
                continue
            purge_after = now + dt.timedelta(days=RETENTION_DAYS)
            with self.store.transaction():
                self.store.upsert_subscription(dataclasses.replace(old, deleted_at=now, purge_after=purge_after))
                self.store.drop_fingerprints(name)
                self.store.drop_status(name)
                self.store.drop_sticky(name)
                events.record(self.store, actor=self.actor, action="delete", subject=name, run_id=report.run_id,
                              message=f"deleted; data kept until {purge_after.date()} "
                                      "(LIFE-6)")
