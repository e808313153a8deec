"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection rules).

One replica holds the Lease and reconciles; the others retry every ``retry`` seconds
and take it over only once its record (holder, renewTime, transitions) has not changed
for ``duration`` seconds *as they observed it* (their own monotonic clock, not the
holder's ``renewTime``: no trust in clock skew). The holder renews every ``retry``
seconds and gives up leadership when it could not renew for ``renew_deadline``
seconds, before any standby may take over (``renew_deadline < duration``). A clean
stop releases the Lease (empty holder, duration 1 s) so that a standby takes over at
once. kopf's peering is not used: it pauses operators, it does not elect one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controller.operator import api as api_mod

log = logging.getLogger("tenantctl.operator")


@dataclass(frozen=True)
class Timing:
    duration: float = 15.0
    """``leaseDurationSeconds``: a record unchanged this long is expired."""
    renew_deadline: float = 10.0
    """The holder stops leading when it could not renew for this long."""
    retry: float = 2.0
    """Seconds between attempts to acquire or renew."""


def _micro(at: dt.datetime) -> str:
    """A MicroTime as the API server writes it."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Acquire, renew and release one Lease for ``identity``."""

    def __init__(self, client: api_mod.Api, name: str, identity: str, timing: Timing | None = None, *,
                 wall: Callable[[], dt.datetime] | None = None, mono: Callable[[], float] = time.monotonic) -> None:
        self.api, self.name, self.identity = client, name, identity
        self.timing = timing or Timing()
        self.wall = wall or (lambda: dt.datetime.now(dt.UTC))
        self.mono = mono
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        #: monotonic time of the last successful acquire/renew (None: not leading)
        self.renewed_at: float | None = None
        #: the API server answered the last attempt
        self.api_ok = False
        #: the holder seen by the last attempt ("" none)
        self.holder = ""

    @property
    def leading(self) -> bool:
        return self.renewed_at is not None and self.mono() - self.renewed_at < self.timing.renew_deadline

    def _spec(self, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = _micro(self.wall())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.timing.duration)),
                "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """One attempt (blocking): True while this identity holds the Lease."""
        try:
            held = self._attempt()
            self.api_ok = True
        except api_mod.ApiError as exc:
            self.api_ok = exc.status != 0
            log.warning("lease %s: %s", self.name, exc)
            held = False
        if held:
            self.renewed_at = self.mono()
        return held

    def _attempt(self) -> bool:
        lease = self.api.get_lease(self.name)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.api.namespace},
                    "spec": self._spec(0, None)}
            try:
                self.api.create_lease(body)
            except api_mod.ApiError as exc:
                if exc.status == 409:  # another replica created it first
                    return False
                raise
            log.info("lease %s acquired by %s (created)", self.name, self.identity)
            self.holder = self.identity
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self.holder = holder
        record = ((lease.get("metadata") or {}).get("resourceVersion"), holder, spec.get("renewTime"),
                  spec.get("leaseTransitions"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.mono()
        duration = float(spec.get("leaseDurationSeconds") or self.timing.duration)
        mine = holder == self.identity
        if holder and not mine and self.mono() - self._observed_at < duration:
            return False  # held by a live replica
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {**{k: v for k, v in (lease.get("metadata") or {}).items()
                                if k in ("name", "namespace", "resourceVersion", "labels", "annotations")}},
                "spec": self._spec(transitions, spec.get("acquireTime") if mine else None)}
        try:
            self.api.update_lease(self.name, body)
        except api_mod.ApiError as exc:
            if exc.status == 409:  # someone wrote it since we read it
                return False
            raise
        if not mine:
            log.info("lease %s acquired by %s (was %r)", self.name, self.identity, holder or None)
        self.holder = self.identity
        return True

    def release(self) -> None:
        """Give the Lease up (blocking; only if still ours): a standby takes it at once."""
        if self.renewed_at is None:
            return
        self.renewed_at = None
        try:
            lease = self.api.get_lease(self.name)
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            meta = {k: v for k, v in (lease.get("metadata") or {}).items()
                    if k in ("name", "namespace", "resourceVersion")}
            self.api.update_lease(self.name, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                         "renewTime": _micro(self.wall())}})
            log.info("lease %s released by %s", self.name, self.identity)
        except api_mod.ApiError as exc:
            log.warning("releasing lease %s: %s", self.name, exc)

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this identity holds the Lease (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            if await asyncio.to_thread(self.try_acquire_or_renew):
                return True
            await _wait(stop, self.timing.retry)
        return False

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew every ``retry`` seconds; return when leadership is lost (could not
        renew within ``renew_deadline``, or another holder) or ``stop`` is set."""
        while not stop.is_set():
            await _wait(stop, self.timing.retry)
            if stop.is_set():
                return
            held = await asyncio.to_thread(self.try_acquire_or_renew)
            if not held and (self.holder not in ("", self.identity) or not self.leading):
                log.error("lease %s lost by %s", self.name, self.identity)
                self.renewed_at = None
                return


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop``, without making a task (kopf cancels the
    tasks created while it runs when it stops)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(min(0.05, max(deadline - time.monotonic(), 0.0)))
