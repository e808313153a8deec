"""The reconcile engine: plan, then apply per concern in one batch per server.

``plan`` is pure over the store's snapshot; ``apply`` writes what it decided, calls the
drivers, records fingerprints of what was applied, conditions, events and status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from controller.drivers import base
from controller.model.desired import DesiredState
from controller.reconcile import planner
from controller.state import store as state_store

RETENTION_DAYS = 60  # LIFE-6


def default_drivers() -> dict[str, base.Driver]:
    """The driver of every concern; ``NotProvisioned`` until a concern has its own."""
    return {c: base.NotProvisioned(c) for c in base.CONCERNS}


def plan(
    ds: DesiredState,
    now: dt.datetime,
    store: state_store.Store | None,
    drivers: Mapping[str, base.Driver] | None = None,
) -> planner.Planned:
    return planner.plan(ds, now, drivers if drivers is not None else default_drivers(), store)
