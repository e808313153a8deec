"""Moves of subscriptions between servers in progress (schema v8; issue 13 item 2).

A row per moving subscription: its source and target servers, the last step done (a
re-run resumes after it) and, once switched, the end of its substitute period (DNS-4).
The planner places a subscription on its move's target server (``targets``).
"""

from __future__ import annotations

from controller.state import store as state_store

Store = state_store.Store


def targets(store: Store | None) -> dict[str, str]:
    """Subscription -> the server its move in progress places it on."""
    if store is None:
        return {}
    return {s: t for s, t in store._fetchall("SELECT subscription, target_server FROM subscription_moves")}


def steps(store: Store | None) -> dict[str, str]:
    """Subscription -> the last step its move did."""
    if store is None:
        return {}
    return {s: st for s, st in store._fetchall("SELECT subscription, step FROM subscription_moves")}
