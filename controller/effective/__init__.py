"""Effective specs: plans + add-ons + customisations + permissions -> what each
subscription should be, its sync state (SYNC-1..4), conflicts (SYNC-3) and lifecycle
state (LIFE-3, LIFE-4, RES-2).

Belongs here: pure decisions over the desired state and a read-only ``History``.
Not here: reading files or the state store, talking to servers.
"""

from controller.effective.compute import Subscription, compute
from controller.effective.history import EMPTY, Changes, History

__all__ = ["EMPTY", "Changes", "History", "Subscription", "compute"]
