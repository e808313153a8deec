"""Prometheus metrics of the controller, named after controller-runtime's.

One ``Metrics`` object owns a private ``CollectorRegistry`` (never the global one), so
each test, and each controller in a process, gets fresh series. What it exposes:

* reconciliations: ``tenantctl_reconcile_total{result}`` (success|error|requeue|interrupted),
  ``tenantctl_reconcile_errors_total``, ``tenantctl_reconcile_time_seconds``;
* the work queue, fed through ``Metrics.workqueue`` (a ``reconcile.queue.QueueMetrics``):
  ``tenantctl_workqueue_depth``, ``..._adds_total``, ``..._retries_total``,
  ``..._queue_duration_seconds``;
* a summary of the status snapshot, recomputed from scratch by
  ``set_subscription_summary``: ``tenantctl_subscriptions{sync}``,
  ``tenantctl_subscriptions_by_state{state,reason}``, ``tenantctl_conflicts{property}``,
  ``tenantctl_concern_status{concern,status}``, and the versions subscriptions run
  (PLAT-5: ``tenantctl_subscription_versions{software,version,outdated}``, judged by
  ``kinds.SUPPORTED_VERSIONS``).
  Labels are low-cardinality on purpose:
  no per-subscription label (10,000 subscriptions must not mean 10,000 series);
* ``tenantctl_build_info{version}``;
* moves of subscriptions (issue 13): ``tenantctl_subscription_moves{step}`` and
  ``tenantctl_subscription_move_step_seconds{step}`` (``set_moves``, from the moves table);
* nightly backups (issue 9, BKP-1..3), from one ``BackupFigures`` the lead computes from
  the state store (``set_backup``): per (source server, region) the last success and its
  duration, per region the subscriptions without a fresh copy and the repository check,
  per source server failed subscriptions and bytes added, and the latest restore drill;
  the disaster-recovery drill on spare servers (DR-1, ``tenantctl_dr_*``: RTO, RPO and
  failures per region, the latest drill's time). No label per subscription: series grow
  with servers x regions only;
* the controller's own health, set by the ``run`` loop (issue 7): the desired state
  (``tenantctl_desired_state_valid``, ``..._last_success_timestamp_seconds``), deletions
  held by the mass-deletion guard (``tenantctl_deletions_held``), each server's
  reachability and identity marker (``tenantctl_server_reachable{server}``,
  ``tenantctl_server_generation_changes_total{server}``) and backoff
  (``tenantctl_deferred``, ``tenantctl_backoff_permanent``).

This module imports no other tenantctl module but ``model.kinds`` (the supported
versions, PLAT-5); the queue does not import it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
import prometheus_client.core
import prometheus_client.registry

from controller.model import kinds

PASS_RESULTS = ("success", "error", "requeue")
"""How a reconcile pass ended, in controller-runtime's words: ``success`` (converged),
``error`` (a concern failed), ``requeue`` (nothing failed, but work was deferred: it
backs off and is due again later)."""

RESULTS = (*PASS_RESULTS, "interrupted")
"""Values of ``tenantctl_reconcile_total{result}``; ``interrupted`` counts passes that
started and never ended (the process died), found by the next process."""

SYNC_STATES = ("synced", "locked", "unsynced", "custom")
"""SYNC-1..3 and custom subscriptions (PLAN-2): always exported, 0 when none."""

STATE_REASONS: tuple[tuple[str, str], ...] = (
    ("active", ""),
    ("suspended", "manual"),
    ("suspended", "expired"),
    ("suspended", "overuse"),
    ("suspended", "customer"),
    ("suspended", "nonpayment"),
)
"""LIFE-1 states and the documented suspension reasons: always exported, 0 when none."""

CONCERNS = ("web", "php", "db", "dns", "tls", "backup")
CONCERN_STATUSES = ("provisioned", "not provisioned", "failed")

RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
QUEUE_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800)


class WorkqueueMetrics:
    """The ``reconcile.queue.QueueMetrics`` hook: pass ``metrics.workqueue`` to a WorkQueue."""

    def __init__(
        self,
        depth: prometheus_client.Gauge,
        adds: prometheus_client.Counter,
        retries: prometheus_client.Counter,
        duration: prometheus_client.Histogram,
    ) -> None:
        self._depth = depth
        self._adds = adds
        self._retries = retries
        self._duration = duration

    def on_add(self) -> None:
        self._adds.inc()

    def on_get(self, queue_seconds: float) -> None:
        self._duration.observe(queue_seconds)

    def on_retry(self) -> None:
        self._retries.inc()

    def depth(self, n: int) -> None:
        self._depth.set(n)


@dataclasses.dataclass(frozen=True)
class _Summary:
    sync: Mapping[str, int]
    states: Mapping[tuple[str, str], int]
    conflicts: Mapping[str, int]
    concerns: Mapping[tuple[str, str], int]
    overuse: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    #: (software, version) -> live subscriptions running it (PLAT-5)
    versions: Mapping[tuple[str, str], int] = dataclasses.field(default_factory=dict)


def versions_in_use(item: Mapping[str, Any], releases: Mapping[str, kinds.Release] | None = None) -> dict[str, str]:
    """What a status document's subscription runs, software -> version (PLAT-5): its PHP
    (the effective version, when hosting is on) and, for each database engine, the
    oldest version among its databases' servers (their releases: ``releases``, server
    name -> ``kinds.Release``; without it, or for a server not in it, no engine version).
    Nothing for a deleted subscription."""
    eff = item.get("effective") or {}
    if item.get("state") == "deleted" or not eff:
        return {}
    out: dict[str, str] = {}
    hosting = eff.get("hosting") or {}
    php = (hosting.get("php") or {}).get("version")
    if hosting.get("enabled") and isinstance(php, str) and php:
        out["php"] = php
    for db in eff.get("databases") or ():
        engine, server = db.get("engine"), db.get("server")
        release = (releases or {}).get(str(server)) if server else None
        if release is None or engine not in ("mariadb", "postgresql"):
            continue
        version = release.mariadb if engine == "mariadb" else release.postgresql
        if engine not in out or kinds.version_key(version) < kinds.version_key(out[engine]):
            out[engine] = version
    return out


def summarise(items: Iterable[Mapping[str, Any]], releases: Mapping[str, kinds.Release] | None = None) -> _Summary:
    """Count status items (``tenantctl status`` documents) into the summary gauges
    (``releases``: see ``versions_in_use``)."""
    sync: collections.Counter[str] = collections.Counter(dict.fromkeys(SYNC_STATES, 0))
    states: collections.Counter[tuple[str, str]] = collections.Counter(dict.fromkeys(STATE_REASONS, 0))
    conflicts: collections.Counter[str] = collections.Counter()
    concerns: collections.Counter[tuple[str, str]] = collections.Counter(
        {(c, s): 0 for c in CONCERNS for s in CONCERN_STATUSES}
    )
    overuse: collections.Counter[tuple[str, str]] = collections.Counter()
    versions: collections.Counter[tuple[str, str]] = collections.Counter()
    for item in items:
        for software, version in versions_in_use(item, releases).items():
            versions[(software, version)] += 1
        for level in ("over", "notify"):
            for resource in (item.get("overuse") or {}).get(level) or ():
                overuse[(str(resource), level)] += 1
        sync[str(item.get("sync") or "unknown")] += 1
        state = str(item.get("state") or "unknown")
        reason = "" if state == "active" else str(item.get("stateReason") or "")
        states[(state, reason)] += 1
        for conflict in item.get("conflicts") or ():
            conflicts[str(conflict.get("property") or "unknown")] += 1
        for concern, status in (item.get("concerns") or {}).items():
            concerns[(str(concern), str(status))] += 1
    return _Summary(sync=sync, states=states, conflicts=conflicts, concerns=concerns, overuse=overuse,
                    versions=versions)


@dataclasses.dataclass(frozen=True)
class TlsSnapshot:
    """What the tls driver counted (TLS-1/TLS-2, issue 4): per subscription, expiry and last
    renewal (one series per TLS subscription: alerting per certificate is the point) and
    current failure counts (only failing ones); ACME requests and orders by result."""

    expiry: Mapping[str, float] = dataclasses.field(default_factory=dict)
    renewed: Mapping[str, float] = dataclasses.field(default_factory=dict)
    failures: Mapping[str, int] = dataclasses.field(default_factory=dict)
    requests: Mapping[str, int] = dataclasses.field(default_factory=dict)
    request_seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)
    orders: Mapping[str, int] = dataclasses.field(default_factory=dict)
    order_seconds: Mapping[str, float] = dataclasses.field(default_factory=dict)


class _TlsCollector(prometheus_client.registry.Collector):
    def __init__(self) -> None:
        self.snapshot = TlsSnapshot()

    def collect(self) -> Iterator[prometheus_client.core.Metric]:
        s = self.snapshot
        core = prometheus_client.core
        for name, doc, values in (
            ("tenantctl_certificate_expiry_timestamp_seconds", "When each subscription's certificate expires.",
             s.expiry),
            ("tenantctl_certificate_last_renewal_timestamp_seconds", "When each certificate was last issued.",
             s.renewed),
            ("tenantctl_certificate_renewal_failures", "Consecutive failed orders of a failing certificate.",
             s.failures),
        ):
            fam = core.GaugeMetricFamily(name, doc, labels=["subscription"])
            for sub, v in sorted(values.items()):
                fam.add_metric([sub], v)
            yield fam
        for name, doc, counts, seconds in (
            ("tenantctl_acme_requests", "ACME requests by result.", s.requests, s.request_seconds),
            ("tenantctl_acme_orders", "ACME certificate orders by result.", s.orders, s.order_seconds),
        ):
            total = core.CounterMetricFamily(name, doc, labels=["result"])
            for result, n in sorted(counts.items()):
                total.add_metric([result], n)
            yield total
            dur = core.SummaryMetricFamily(f"{name.removesuffix('s')}_duration_seconds", f"Duration of {doc[:-1]}",
                                           labels=["result"])
            for result, n in sorted(counts.items()):
                dur.add_metric([result], count_value=n, sum_value=seconds.get(result, 0.0))
            yield dur


@dataclasses.dataclass(frozen=True)
class BackupFigures:
    """The state of nightly backups (issue 9, BKP-1..3), computed by the caller from the
    state store; every mapping is keyed by server or region, never by subscription. A key
    absent from the figures has no series (a removed server leaves none behind)."""

    last_success: Mapping[tuple[str, str], float]
    """(source server, region) -> Unix time its last successful backup reached that
    region's repository (the server's own region: the local snapshot)."""
    last_duration: Mapping[tuple[str, str], float]
    """(source server, region) -> seconds that last run (or copy) took."""
    stale: Mapping[str, int]
    """region -> subscriptions with backups enabled whose newest copy in that region is
    missing or older than the freshness bound."""
    failed: Mapping[str, int]
    """source server -> subscriptions whose latest backup failed."""
    added_bytes: Mapping[str, float]
    """source server -> bytes its last run added (restic ``data_added``)."""
    drill_failed: int
    """Subscriptions whose latest restore drill failed."""
    drill_last: float | None
    """Unix time of the latest restore drill, whatever its result; None: never (exported
    as 0, so that RestoreDrillNotRun fires)."""
    drill_seconds: float | None
    """Duration of the latest drill run; None: never (no series)."""
    repo_ok: Mapping[str, bool]
    """region -> the latest ``restic check`` of that region's repositories passed."""
    repo_checked: Mapping[str, float]
    """region -> Unix time of that check."""
    dr_enabled: bool = False
    """The environment has a spare server: disaster-recovery drills run (DR-1); without
    one no ``tenantctl_dr_*`` series is exported."""
    dr_rto: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """region (the drilled subscriptions' own) -> the longest RTO among their latest
    successful DR drills (seconds from restore start to the spare's right HTTP answer)."""
    dr_rpo: Mapping[str, float] = dataclasses.field(default_factory=dict)
    """region -> the longest RPO among those drills (seconds of data the restore lacked)."""
    dr_failed: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """region -> subscriptions whose latest DR drill failed."""
    dr_last: float | None = None
    """Unix time of the latest DR drill; None: never (exported as 0, DRDrillNotRun fires)."""


