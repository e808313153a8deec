"""The series the controller really exports: a ``Metrics()`` with a sample value through
every setter, rendered and parsed back with ``prometheus_client.parser``.

``setters()`` lists the public methods of ``Metrics`` that feed values; a test checks
that ``sample()`` calls each of them, so a new metric cannot escape the query checks.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import parser

from controller import clock, metrics
from controller.drivers.dns import metrics as dns_metrics
from controller.reconcile import queue
from controller.state import moves

FEEDING = ("set_", "observe_", "inc_", "count_", "forget_")
TARGET_LABELS = frozenset({"instance", "job"})
"""Labels Prometheus adds to every scraped series."""


def setters() -> set[str]:
    return {n for n in dir(metrics.Metrics) if n.startswith(FEEDING) and callable(getattr(metrics.Metrics, n))}


def sample(m: metrics.Metrics | None = None) -> metrics.Metrics:
    """``m`` (or a new ``Metrics``) with every setter called once or more."""
    m = m or metrics.Metrics(version="0.1.0-test")
    for result, seconds in [("success", 0.02), ("error", 1.5), ("requeue", 0.3)]:
        m.observe_reconcile(result, seconds)
    m.count_interrupted(1)
    q = queue.WorkQueue[str](clock=clock.FakeClock(), metrics=m.queue_hook())
    q.add("a.example")
    q.add_rate_limited("b.example")
    q.get(0)
    m.set_subscription_summary([
        {"sync": "unsynced", "state": "suspended", "stateReason": "overuse",
         "conflicts": [{"property": "hosting.php.version"}],
         "concerns": {"web": "provisioned", "tls": "failed"},
         "overuse": {"over": ["diskMB"], "notify": ["trafficMB"]}},
        {"sync": "synced", "state": "active", "stateReason": None, "conflicts": [], "concerns": {"web": "failed"},
         "effective": {"hosting": {"enabled": True, "php": {"version": "7.4"}}}},
    ])
    zones = {(server, state): 0 for server in ("dns-1", "dns-2") for state in dns_metrics.STATES}
    m.set_dns(zones | {("dns-1", "primary"): 3, ("dns-2", "secondary"): 2, ("dns-2", "behind"): 1},
              {"dns-1": 1.7e9, "dns-2": 1.7e9 - 600})
    m.set_tls(metrics.TlsSnapshot(
        expiry={"a.example": 1.8e9}, renewed={"a.example": 1.7e9}, failures={"b.example": 2},
        requests={"ok": 10, "error": 1}, request_seconds={"ok": 1.0, "error": 0.1},
        orders={"issued": 2, "failed": 1}, order_seconds={"issued": 2.2, "failed": 0.5},
    ))
    m.set_backup(metrics.BackupFigures(
        last_success={("eu-west-1", "eu-west"): 1.7e9, ("eu-west-1", "us-east"): 1.7e9 - 3600,
                      ("us-east-1", "us-east"): 1.7e9 - 600},
        last_duration={("eu-west-1", "eu-west"): 42.0, ("eu-west-1", "us-east"): 7.5, ("us-east-1", "us-east"): 30.0},
        stale={"eu-west": 0, "us-east": 2}, failed={"eu-west-1": 0, "us-east-1": 1},
        added_bytes={"eu-west-1": 1.5e6, "us-east-1": 0.0},
        drill_failed=1, drill_last=1.7e9 - 7200, drill_seconds=95.0,
        repo_ok={"eu-west": True, "us-east": False}, repo_checked={"eu-west": 1.7e9 - 3600, "us-east": 1.7e9 - 1800},
        dr_enabled=True, dr_rto={"eu-west": 42.0}, dr_rpo={"eu-west": 3600.0},
        dr_failed={"eu-west": 0, "us-east": 1}, dr_last=1.7e9 - 600,
    ))
    m.set_pitr({("db-1", "postgresql", "eu-west"): (12.0, 1.7e9), ("db-1", "mariadb", "eu-west"): (0.0, None)})
    m.set_desired_state(True, 1.7e9)
    m.set_desired_state(False, None)
    m.set_deletions_held(6)
    for server, ok in [("web-1", True), ("web-2", False), ("gone-1", True)]:
        m.set_server_reachable(server, ok)
    m.inc_generation_change("web-1")
    m.forget_server("gone-1")
    m.set_backoff(deferred=4, permanent=1)
    steps = {step: 0 for step in moves.ALL_STEPS}
    m.set_moves({**steps, "placed": 1, "scheduled": 2}, {**dict.fromkeys(steps, 0.0), "placed": 4000.0,
                                                          "scheduled": 86400.0})
    return m


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    value: float
    kind: str  # the family's type: counter, gauge, histogram, summary, info, ...

    def selector(self, **extra: str) -> str:
        """The series in ``promtool test rules`` input notation."""
        labels = {**self.labels, **extra}
        inner = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
        return f"{self.name}{{{inner}}}"


def series(m: metrics.Metrics) -> Iterator[Series]:
    for family in parser.text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            yield Series(s.name, dict(s.labels), s.value, family.type)


def labels_by_name(m: metrics.Metrics) -> dict[str, set[str]]:
    """Every exported series name (with its ``_total``, ``_bucket``... suffix) -> label names."""
    out: dict[str, set[str]] = collections.defaultdict(set)
    for s in series(m):
        out[s.name] |= set(s.labels)
    return dict(out)


def values_by_label(m: metrics.Metrics) -> dict[tuple[str, str], set[str]]:
    """``(series name, label) -> values`` seen in the sample."""
    out: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    for s in series(m):
        for k, v in s.labels.items():
            out[(s.name, k)].add(v)
    return dict(out)
