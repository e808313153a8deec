"""One operator replica: metrics and health endpoints, the Lease, then kopf and the worker.

A replica starts as a standby: it serves ``/healthz``, ``/readyz`` and ``/metrics``
and tries the Lease every ``retry`` seconds; it opens the state store and starts kopf
only once it holds the Lease. Losing the Lease stops kopf and the worker at once and
ends ``run`` with 1 (the pod restarts as a standby, like client-go's
``OnStoppedLeading``); a signal or ``Control.stop`` releases it for a quick takeover.

While it leads, with real drivers, the replica also does the background work of
``tenantctl run`` (``reconcile.background``, one place for both): the backup schedule,
the usage collection and the demos' resets on threads of their own, started once the
store is open and ended when leading ends (lost Lease, stop, kill), reading the desired
state of the worker's last pass; the worker's resync timer pass does the moves that are
due (``operator.worker``). A standby does none of it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf

import controller
from controller import metrics, model, settings
from controller.operator import api as api_mod
from controller.operator import handlers, health, lease, worker
from controller.operator.options import Options
from controller.reconcile import background, guard
from controller.state import store as state_store

log = logging.getLogger("tenantctl.operator")


class Control:
    """Stop a running replica from any thread: ``stop()`` releases the Lease,
    ``kill()`` does not (as if the process died: the standby waits for expiry)."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.killed = threading.Event()
        #: set while this replica reconciles (holds the Lease and kopf runs)
        self.leading = threading.Event()
        #: the reconciler while leading (tests read its passes)
        self.reconciler: worker.Reconciler | None = None
        #: the background work's threads of the last lead (None: not run)
        self.background: background.Threads | None = None
        self.health_port: int | None = None
        self.metrics_port: int | None = None

    def stop(self) -> None:
        self.stopping.set()

    def kill(self) -> None:
        self.killed.set()


def default_wiring(state_dir: Path) -> worker.Wiring:
    """The real drivers and identity probe for a desired state (as ``tenantctl run``)."""
    from controller.drivers import context, registry

    def wire(ds: model.DesiredState) -> Any:
        ctx = context.Context.of(ds, state_dir)
        return dict(registry.build(ctx)), registry.probe(ctx)

    return wire


def default_clock() -> dt.datetime:
    fixed = settings.current().core.now
    return fixed if fixed is not None else dt.datetime.now(dt.UTC)


async def run(opts: Options, *, state_dir: Path, control: Control | None = None,
              wiring: worker.Wiring | None = None, clock: Callable[[], dt.datetime] = default_clock,
              exit_on_loss: bool = False, with_background: bool | None = None) -> int:
    """Run one replica until stopped (0) or until it loses the Lease (1). With
    ``exit_on_loss`` (a process of its own) losing the Lease ends the process at once
    (``os._exit(1)``, client-go's fatal exit): a pass in flight must not go on next to
    the new leader's; the engine is safe against being killed mid-pass. The background
    work runs with the real drivers (``wiring`` not given; ``with_background`` says
    otherwise), never with ``TENANTCTL_DRIVERS=none`` (``background.wanted``)."""
    control = control or Control()
    extra = background.wanted(wiring is None if with_background is None else with_background)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not one line per watch event
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    client = api_mod.Api(opts.namespace, api_mod.configuration(opts.server))
    elector = lease.Elector(client, opts.lease, opts.identity, opts.timing)

    def ready() -> str | None:
        if not elector.api_ok:
            return "the API server did not answer the last Lease attempt"
        rec = control.reconciler
        if elector.leading and (rec is None or not rec.passes):
            return "leading: the first pass is not done yet"
        return None

    m = metrics.Metrics(version=controller.__version__)
    metrics_server = m.serve(opts.metrics_addr) if opts.metrics_addr else None
    health_server = health.Server(opts.health_addr, ready) if opts.health_addr else None
    control.metrics_port = metrics_server.port if metrics_server else None
    control.health_port = health_server.port if health_server else None
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, control.stop)
    watcher = loop.create_task(_watch(control, stop))
    try:
        if not await elector.acquire(stop):
            return 0
        code = await _lead(opts, control, elector, client, m, state_dir=state_dir, stop=stop,
                           wiring=wiring if wiring is not None else default_wiring(state_dir), clock=clock,
                           extra=extra)
        if code and exit_on_loss:
            logging.shutdown()
            os._exit(code)
        return code
    finally:
        watcher.cancel()
        if metrics_server is not None:
            metrics_server.shutdown()
        if health_server is not None:
            health_server.shutdown()
        client.close()


async def _lead(opts: Options, control: Control, elector: lease.Elector, client: api_mod.Api, m: metrics.Metrics,
                *, state_dir: Path, stop: asyncio.Event, wiring: worker.Wiring,
                clock: Callable[[], dt.datetime], extra: bool) -> int:
    """Lead until the Lease is lost (1) or ``stop`` (0); ``extra``: with the background work."""
    loop = asyncio.get_running_loop()
    g = settings.current().guard
    state_dir.mkdir(parents=True, exist_ok=True)
    store = state_store.Store(state_dir / "state.db", now=clock)
    work: asyncio.Task[None] | None = None
    leading_ended = threading.Event()  # ends the background threads
    threads: background.Threads | None = None
    try:
        rec = worker.Reconciler(store, client, workdir=state_dir / "operator", clock=clock, wiring=wiring,
                                metrics=m, threshold=guard.Threshold(count=g.max_delete, percent=g.max_delete_percent),
                                resync=opts.resync, retry=opts.retry, background=extra)
        control.reconciler = rec
        if extra:
            threads = control.background = background.start(store, m, rec.desired, clock, leading_ended,
                                                                 actor="operator")
        kopf_stop = asyncio.Event()
        # The worker and the keeper exist before kopf starts: kopf cancels, when it
        # stops, every task created while it ran.
        keeper = loop.create_task(elector.keep(stop))
        work = loop.create_task(rec.run(kopf_stop))
        op = loop.create_task(kopf.operator(
            registry=handlers.registry(rec, server=opts.server),
            settings=handlers.settings(watch_timeout=opts.watch_timeout, exit_timeout=opts.exit_timeout),
            namespaces=[opts.namespace], standalone=True, stop_flag=kopf_stop))
        control.leading.set()
        m.leader.set(1)
        await asyncio.wait({keeper, work, op}, return_when=asyncio.FIRST_COMPLETED)
        lost = keeper.done() and not stop.is_set()
        control.leading.clear()
        m.leader.set(0)
        kopf_stop.set()
        leading_ended.set()
        if lost:  # another replica may lead already: no waiting for the pass in flight
            log.error("lease lost: stopping (the pass in flight, if any, ends with the process)")
            await asyncio.wait({op}, timeout=5.0)
            return 1
        # a clean stop lets the pass in flight (and a background tick) finish
        deadline = loop.time() + 30.0
        await asyncio.wait({op, work}, timeout=30.0)
        if threads is not None:
            await asyncio.to_thread(threads.join, max(deadline - loop.time(), 0.0))
        keeper.cancel()
        for task in (op, work):
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("operator stopped: %s", task.exception())
        if not control.killed.is_set():
            await asyncio.to_thread(elector.release)
        return 0
    finally:
        control.leading.clear()
        m.leader.set(0)
        leading_ended.set()
        if (work is None or work.done()) and (threads is None or not threads.alive()):
            store.close()


async def _watch(control: Control, stop: asyncio.Event) -> None:
    """Bridge ``Control`` (any thread) to the loop's ``stop`` event."""
    while not (control.stopping.is_set() or control.killed.is_set()):
        await asyncio.sleep(0.05)
    stop.set()