BACKUP_PAIRS = (
    ("tenantctl_backup_last_success_timestamp_seconds",
     "When the last successful backup of a source server reached a region's repository (its own region: the "
     "local snapshot)."),
    ("tenantctl_backup_last_duration_seconds",
     "Seconds the last successful backup (own region) or copy (other regions) of a source server took."),
)
BACKUP_BY_REGION = (
    ("tenantctl_backup_stale_subscriptions",
     "Subscriptions with backups enabled whose newest snapshot in the region (local or copy) is missing or too "
     "old."),
    ("tenantctl_backup_repository_check_ok",
     "1 when the latest restic check of the region's repositories passed, 0 when it failed."),
    ("tenantctl_backup_repository_check_timestamp_seconds",
     "When the region's repositories were last checked (restic check)."),
)
BACKUP_BY_SERVER = (
    ("tenantctl_backup_failed_subscriptions", "Subscriptions of a source server whose latest backup failed."),
    ("tenantctl_backup_added_bytes", "Bytes the last backup run of a source server added to its repository."),
)
BACKUP_DRILL = (
    ("tenantctl_backup_drill_failed_subscriptions", "Subscriptions whose latest restore drill failed."),
    ("tenantctl_backup_drill_last_timestamp_seconds",
     "When the latest restore drill ran, whatever its result (0: never)."),
    ("tenantctl_backup_drill_duration_seconds", "Seconds the latest restore drill run took."),
)
"""Names and HELP of the backup gauges, by their labels: (server, region), region,
server, none."""
DR_BY_REGION = (
    ("tenantctl_dr_drill_rto_seconds",
     "Longest recovery time (restore start to the right HTTP answer on a spare server of another region) among "
     "the latest successful disaster-recovery drills of the region's subscriptions (DR-1)."),
    ("tenantctl_dr_drill_rpo_seconds",
     "Longest recovery point (drill start minus the restored snapshot, or newest archived log for PITR plans) "
     "among the latest successful disaster-recovery drills of the region's subscriptions (DR-1)."),
    ("tenantctl_dr_drill_failed_subscriptions",
     "Subscriptions of the region whose latest disaster-recovery drill failed (DR-1)."),
)
DR_LAST = ("tenantctl_dr_drill_last_timestamp_seconds",
           "When the latest disaster-recovery drill on a spare server ran, whatever its result (0: never).")


