"""The continuous loop behind ``tenantctl run``: level-triggered, keyed by subscription.

Triggers only put keys on the work queue: a change of the desired-state files (polled
by mtime), the resync timer (expiry dates, drift), backoff timers of failed keys. The
worker drains the queue in batches, so that many keys on one server make one batch
per concern (one reload per server).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import controller
from controller import errors, metrics, model
from controller.drivers import base
from controller.drivers.dns import metrics as dns_metrics
from controller.drivers.tls import metrics as tls_metrics
from controller.model import loader
from controller.reconcile import engine as engine_mod
from controller.reconcile.queue import WorkQueue
from controller.state import store as state_store

log = logging.getLogger("tenantctl")
BATCH = 1000


def _mtimes(files: Sequence[Path]) -> tuple[tuple[str, float], ...]:
    out = []
    for p in loader.iter_files(files):
        try:
            out.append((str(p), os.stat(p).st_mtime))
        except OSError:
            continue
    return tuple(out)


def run(
    files: Sequence[Path],
    store: state_store.Store,
    *,
    clock: Callable[[], dt.datetime],
    metrics_addr: str | None = None,
    resync: float = 60.0,
    once: bool = False,
    stop: threading.Event | None = None,
    drivers_for: Callable[[model.DesiredState], Mapping[str, base.Driver]] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``). ``drivers_for`` builds the drivers for a
    desired state (its servers); by default every concern is not provisioned."""
    stop = stop or threading.Event()
    m = metrics.Metrics(version=controller.__version__)
    server: Any = m.serve(metrics_addr) if metrics_addr else None
    queue: WorkQueue[str] = WorkQueue(metrics=m.queue_hook())
    eng = engine_mod.Engine(store, clock=clock)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        queue.shutdown()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    seen: tuple[tuple[str, float], ...] = ()
    ds: model.DesiredState | None = None
    next_resync = 0.0
    try:
        while not stop.is_set():
            mt = _mtimes(files)
            mono = clock().timestamp()
            if mt != seen or mono >= next_resync:
                timer = mono >= next_resync
                seen, next_resync = mt, mono + resync
                try:
                    ds = model.load_desired(files)
                    if drivers_for is not None:
                        eng.set_drivers(drivers_for(ds))
                except errors.InputError as exc:
                    log.error("desired state invalid, keeping the last good one:\n%s", exc)
                if ds is not None and timer:
                    eng.resync(ds)  # drift: what was changed or lost on the servers
                if ds is not None:
                    planned = eng.plan(ds)
                    for name, acts in planned.actions.items():
                        if acts:
                            queue.add(name)
                    if planned.deletions:
                        queue.add("")  # "" stands for the deletion pass
                    m.set_subscription_summary(store.get_status())
            if ds is not None:
                keys = _drain(queue, timeout=0.0 if once else 1.0)
                if keys:
                    report = eng.reconcile(ds, only=keys)
                    now = store.now()
                    for k in keys:
                        queue.done(k)
                        if k in report.retry_at:  # failed or backing off: due again then
                            queue.add_after(k, max((report.retry_at[k] - now).total_seconds(), 0.0))
                        else:
                            queue.forget(k)
                    m.observe_reconcile("error" if report.failed else "success", report.seconds)
                    m.set_subscription_summary(store.get_status())
                    m.set_dns(dns_metrics.zones_by_state(), dns_metrics.last_sync())
                    m.set_tls(metrics.TlsSnapshot(
                        expiry=tls_metrics.certificate_expiry(), renewed=tls_metrics.last_renewal(),
                        failures=tls_metrics.renewal_failures(), requests=tls_metrics.acme_requests(),
                        request_seconds=tls_metrics.acme_request_seconds(), orders=tls_metrics.acme_orders(),
                        order_seconds=tls_metrics.acme_order_seconds()))
            elif not once:
                stop.wait(1.0)
            if once:
                break
    finally:
        queue.shutdown()
        if server is not None:
            server.shutdown()


def _drain(queue: WorkQueue[str], timeout: float) -> list[str]:
    keys: list[str] = []
    first = queue.get(timeout=timeout)
    if first is None:
        return keys
    keys.append(first)
    while len(keys) < BATCH:
        k = queue.get(timeout=0.0)
        if k is None:
            break
        keys.append(k)
    return keys
