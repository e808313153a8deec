"""The driver interface: one driver per concern (web, php, db, dns, tls, backup).

A driver owns one condition on the subscription (``<Concern>Ready``, cert-manager
style) and one slice of the effective spec. The engine hands it one batch per server
(one apply, one reload per server) of ``Change``s whose slice fingerprint moved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from controller.drivers import slices
from controller.effective import spec

CONCERNS = ("web", "php", "db", "dns", "tls", "backup")

Action = Literal["ensure", "suspend", "delete"]
Outcome = Literal["provisioned", "not provisioned", "failed"]


S = TypeVar("S", covariant=True)


@dataclass(frozen=True)
class Change(Generic[S]):
    """One subscription's slice for one concern, and what to do with it: a driver types
    its changes with its own slice (``Change[slices.Web]``, ...), so that mypy checks
    what it reads. A ``delete`` change carries only ``{"name": ...}``."""

    name: str
    action: Action
    slice: S


@dataclass(frozen=True)
class Result:
    name: str
    outcome: Outcome
    message: str = ""
    #: a retry hint in seconds for temporary failures (the engine waits at least this)
    retry_after: float | None = None
    #: a permanent failure: retrying will not help until the inputs change (or an
    #: operator's ``apply --retry-now``); the engine does not retry it on a timer
    permanent: bool = False
    #: a failure that still left what dependent concerns need in place (a zone served by
    #: its new primary while a lost region's secondary is missing): retried like any
    #: failure, but the concerns that wait for this one go ahead in the same pass
    degraded: bool = False


class Driver(Protocol):
    """What the engine needs of a concern's driver."""

    concern: str

    def slice(self, item: spec.Item) -> slices.Slice:
        """The part of a subscription's typed item this concern acts on (fingerprinted):
        one of the ``slices`` builders, or a driver's own on top of one."""
        ...

    def apply(self, server: str | None, changes: Sequence[Change[Any]]) -> list[Result]:
        """Make ``changes`` real on ``server`` in one batch; one result per change."""
        ...


@runtime_checkable
class DriftAware(Protocol):
    """A driver that can tell what was changed or lost on a server since it applied."""

    def drifted(self, server: str | None, changes: Sequence[Change[Any]]) -> dict[str, str]:
        """For each change (the current desired slice), whether the server still has it:
        returns ``{name: what differs}`` for those that drifted, in one round trip per
        server (no process per subscription)."""
        ...


class Limiter(Protocol):
    """What drivers need of ``controller.ratelimit.RateLimits``: one token of a
    dependency's bucket, waiting at most ``timeout`` seconds."""

    def acquire(self, dep: str, timeout: float) -> bool: ...


@runtime_checkable
class RateLimited(Protocol):
    """A driver that calls a rate-limited external service: it shares the engine's
    ``RateLimits`` (one token bucket per dependency)."""

    def use_limits(self, limits: Limiter) -> None: ...


@runtime_checkable
class Measuring(Protocol):
    """A driver that measures usage (RES-2): ``usage`` on demand, one round trip per
    server; ``last_usage`` what its last ``apply`` measured on the way."""

    last_usage: dict[str, dict[str, Any]]

    def usage(self, changes: Sequence[Change[Any]]) -> dict[str, dict[str, Any]]: ...


@runtime_checkable
class Closeable(Protocol):
    """A driver holding connections or processes: the engine closes it when done."""

    def close(self) -> None: ...


@runtime_checkable
class UsesStore(Protocol):
    """A driver that records in the state store beyond its result (the backup ledger):
    the engine hands it its store."""

    def use_store(self, store: Any) -> None: ...


@runtime_checkable
class Purging(Protocol):
    """A driver keeping a deleted subscription's data beyond the deletion (LIFE-6): the
    engine asks it to purge once the retention is over (raises to try again later)."""

    def purge(self, name: str) -> None: ...


@runtime_checkable
class BacksUpNow(Protocol):
    """The backup driver: a backup of some subscriptions now, outside their schedule (a
    major-version migration takes one first, PLAT-4: ``reconcile.migration``)."""

    def has_repository(self, server: str) -> bool: ...

    def backup_now(self, items: Sequence[Mapping[str, Any]], now: dt.datetime) -> Mapping[str, str | None]: ...


@runtime_checkable
class GivesAccess(Protocol):
    """The web driver: the status' ``access`` object of a subscription (issue 14)."""

    def access(self, item: spec.Item) -> dict[str, str]: ...


@runtime_checkable
class ServesDns(Protocol):
    """The dns driver: ``ip:port`` of every DNS server serving a subscription's zone."""

    def dns_servers(self, item: spec.Item) -> Sequence[str]: ...


@runtime_checkable
class OwnServers(Protocol):
    """A driver that acts on servers of its own (the dns servers of a zone), whatever
    the subscription's server: the engine hands it one batch per pass (one listing of
    its servers), not one per subscription server."""

    one_batch_per_pass: bool


#: the message of a result whose driver found everything in place and sent nothing: the
#: engine writes no event for it and leaves a ready condition as it was, so that a forced
#: re-apply of unchanged subscriptions (``apply --force``) writes nothing but its run
UP_TO_DATE = "up to date"


@runtime_checkable
class Versioned(Protocol):
    """A driver that names exactly what makes its version: the files (or folders, read
    recursively) of the code and templates that decide what it writes on servers. A
    change of any of them re-applies this concern, and only this one."""

    def sources(self) -> Sequence[Path]: ...


SLICES: dict[str, Callable[[spec.Item], slices.Slice]] = {
    "web": slices.web, "php": slices.php, "db": slices.db, "dns": slices.dns, "tls": slices.tls,
    "backup": slices.backup,
}


class NotProvisioned:
    """Stands in for a concern whose driver does not exist yet: it changes nothing and
    says so ("not provisioned" in status), it never pretends."""

    def __init__(self, concern: str) -> None:
        self.concern = concern

    def sources(self) -> Sequence[Path]:
        return [Path(__file__)]

    def slice(self, item: spec.Item) -> slices.Slice:
        return SLICES[self.concern](item)

    def apply(self, server: str | None, changes: Sequence[Change[Any]]) -> list[Result]:
        return [Result(c.name, "not provisioned", f"no {self.concern} driver yet") for c in changes]
