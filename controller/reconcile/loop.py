"""The continuous loop behind ``tenantctl run``: level-triggered, keyed by subscription.

Triggers only put keys on the work queue: a change of the desired-state files (polled
by mtime), the resync timer (expiry dates, drift), backoff timers of failed keys. The
worker drains the queue in batches, so that many keys on one server make one batch
per concern (one reload per server). Beside the loop, with real drivers (``wiring``
given, ``TENANTCTL_DRIVERS`` not ``none``), the background work of ``reconcile.background``
(the same as the operator's leader runs): the backup schedule, the usage collection and
the demo platforms' resets on threads of their own (with ``once``: the backup schedule's
thread, and one round of the demos after the pass, in the calling thread), and on the
resync timer, after the drift pass, the state store's daily copy and the moves that are
due (``background.on_timer``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import controller
from controller import errors, metrics, model
from controller.drivers import base, identity
from controller.drivers.dns import metrics as dns_metrics
from controller.drivers.tls import metrics as tls_metrics
from controller.model import loader
from controller.reconcile import background, guard
from controller.reconcile import engine as engine_mod
from controller.reconcile.queue import WorkQueue
from controller.state import events, moves
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


Wiring = tuple[Mapping[str, base.Driver], "identity.Probe | None"]


class _Health:
    """The desired state's health under ``run`` (issue 7 point 5): each failed load is
    logged with a timestamp; a new error, and the recovery, are recorded as events."""

    def __init__(self, store: state_store.Store, m: metrics.Metrics) -> None:
        self.store, self.m = store, m
        self.error: str | None = None
        self.last_ok: float | None = None

    def failed(self, exc: errors.InputError) -> None:
        text = str(exc)
        log.error("desired state invalid (%d errors), keeping the last good one:\n%s", len(exc.issues), text)
        self.m.set_desired_state(False, None)
        if text != self.error:
            self.error = text
            _record(self.store, action="desired-state-invalid", subject="desired-state",
                    message=f"{len(exc.issues)} error(s); keeping the last good desired state: "
                            + "; ".join(str(i) for i in exc.issues[:5]))

    def loaded(self, at: float) -> None:
        self.m.set_desired_state(True, at)
        self.last_ok = at
        if self.error is not None:
            log.info("desired state valid again")
            _record(self.store, action="desired-state-recovered", subject="desired-state",
                    message="desired state valid again")
            self.error = None


def _record(store: state_store.Store, **kw: Any) -> None:
    """An event that must never end the loop (the store may be the thing failing)."""
    try:
        with store.transaction():
            events.record(store, actor="run", **kw)
    except Exception as exc:
        log.error("cannot record event %s: %s", kw.get("action"), exc)


def run(
    files: Sequence[Path],
    store: state_store.Store,
    *,
    clock: Callable[[], dt.datetime],
    metrics_addr: str | None = None,
    resync: float = 60.0,
    once: bool = False,
    stop: threading.Event | None = None,
    wiring: Callable[[model.DesiredState], Wiring] | None = None,
    cache_dir: Path | None = None,
    threshold: guard.Threshold | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``). ``wiring`` builds the drivers and the
    identity probe for a desired state (its servers); by default every concern is not
    provisioned. No error of a driver, a server, the store or the desired state ends the
    loop: each becomes a log line, an event, a metric and a retry later."""
    stop = stop or threading.Event()
    m = metrics.Metrics(version=controller.__version__)
    server: Any = m.serve(metrics_addr) if metrics_addr else None
    queue: WorkQueue[str] = WorkQueue(metrics=m.queue_hook())
    eng = engine_mod.Engine(store, clock=clock, actor="run", threshold=threshold)
    health = _Health(store, m)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        queue.shutdown()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    state = _State()
    threads = background.start(store, m, lambda: state.ds, clock, stop, once=once, actor="run") \
        if background.wanted(wiring is not None) else None
    _note_interrupted(store, m)
    pause = 1.0
    try:
        while not stop.is_set():
            try:
                _iteration(files, store, eng, queue, m, health, state, clock=clock, resync=resync, once=once,
                           wiring=wiring, cache_dir=cache_dir)
                pause = 1.0
            except Exception as exc:  # the loop survives everything but a signal
                log.exception("reconcile loop: %s; retrying in %.0f s", exc, pause)
                m.observe_reconcile("error", 0.0)
                _record(store, action="loop-error", subject="controller", message=f"{type(exc).__name__}: {exc}")
                stop.wait(pause)
                pause = min(pause * 2, 30.0)
                state.next_resync = 0.0  # start again from a full pass
            if once:
                if threads is not None:
                    threads.demos_once()  # the demos due now, after the pass that placed them
                break
    finally:
        queue.shutdown()
        eng.close()
        if server is not None:
            server.shutdown()