def _labelled(name: str, doc: str, labels: list[str], values: Iterable[tuple[tuple[str, ...], float]]
              ) -> prometheus_client.core.GaugeMetricFamily:
    fam = prometheus_client.core.GaugeMetricFamily(name, doc, labels=labels)
    for key, v in sorted(values):
        fam.add_metric(list(key), v)
    return fam


class _BackupCollector(prometheus_client.registry.Collector):
    """Yields the backup gauges from one immutable ``BackupFigures`` (none before the
    first ``set_backup``: a controller without backups exports no backup series)."""

    def __init__(self) -> None:
        self.figures: BackupFigures | None = None

    def collect(self) -> Iterator[prometheus_client.core.Metric]:
        f = self.figures
        if f is None:
            return
        gauge = prometheus_client.core.GaugeMetricFamily
        for (name, doc), pairs in zip(BACKUP_PAIRS, (f.last_success, f.last_duration), strict=True):
            yield _labelled(name, doc, ["server", "region"], pairs.items())
        repo_ok = {region: 1.0 if ok else 0.0 for region, ok in f.repo_ok.items()}
        for (name, doc), values in zip(BACKUP_BY_REGION, (f.stale, repo_ok, f.repo_checked), strict=True):
            yield _labelled(name, doc, ["region"], (((region,), v) for region, v in values.items()))
        for (name, doc), values in zip(BACKUP_BY_SERVER, (f.failed, f.added_bytes), strict=True):
            yield _labelled(name, doc, ["server"], (((server,), v) for server, v in values.items()))
        (failed, failed_doc), (last, last_doc), (seconds, seconds_doc) = BACKUP_DRILL
        yield gauge(failed, failed_doc, value=f.drill_failed)
        yield gauge(last, last_doc, value=0.0 if f.drill_last is None else f.drill_last)
        duration = gauge(seconds, seconds_doc)
        if f.drill_seconds is not None:
            duration.add_metric([], f.drill_seconds)
        yield duration
        if f.dr_enabled:
            for (name, doc), by_region in zip(DR_BY_REGION, (f.dr_rto, f.dr_rpo, f.dr_failed), strict=True):
                yield _labelled(name, doc, ["region"], (((region,), float(v)) for region, v in by_region.items()))
            yield gauge(DR_LAST[0], DR_LAST[1], value=0.0 if f.dr_last is None else f.dr_last)


