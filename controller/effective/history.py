"""What the effective computation needs to remember between runs.

A read-only snapshot, built by ``reconcile`` from the state store (one query per
table), so that ``effective`` stays pure. ``Changes`` lists what a computation wants
recorded; ``plan`` shows them, ``apply`` writes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.placement import Recorded

LOCK = "lock"  # sticky group holding a locked subscription's plan-derived spec (SYNC-2)


@dataclass(frozen=True)
class History:
    placements: Mapping[str, Recorded] = field(default_factory=dict)
    created: Mapping[str, dt.date] = field(default_factory=dict)
    customers: Mapping[str, str] = field(default_factory=dict)
    #: subscription -> group -> values (permission groups of SYNC-4, and LOCK)
    sticky: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    #: subscription -> frozen effective values after a transfer (PLAN-7)
    transfers: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    #: subscription -> last effective spec shown (to freeze on transfer)
    last_effective: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    usage: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: evacuated region -> the region its subscriptions are placed in (DR-1)
    evacuated: Mapping[str, str] = field(default_factory=dict)
    #: subscription -> the server a move in progress places it on (issue 13; state.moves)
    moves: Mapping[str, str] = field(default_factory=dict)
    #: subscription -> its move's last step done (an input of the plan: each step re-plans it)
    move_steps: Mapping[str, str] = field(default_factory=dict)
    #: region -> its announced emergency maintenance windows, (start, end) UTC (OPS-2)
    emergency: Mapping[str, tuple[tuple[dt.datetime, dt.datetime], ...]] = field(default_factory=dict)


EMPTY = History()


@dataclass
class Changes:
    """Records a computation asks to persist for one subscription."""

    sticky_set: dict[str, dict[str, Any]] = field(default_factory=dict)
    sticky_drop: list[str] = field(default_factory=list)
    transfer: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.sticky_set or self.sticky_drop or self.transfer is not None)
