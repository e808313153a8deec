"""The embedded state store: what tenantctl remembers between two reconciliations.

Belongs here: the SQLite file (stdlib ``sqlite3``, WAL mode while written) and its
schema (``migrations``), the typed records read from and written to it (``records``),
the ``Store`` that owns the connection (``store``), the append-only audit log and its
runs (``events``, OPS-5), the checks that a file is a whole tenantctl store
(``integrity``), the locks around opening and replacing it (``locks``), and its copies
(``backup``: online backup, nightly copy, restore). Everything stored is either a fact the controller cannot recompute
from the desired state (placement of a subscription, customer values kept under SYNC-4,
values frozen by a transfer under PLAN-7, measured usage under RES-2) or bookkeeping
that must survive a restart (fingerprints of what was last applied, conditions, backoff
state, the status snapshot read by ``tenantctl status``).

Does not belong here: deciding anything. This package stores and returns values as it
was given them; effective specs, placement and sync states are computed elsewhere. It
imports nothing from tenantctl but ``controller.errors``.

Usage, importing modules rather than names::

    from controller.state import events, store

    with store.Store(store.default_path()) as st:
        with st.transaction():
            st.set_fingerprints(name, fps)
            events.record(st, actor="controller", action="apply", subject=name, message="...")
"""

from __future__ import annotations

from controller.state.errors import CorruptStore, NotAStore, ReadOnlyStore, SchemaTooNew, StoreInUse
from controller.state.records import (
    BackoffRecord,
    Condition,
    ConditionStatus,
    Event,
    Run,
    SubscriptionRecord,
    TransferRecord,
)
from controller.state.store import Store, default_path

__all__ = [
    "BackoffRecord",
    "Condition",
    "ConditionStatus",
    "CorruptStore",
    "Event",
    "NotAStore",
    "ReadOnlyStore",
    "Run",
    "SchemaTooNew",
    "Store",
    "StoreInUse",
    "SubscriptionRecord",
    "TransferRecord",
    "default_path",
]