class _SummaryCollector(prometheus_client.registry.Collector):
    """Yields the summary gauges from one immutable snapshot, so a scrape never sees a
    half-updated set (a gauge cleared and not yet refilled)."""

    def __init__(self) -> None:
        self.summary = summarise(())

    def collect(self) -> Iterator[prometheus_client.core.Metric]:
        s = self.summary
        subs = prometheus_client.core.GaugeMetricFamily(
            "tenantctl_subscriptions", "Subscriptions by synchronisation state (SYNC-1..3).", labels=["sync"]
        )
        for key, n in sorted(s.sync.items()):
            subs.add_metric([key], n)
        by_state = prometheus_client.core.GaugeMetricFamily(
            "tenantctl_subscriptions_by_state",
            "Subscriptions by lifecycle state and suspension reason (LIFE-1).",
            labels=["state", "reason"],
        )
        for (state, reason), n in sorted(s.states.items()):
            by_state.add_metric([state, reason], n)
        conflicts = prometheus_client.core.GaugeMetricFamily(
            "tenantctl_conflicts",
            "Open sync conflicts (SYNC-3) by property of the effective spec.",
            labels=["property"],
        )
        for prop, n in sorted(s.conflicts.items()):
            conflicts.add_metric([prop], n)
        concerns = prometheus_client.core.GaugeMetricFamily(
            "tenantctl_concern_status",
            "Subscriptions by concern (web, php, db, dns, tls, backup) and status.",
            labels=["concern", "status"],
        )
        for (concern, status), n in sorted(s.concerns.items()):
            concerns.add_metric([concern, status], n)
        overuse = prometheus_client.core.GaugeMetricFamily(
            "tenantctl_overuse",
            "Subscriptions over a limit (level over) or past the notification level (notify), by resource (RES-2).",
            labels=["resource", "level"],
        )
        for (resource, level), n in sorted(s.overuse.items()):
            overuse.add_metric([resource, level], n)
        yield from (subs, by_state, conflicts, concerns, overuse, *_version_families(s.versions))


