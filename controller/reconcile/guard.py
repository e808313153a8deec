"""The mass-deletion guard (issue 7 point 4): a pure decision.

A truncated but valid file, or a file that disappeared, makes every subscription it
held look deleted. A pass that would delete more than a threshold is *held*: ``plan``
says so, ``apply`` refuses without ``--allow-mass-delete``, ``run`` keeps the
subscriptions (event, ``DeletionHeld`` condition, metric, alert) until a person
confirms by running ``apply --allow-mass-delete``. One deletion is never held: that
is the ordinary way to delete a subscription.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Threshold:
    """Deleting more than ``count`` subscriptions, or more than ``percent`` % of the
    live ones, in one pass is held."""

    count: int = 5
    percent: float = 10.0

    def limit(self, live: int) -> int:
        """The most deletions a pass may make without confirmation (at least 1)."""
        by_share = math.floor(live * self.percent / 100.0)
        return max(1, min(self.count, by_share))


@dataclass(frozen=True)
class Decision:
    deletions: tuple[str, ...]
    held: bool
    limit: int

    @property
    def message(self) -> str:
        return (f"{len(self.deletions)} deletions held: more than {self.limit} in one pass "
                "(confirm with `tenantctl apply --allow-mass-delete`; under the operator, annotate each "
                "deleted Subscription tenantctl.io/confirm-deletion=true)")


def decide(deletions: list[str], live: int, threshold: Threshold, *, allowed: bool) -> Decision:
    """``live``: subscriptions the store knows and has not deleted (before this pass)."""
    limit = threshold.limit(live)
    held = len(deletions) > limit and not allowed
    return Decision(tuple(deletions), held, limit)
