"""Typed, immutable records read from and written to the state store.

Plain frozen dataclasses, no I/O. Datetimes are timezone-aware (UTC when read back);
dict fields hold JSON-compatible values.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from typing import Any, Literal, NamedTuple, get_args

ConditionStatus = Literal["True", "False", "Unknown"]
CONDITION_STATUSES: frozenset[str] = frozenset(get_args(ConditionStatus))


def _require_aware(owner: str, field: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{owner}.{field} must be timezone-aware, got naive {value.isoformat()}")


@dataclasses.dataclass(frozen=True)
class SubscriptionRecord:
    """What the store remembers of one subscription, for as long as it is known.

    One row per subscription ever known: a deleted subscription keeps its row, with
    ``deleted_at`` set and ``purge_after`` 60 days later (LIFE-6). Placement is sticky:
    a subscription is bound to one IP address for life (§1), so ``server``/``ip`` are
    recorded once chosen and not recomputed.
    """

    name: str
    """The subscription's domain, ASCII (punycode) form (PLAN-1)."""
    customer: str
    """The owning customer."""
    created_at: datetime
    """When the controller first saw it."""
    server: str | None = None
    """The web server it was placed on; None until placed."""
    ip: str | None = None
    """The IP address it is bound to; None until placed."""
    db_servers: dict[str, str] = dataclasses.field(default_factory=dict)
    """Database name -> server hosting it."""
    deleted_at: datetime | None = None
    """When it left the desired state; None while it exists."""
    purge_after: datetime | None = None
    """When its retained data may be purged (LIFE-6); None while it exists."""

    def __post_init__(self) -> None:
        for field in ("created_at", "deleted_at", "purge_after"):
            _require_aware("SubscriptionRecord", field, getattr(self, field))


@dataclasses.dataclass(frozen=True)
class TransferRecord:
    """A subscription transferred to another customer keeps its effective values (PLAN-7)."""

    name: str
    """The subscription."""
    from_customer: str
    """The customer it belonged to before the transfer."""
    to_customer: str
    """The customer it belongs to now."""
    at: datetime
    """When the transfer was seen."""
    frozen: dict[str, Any]
    """The effective values at the time of the transfer (JSON), kept as a custom spec."""

    def __post_init__(self) -> None:
        _require_aware("TransferRecord", "at", self.at)


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition of a subscription, cert-manager style: one concern owns one type."""

    type: str
    """E.g. ``Ready``, ``WebReady``, ``DNSReady``."""
    status: ConditionStatus
    """``"True"``, ``"False"`` or ``"Unknown"``."""
    reason: str = ""
    """CamelCase machine-readable reason."""
    message: str = ""
    """Human-readable detail."""
    last_transition: datetime | None = None
    """When ``status`` last changed. The store sets it; a value given on write is used
    only if the status flips."""

    def __post_init__(self) -> None:
        if self.status not in CONDITION_STATUSES:
            raise ValueError(f"condition status must be one of True/False/Unknown, got {self.status!r}")
        _require_aware("Condition", "last_transition", self.last_transition)


@dataclasses.dataclass(frozen=True)
class BackoffRecord:
    """Failures of one work item, kept in the store so a restart does not reset them."""

    key: str
    """The work item, e.g. a subscription name or ``"<name>/dns"``."""
    failures: int
    """Consecutive failures since the last success."""
    next_attempt: datetime
    """Do not retry before this time."""
    last_error: str
    """The last error, as text."""
    fingerprint: str | None = None
    """The fingerprint of the inputs that failed, if known: new inputs are tried at once."""
    permanent: bool = False
    """Retrying will not help until the inputs change (``errors.PermanentError``)."""


@dataclasses.dataclass(frozen=True)
class Event:
    """One entry of the append-only audit log (OPS-5)."""

    id: int
    """Monotonic id; ``list_events(since_id=...)`` pages on it."""
    at: datetime
    """When it was recorded."""
    actor: str
    """Who acted: ``operator``, ``controller``, ``billing``, ..."""
    action: str
    """What was done, e.g. ``apply``, ``suspend``, ``transfer``."""
    subject: str
    """What it was done to, usually a subscription name."""
    message: str
    """Human-readable summary."""
    data: dict[str, Any] | None
    """Optional structured detail (JSON)."""
    concern: str | None = None
    """The concern it was about (``web``, ``php``, ``db``, ``dns``, ``tls``, ``backup``), if one."""
    run_id: int | None = None
    """The run (pass) that recorded it, if any (``Store.begin_run``)."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One pass of apply, run or the operator (OPS-5): an unfinished one was interrupted."""

    id: int
    """Monotonic id, referenced by ``Event.run_id``."""
    actor: str
    """Who ran it: ``operator``, ``run``, ``cli:<user>``, ..."""
    command: str
    """What was run, e.g. ``apply`` or ``run``."""
    started_at: datetime
    """When it began."""
    finished_at: datetime | None
    """When it ended; None while running, and forever for a pass that was killed."""
    summary: dict[str, Any] | None
    """What it did (counts of changes, failures, ...), recorded when it finished."""

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class LiveRow(NamedTuple):
    """A live subscription as planning reads it (``Store.live_rows``)."""

    name: str
    customer: str
    created: date
    """The day the controller first saw it."""
    server: str | None
    ip: str | None
    db_servers: dict[str, str]


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """What a status or plan table shows of one recorded status document (read by SQLite's
    JSON functions, without decoding the document): ``Store.status_rows``."""

    name: str
    customer: str | None
    plan: str | None
    server: str | None
    ip: str | None
    state: str | None
    state_reason: str | None
    sync: str | None
    concerns: dict[str, str]
    conflicts: list[dict[str, Any]]
    created_at: datetime | None
    """When the controller first saw the subscription (its AGE)."""