def _version_families(counts: Mapping[tuple[str, str], int]) -> tuple[prometheus_client.core.Metric, ...]:
    """PLAT-5: live subscriptions by the version they run, ``outdated="true"`` when it is
    older than the last ``kinds.SUPPORTED_WINDOW`` supported (``kinds.outdated``)."""
    by_version = prometheus_client.core.GaugeMetricFamily(
        "tenantctl_subscription_versions",
        "Live subscriptions by the PHP / database engine version they run; outdated=true: older than the last "
        f"{kinds.SUPPORTED_WINDOW} supported versions (PLAT-5).",
        labels=["software", "version", "outdated"],
    )
    for (software, version), n in sorted(counts.items()):
        stale = software in kinds.SUPPORTED_VERSIONS and kinds.outdated(software, version)
        by_version.add_metric([software, version, "true" if stale else "false"], n)
    return (by_version,)


class MetricsServer:
    """A running exposition endpoint; ``shutdown()`` stops it and frees the port."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host: str = host
        self.port: int = port

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def parse_addr(addr: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:9100"`` for IPv6, ``":9100"`` for all interfaces)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"metrics address must be HOST:PORT, got {addr!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class Metrics:
    """Every metric of the controller, on a private registry."""

    def __init__(self, version: str = "unknown") -> None:
        self.registry = prometheus_client.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_total = prometheus_client.Counter(
            "tenantctl_reconcile", "Reconciliations by result.", ["result"], registry=r
        )
        for result in RESULTS:
            self.reconcile_total.labels(result)
        self.reconcile_errors = prometheus_client.Counter(
            "tenantctl_reconcile_errors", "Reconciliations that ended in an error.", registry=r
        )
        self.reconcile_time = prometheus_client.Histogram(
            "tenantctl_reconcile_time_seconds",
            "Time spent in one reconciliation.",
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.workqueue = WorkqueueMetrics(
            depth=prometheus_client.Gauge(
                "tenantctl_workqueue_depth", "Keys ready and waiting for a worker.", registry=r
            ),
            adds=prometheus_client.Counter(
                "tenantctl_workqueue_adds", "Keys added to the work queue (after de-duplication).", registry=r
            ),
            retries=prometheus_client.Counter(
                "tenantctl_workqueue_retries", "Keys re-queued with backoff after a failure.", registry=r
            ),
            duration=prometheus_client.Histogram(
                "tenantctl_workqueue_queue_duration_seconds",
                "Time a key waits in the queue before a worker takes it.",
                buckets=QUEUE_BUCKETS,
                registry=r,
            ),
        )
        self._summary = _SummaryCollector()
        r.register(self._summary)
        self.build_info = prometheus_client.Gauge(
            "tenantctl_build_info", "Always 1; the version of the running tenantctl.", ["version"], registry=r
        )
        self.build_info.labels(version).set(1)
        self._tls = _TlsCollector()
        r.register(self._tls)
        self._backup = _BackupCollector()
        r.register(self._backup)
        self.leader = prometheus_client.Gauge(
            "tenantctl_leader",
            "1 while this operator replica holds the leader Lease and reconciles, 0 while it stands by.",
            registry=r,
        )
        self.pitr_lag = prometheus_client.Gauge(
            "tenantctl_pitr_archive_lag_seconds",
            "Seconds since the oldest write of a database server not yet in its PITR archive (0: all archived; "
            "PostgreSQL WAL through pgBackRest, MariaDB binary logs; BKP-4).", ["server", "engine", "region"],
            registry=r,
        )
        self.pitr_newest = prometheus_client.Gauge(
            "tenantctl_pitr_newest_archived_timestamp_seconds",
            "When the newest archived WAL segment or binary-log event of a database server was written.",
            ["server", "engine", "region"], registry=r,
        )
        self.dns_zones = prometheus_client.Gauge(
            "tenantctl_dns_zones", "Zones on each DNS server by state (primary, secondary, behind, empty, "
            "foreign).", ["server", "state"], registry=r
        )
        self.dns_last_sync = prometheus_client.Gauge(
            "tenantctl_dns_last_sync_timestamp_seconds",
            "When every call to that DNS server last succeeded in a pass.", ["server"], registry=r
        )
        self.desired_state_valid = prometheus_client.Gauge(
            "tenantctl_desired_state_valid",
            "1 when the last load of the desired-state files succeeded, 0 when it failed (or none happened yet).",
            registry=r,
        )
        self.desired_state_last_success = prometheus_client.Gauge(
            "tenantctl_desired_state_last_success_timestamp_seconds",
            "When the desired-state files were last loaded without error (0: never, in this process).",
            registry=r,
        )
        self.deletions_held = prometheus_client.Gauge(
            "tenantctl_deletions_held",
            "Subscriptions whose deletion the mass-deletion guard holds until a person confirms.",
            registry=r,
        )
        self.server_reachable = prometheus_client.Gauge(
            "tenantctl_server_reachable",
            "1 when the last pass reached the server (its identity marker was read), 0 when it did not.",
            ["server"],
            registry=r,
        )
        self.generation_changes = prometheus_client.Counter(
            "tenantctl_server_generation_changes",
            "Times the server's identity marker changed or vanished (the server was replaced or wiped).",
            ["server"],
            registry=r,
        )
        self.moves = prometheus_client.Gauge(
            "tenantctl_subscription_moves",
            "Moves of subscriptions between servers by their current step (issue 13: scheduled, started .. "
            "switched, removed, aborting).",
            ["step"],
            registry=r,
        )
        self.move_step_seconds = prometheus_client.Gauge(
            "tenantctl_subscription_move_step_seconds",
            "The longest time a move has been at this step (0: no move at it); MoveStuck alerts on it.",
            ["step"],
            registry=r,
        )
        self.deferred = prometheus_client.Gauge(
            "tenantctl_deferred",
            "Subscription/concern pairs backing off after a temporary failure (due again later).",
            registry=r,
        )
        self.backoff_permanent = prometheus_client.Gauge(
            "tenantctl_backoff_permanent",
            "Subscription/concern pairs held by a permanent failure until their inputs change.",
            registry=r,
        )

    def set_tls(self, snapshot: TlsSnapshot) -> None:
        """Certificates and ACME traffic as the tls driver last observed them (no I/O here)."""
        self._tls.snapshot = snapshot

    def set_backup(self, figures: BackupFigures) -> None:
        """Backups as the caller last computed them from the state store (no I/O here);
        each call replaces the previous figures whole."""
        self._backup.figures = figures

    def set_pitr(self, lags: Mapping[tuple[str, str, str], tuple[float, float | None]]) -> None:
        """(server, engine, region) -> (lag seconds, newest archived Unix time or None), as
        the backup scheduler last measured them (no I/O here); a server no longer archived
        leaves no series."""
        self.pitr_lag.clear()
        self.pitr_newest.clear()
        for key, (lag, newest) in lags.items():
            self.pitr_lag.labels(*key).set(lag)
            if newest is not None:
                self.pitr_newest.labels(*key).set(newest)

    def set_dns(self, zones: Mapping[tuple[str, str], int], last_sync: Mapping[str, float]) -> None:
        """DNS health as the dns driver last observed it (no I/O here)."""
        self.dns_zones.clear()
        for (server, state), n in zones.items():
            self.dns_zones.labels(server, state).set(n)
        self.dns_last_sync.clear()
        for server, ts in last_sync.items():
            self.dns_last_sync.labels(server).set(ts)

    def set_desired_state(self, valid: bool, at: float | None) -> None:
        """The outcome of the last load of the desired-state files: ``valid``, and ``at`` the
        time (Unix seconds) of the last successful load, or None to leave it as it was
        (after a failed load: the last good one still stands)."""
        self.desired_state_valid.set(1 if valid else 0)
        if at is not None:
            self.desired_state_last_success.set(at)

    def set_deletions_held(self, n: int) -> None:
        """How many subscription deletions the mass-deletion guard holds now (0: none)."""
        self.deletions_held.set(n)

    def set_server_reachable(self, server: str, ok: bool) -> None:
        """Whether this pass reached ``server``. Also starts its generation-change counter
        at 0, so that the first change is an increase Prometheus can see."""
        self.server_reachable.labels(server).set(1 if ok else 0)
        self.generation_changes.labels(server)

    def inc_generation_change(self, server: str) -> None:
        """Count one change (or disappearance) of ``server``'s identity marker."""
        self.generation_changes.labels(server).inc()

    def forget_server(self, server: str) -> None:
        """Drop the series of a server that is no longer in the desired state."""
        for family in (self.server_reachable, self.generation_changes):
            with contextlib.suppress(KeyError):
                family.remove(server)

    def set_moves(self, counts: Mapping[str, int], ages: Mapping[str, float] | None = None) -> None:
        """Moves by their current step and the longest time one has been at each step
        (``state.moves.counts`` and ``ages``: every step present, 0 when none); a step
        no longer given disappears."""
        self.moves.clear()
        self.move_step_seconds.clear()
        for step, n in counts.items():
            self.moves.labels(step).set(n)
        for step, seconds in (ages or {}).items():
            self.move_step_seconds.labels(step).set(seconds)

    def set_backoff(self, deferred: int, permanent: int) -> None:
        """Pairs (subscription, concern) now backing off after a temporary failure
        (``deferred``) and held by a permanent one until their inputs change."""
        self.deferred.set(deferred)
        self.backoff_permanent.set(permanent)

    def count_interrupted(self, n: int = 1) -> None:
        """Count passes found started and never ended (``reconcile_total{result="interrupted"}``)."""
        self.reconcile_total.labels("interrupted").inc(n)

    def queue_hook(self) -> WorkqueueMetrics:
        """The ``reconcile.queue.QueueMetrics`` hook for a WorkQueue (same as ``.workqueue``)."""
        return self.workqueue

    def observe_reconcile(self, result: str, seconds: float) -> None:
        """Count one reconcile pass (``success``, ``error`` or ``requeue``, see ``PASS_RESULTS``)
        and its duration."""
        if result not in PASS_RESULTS:
            raise ValueError(f"reconcile result must be one of {PASS_RESULTS}, got {result!r}")
        self.reconcile_total.labels(result).inc()
        if result == "error":
            self.reconcile_errors.inc()
        self.reconcile_time.observe(seconds)

    def set_subscription_summary(self, items: Iterable[Mapping[str, Any]],
                                 releases: Mapping[str, kinds.Release] | None = None) -> None:
        """Recompute every summary gauge from the status items (``status -o json`` documents);
        ``releases`` (server -> ``kinds.Release``, from the desired state) gives the
        database engines' versions (PLAT-5), PHP's comes from the items.

        Each item needs ``sync``, ``state``, ``stateReason``, ``conflicts`` (a list of
        ``{property, ...}``) and ``concerns`` (``{concern: status}``). The documented
        label values are always present (0 when no subscription has them); conflict
        properties no longer reported disappear.
        """
        self._summary.summary = summarise(items, releases)

    def exposition(self) -> bytes:
        """The text exposition format, as a scrape would get it."""
        return prometheus_client.generate_latest(self.registry)

    def serve(self, addr: str) -> MetricsServer:
        """Serve ``/metrics`` on ``addr`` (``"HOST:PORT"``, port 0 picks a free one)."""
        host, port = parse_addr(addr)
        server, thread = prometheus_client.start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)