class _State:
    def __init__(self) -> None:
        self.seen: tuple[tuple[str, float], ...] = ()
        self.ds: model.DesiredState | None = None
        self.next_resync = 0.0
        self.servers: set[str] = set()


def _note_interrupted(store: state_store.Store, m: metrics.Metrics) -> None:
    """Passes that started and never ended (a killed apply or run) are counted once."""
    try:
        unfinished = store.list_runs(unfinished_only=True)
    except Exception as exc:
        log.warning("cannot list runs: %s", exc)
        return
    if unfinished:
        m.count_interrupted(len(unfinished))


def _iteration(
    files: Sequence[Path], store: state_store.Store, eng: engine_mod.Engine, queue: WorkQueue[str],
    m: metrics.Metrics, health: _Health, st: _State, *, clock: Callable[[], dt.datetime], resync: float,
    once: bool, wiring: Callable[[model.DesiredState], Wiring] | None, cache_dir: Path | None,
) -> None:
    mt = _mtimes(files)
    mono = clock().timestamp()
    if mt != st.seen or mono >= st.next_resync:
        timer = mono >= st.next_resync
        st.seen, st.next_resync = mt, mono + resync
        try:
            ds = model.load_desired(files, cache_dir=cache_dir)
            servers = _servers_digest(ds)
            changed = st.ds is None or servers != _servers_digest(st.ds)
            st.ds = ds
            health.loaded(time.time())  # Prometheus compares it with its own time()
            if wiring is not None and changed:
                drivers, probe = wiring(ds)
                eng.set_drivers(drivers, probe)
        except errors.InputError as exc:
            health.failed(exc)
        current = st.ds
        if current is not None:
            eng.check_servers(current)  # replaced or wiped servers: one round trip each
            _server_metrics(eng, m, st)
            if timer:
                eng.resync(current)  # drift: what was changed or lost on the servers
                # the state store's daily copy; with real drivers, the moves that are due
                background.on_timer(current, store, eng, actor="run", real_drivers=wiring is not None)
            planned = eng.plan(current)
            for name, acts in planned.actions.items():
                if acts:
                    queue.add(name)
            if planned.deletions:
                queue.add("")  # "" stands for the deletion pass
            m.set_subscription_summary(store.get_status(), st.ds.releases() if st.ds is not None else None)
            m.set_moves(moves.counts(store), moves.ages(store, store.now()))
    if st.ds is not None:
        keys = _drain(queue, timeout=0.0 if once else 1.0)
        if keys:
            report = eng.reconcile(st.ds, only=keys, check_servers=False, command="run")
            now = store.now()
            for k in keys:
                queue.done(k)
                if k in report.retry_at:  # failed or backing off: due again then
                    queue.add_after(k, max((report.retry_at[k] - now).total_seconds(), 0.0))
                else:
                    queue.forget(k)
            m.observe_reconcile("error" if report.failed else "requeue" if report.deferred or report.held
                                else "success", report.seconds)
            m.set_deletions_held(len(report.deletion.deletions) if report.deletions_held and report.deletion else 0)
            backoff = store.list_backoff()
            m.set_backoff(sum(1 for b in backoff if not b.permanent), sum(1 for b in backoff if b.permanent))
            m.set_subscription_summary(store.get_status(), st.ds.releases())
            m.set_moves(moves.counts(store), moves.ages(store, store.now()))
            m.set_dns(dns_metrics.zones_by_state(), dns_metrics.last_sync())
            m.set_tls(metrics.TlsSnapshot(
                expiry=tls_metrics.certificate_expiry(), renewed=tls_metrics.last_renewal(),
                failures=tls_metrics.renewal_failures(), requests=tls_metrics.acme_requests(),
                request_seconds=tls_metrics.acme_request_seconds(), orders=tls_metrics.acme_orders(),
                order_seconds=tls_metrics.acme_order_seconds()))
    elif not once:
        time.sleep(1.0)


def _servers_digest(ds: model.DesiredState) -> list[tuple[str, str]]:
    return sorted((n, ds.docs[("Server", n)].digest) for n in ds.servers)


def _server_metrics(eng: engine_mod.Engine, m: metrics.Metrics, st: _State) -> None:
    for server, ok in eng.reachable.items():
        m.set_server_reachable(server, ok)
    for server in eng.last_replaced:
        m.inc_generation_change(server)
    for gone in st.servers - set(eng.reachable):
        m.forget_server(gone)
    st.servers = set(eng.reachable)


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
