"""The operator's work loop: keys in, the CLI's engine pass, status and finalizers out.

kopf's handlers only ``enqueue`` subscription keys (or "everything"); this loop
coalesces them and runs one engine pass at a time on its own thread (the engine and
the state store are synchronous), with the desired state rebuilt from kopf's indexes.
After a pass it writes the status of the passed subscriptions (a PATCH only when the
status changed: ``controller.kube.status.status_patch``) and lifts the finalizer of a
deleted Subscription once the engine recorded its deletion (LIFE-6: final backup
first); a failed or held deletion keeps the finalizer and is retried after its backoff.
A held mass deletion goes ahead once every Subscription it deletes carries the
annotation ``tenantctl.io/confirm-deletion: "true"`` (``index.mass_deletion_confirmed``).
The resync timer's pass (every ``resync`` seconds, a full one) also looks for drift
(``Engine.resync``) and then does the timer's share of ``reconcile.background`` as
``tenantctl run`` does: the state store's daily copy and, with ``background`` (real
drivers), the moves that are due. The
background threads (backups, usage, demos) are ``operator.main``'s, while it leads; they
read the desired state of the last pass here (``desired``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import errors, metrics, model
from controller.drivers import base, identity
from controller.kube import status as kube_status
from controller.operator import api as api_mod
from controller.operator import desired, index
from controller.reconcile import background as background_mod
from controller.reconcile import engine as engine_mod
from controller.reconcile import guard
from controller.reconcile import status as status_mod
from controller.state import moves
from controller.state import store as state_store

log = logging.getLogger("tenantctl.operator")

Wiring = Callable[[model.DesiredState], tuple[Mapping[str, base.Driver], "identity.Probe | None"]]
#: seconds before a failed deletion or a failed pass is tried again when the engine
#: gives no time of its own
RETRY = 10.0


#: how many passes ``Reconciler.passes`` remembers
KEEP_PASSES = 100


@dataclass(frozen=True)
class Pass:
    """What one pass was given and did (the last ``KEEP_PASSES`` are kept, to inspect)."""

    keys: frozenset[str] | None
    """The subscriptions it was for (None: all)."""
    subscriptions: tuple[str, ...]
    """Every subscription of the desired state it was given."""
    items: Mapping[str, Mapping[str, Any]]
    """The planned status item of each subscription of ``keys``."""
    failed: tuple[str, ...] = ()
    finalized: tuple[str, ...] = ()
    """Subscriptions whose finalizer it lifted (the engine recorded their deletion)."""
    status_patches: int = 0


@dataclass
class Reconciler:
    store: state_store.Store
    api: api_mod.Api
    workdir: Path
    clock: Callable[[], dt.datetime]
    wiring: Wiring | None = None
    metrics: metrics.Metrics | None = None
    threshold: guard.Threshold | None = None
    resync: float = 300.0
    retry: float = RETRY
    #: real drivers: the timer pass's ``reconcile.background.on_timer`` does the due moves
    #: too (``background.wanted``)
    background: bool = False
    #: kopf's live indexes by name (set by the first handler call: all are populated then)
    indices: Mapping[str, Any] | None = None
    passes: collections.deque[Pass] = field(default_factory=lambda: collections.deque(maxlen=KEEP_PASSES))
    #: the last status written per subscription (the watch may not have brought it yet)
    written: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = engine_mod.Engine(self.store, clock=self.clock, actor="operator", threshold=self.threshold)
        self._pending: set[str] = set()
        self._full = False
        self._wake = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tenantctl-pass")
        self._servers: list[tuple[str, str]] | None = None
        self._ds: model.DesiredState | None = None
        self._next_resync = 0.0

    # --- called by the handlers -------------------------------------------------------

    def enqueue(self, keys: set[str] | None) -> None:
        """Reconcile these subscriptions (None: all) in the next pass."""
        if keys is None:
            self._full = True
        else:
            self._pending |= keys
        if self._full or self._pending:
            self._wake.set()

    def desired(self) -> model.DesiredState | None:
        """The desired state of the last pass (the last good one; None before the first)."""
        return self._ds

    # --- the loop -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Passes until ``stop``; the first one waits for kopf's indexes."""
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                await _wait(stop, self._wake, timeout=1.0)
                if stop.is_set():
                    return
                if self.indices is None:
                    continue
                mono = time.monotonic()
                timer = mono >= self._next_resync
                if timer:
                    self._next_resync = mono + self.resync
                    self._full = True
                if not (self._full or self._pending):
                    self._wake.clear()
                    continue
                keys = None if self._full else frozenset(self._pending)
                self._full, self._pending = False, set()
                self._wake.clear()
                objects = self._objects()
                try:
                    done = await loop.run_in_executor(self._executor, self.reconcile, objects, keys, timer)
                except Exception as exc:  # a pass never ends the operator
                    log.exception("operator pass: %s", exc)
                    if self.metrics is not None:
                        self.metrics.observe_reconcile("error", 0.0)
                    loop.call_later(self.retry, self.enqueue, set(keys) if keys is not None else None)
                    continue
                for name, delay in done.items():
                    loop.call_later(delay, self.enqueue, {name})
        finally:
            # the pass in flight (if any) finishes, then the drivers close, on the pass thread
            self._executor.submit(self.engine.close)
            self._executor.shutdown(wait=False, cancel_futures=False)
            await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _objects(self) -> list[dict[str, Any]]:
        """A snapshot of every indexed object (taken on the event loop, where kopf
        changes the indexes)."""
        assert self.indices is not None
        return [o for name in index.OBJECTS.values() for o in index.flatten(self.indices[name])]

    # --- one pass (on the pass thread) ------------------------------------------------

    def reconcile(self, objects: list[dict[str, Any]], keys: frozenset[str] | None,
                  timer: bool = False) -> dict[str, float]:
        """One engine pass for ``keys`` (None: all); returns the subscriptions to try
        again and when (seconds)."""
        subs = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Subscription"}
        try:
            ds = desired.load(objects, self.workdir)
        except errors.InputError as exc:
            log.error("desired state invalid (%d errors), keeping the last good one:\n%s", len(exc.issues), exc)
            if self.metrics is not None:
                self.metrics.set_desired_state(False, None)
            if self._ds is None:
                return {}
            ds = self._ds
        else:
            self._ds = ds
            if self.metrics is not None:
                self.metrics.set_desired_state(True, time.time())
        self._wire(ds)
        if keys is None:
            self.engine.check_servers(ds)
            if timer:
                self.engine.resync(ds)  # drift: what was changed or lost on the servers
                # the state store's daily copy; with real drivers, the moves that are due
                background_mod.on_timer(ds, self.store, self.engine, actor="operator", real_drivers=self.background)
        confirmed = any(index.deletion_confirmed(b) for b in subs.values()) and index.mass_deletion_confirmed(
            subs, (r.name for r in self.store.list_subscriptions()))
        report = self.engine.reconcile(ds, only=keys, check_servers=False, command="operator",
                                       allow_mass_delete=confirmed)
        items = {i["name"]: i for i in status_mod.items(self.store)}
        names = sorted(subs) if keys is None else sorted(k for k in keys if k in subs)
        patches = sum(self._write_status(subs[n], items.get(n)) for n in names if not index.deleting(subs[n]))
        retry: dict[str, float] = {}
        finalized = []
        for name, body in sorted(subs.items()):
            if not (index.deleting(body) and index.has_finalizer(body)):
                continue
            rec = self.store.get_subscription(name)
            if rec is None or rec.deleted_at is not None:  # the engine recorded the deletion
                self.api.patch("subscriptions", name, {"metadata": {"finalizers": index.without_finalizer(body)}})
                self.written.pop(name, None)
                finalized.append(name)
            else:
                retry[name] = self._delay(report, name)
        now = self.store.now()
        for name, at in report.retry_at.items():
            retry.setdefault(name, max((at - now).total_seconds(), 1.0))
        self._observe(report)
        planned = report.planned.subscriptions
        self.passes.append(Pass(keys, tuple(sorted(ds.subscriptions)),
                                {k: planned[k].item for k in keys or () if k in planned},
                                tuple(sorted(report.failed)), tuple(finalized), patches))
        return retry

    def _delay(self, report: engine_mod.Report, name: str) -> float:
        at = report.retry_at.get(name)
        return max((at - self.store.now()).total_seconds(), 1.0) if at is not None else self.retry

    def _wire(self, ds: model.DesiredState) -> None:
        servers = sorted((n, ds.docs[("Server", n)].digest) for n in ds.servers)
        if self.wiring is not None and servers != self._servers:
            drivers, probe = self.wiring(ds)
            self.engine.set_drivers(drivers, probe)
        self._servers = servers

    def _write_status(self, body: Mapping[str, Any], item: Mapping[str, Any] | None) -> int:
        """PATCH the Subscription's status if it changed; 1 if a PATCH was made."""
        if item is None:
            return 0
        name = body["metadata"]["name"]
        current = self.written.get(name, body.get("status"))
        now = self.clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = kube_status.subscription_status(item, generation=body["metadata"].get("generation"), now=now,
                                              previous=current)
        patch = kube_status.status_patch(current, new)
        if patch is None:
            return 0
        self.api.patch_status("subscriptions", name, patch)
        self.written[name] = new
        return 1

    def _observe(self, report: engine_mod.Report) -> None:
        m = self.metrics
        if m is None:
            return
        m.observe_reconcile("error" if report.failed else "requeue" if report.deferred or report.held
                            else "success", report.seconds)
        backoff = self.store.list_backoff()
        m.set_backoff(sum(1 for b in backoff if not b.permanent), sum(1 for b in backoff if b.permanent))
        m.set_subscription_summary(self.store.get_status(), self._ds.releases() if self._ds is not None else None)
        m.set_moves(moves.counts(self.store), moves.ages(self.store, self.store.now()))


async def _wait(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    """Until ``wake`` or ``stop`` is set, at most ``timeout`` seconds (no tasks made:
    kopf cancels tasks created while it runs when it stops)."""
    deadline = time.monotonic() + timeout
    while not (wake.is_set() or stop.is_set()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
