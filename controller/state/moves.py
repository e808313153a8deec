"""Moves of subscriptions between servers in progress (schema v8; issue 13 item 2).

A row per moving subscription: its source and target servers, the last step done (a
re-run resumes after it) and, once switched, the end of its substitute period (DNS-4).
The planner places a subscription on its move's target server (``targets``) from the
step ``placing`` on; before it, the subscription stays where it is recorded. The row is
dropped once the source is removed (the event log keeps the whole move).

Two steps stand outside ``STEPS``' order (the column is text, no schema change):
``scheduled`` (OPS-2: a move recorded outside the maintenance window, started by
``tenantctl run`` once it opens; nothing done yet) and ``aborting`` (``tenantctl move
--abort`` undoing a move before its switch: the planner places the subscription back on
the source, DNS keeps the source's address). An aborted move's row is dropped, like a
finished one's (the event ``aborted`` journals it).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from controller.state import codec
from controller.state import store as state_store

Store = state_store.Store

#: The steps of a move, in order (``controller.reconcile.move`` does them); the row says
#: the last one done.
STEPS = ("started", "frozen", "backed-up", "placing", "placed", "restored", "verified", "switching",
         "switched", "removed")
#: From this step on, the planner places the subscription on the target server.
PLACED_FROM = "placing"
#: A move waiting for the maintenance window (OPS-2): recorded, nothing done yet.
SCHEDULED = "scheduled"
#: A move being undone (``--abort``): the planner places the subscription on the source.
ABORTING = "aborting"
#: Every value the ``step`` column takes, in the order a report lists them.
ALL_STEPS = (SCHEDULED, *STEPS, ABORTING)
#: From this step on a move can no longer be aborted: the target serves (a move back
#: is the way back).
SWITCH_FROM = "switching"


def done_index(step: str) -> int:
    """The position of ``step`` in ``STEPS`` (an unknown step: -1, nothing done)."""
    return STEPS.index(step) if step in STEPS else -1


@dataclass(frozen=True)
class Move:
    subscription: str
    source: str
    target: str
    step: str
    started_at: dt.datetime
    updated_at: dt.datetime
    actor: str
    substitute_until: dt.datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def placed(self) -> bool:
        """The planner places it on the target (``PLACED_FROM`` done or being done)."""
        return done_index(self.step) >= STEPS.index(PLACED_FROM)

    def done(self, step: str) -> bool:
        return done_index(self.step) >= STEPS.index(step)


_COLUMNS = "subscription, source_server, target_server, step, started_at, updated_at, actor, substitute_until, data"


def _move(row: tuple[Any, ...]) -> Move:
    sub, src, dst, step, started, updated, actor, until, data = row
    return Move(sub, src, dst, step, codec.text_to_dt(started), codec.text_to_dt(updated), actor,
                codec.text_to_dt(until) if until else None, json.loads(data or "{}"))


def all_moves(store: Store | None) -> dict[str, Move]:
    """Every move in progress (or in its substitute period), by subscription."""
    if store is None:
        return {}
    return {m.subscription: m for m in map(_move, store._fetchall(
        f"SELECT {_COLUMNS} FROM subscription_moves ORDER BY subscription"))}


def get(store: Store, subscription: str) -> Move | None:
    row = store._fetchone(f"SELECT {_COLUMNS} FROM subscription_moves WHERE subscription = ?", (subscription,))
    return _move(row) if row else None


def targets(store: Store | None) -> dict[str, str]:
    """Subscription -> the server its move places it on (from ``PLACED_FROM`` on; an
    aborting move: back on its source)."""
    if store is None:
        return {}
    placed = STEPS[STEPS.index(PLACED_FROM):]
    marks = ", ".join("?" for _ in placed)
    return {s: (src if step == ABORTING else t) for s, src, t, step in store._fetchall(
        "SELECT subscription, source_server, target_server, step FROM subscription_moves "
        f"WHERE step IN ({marks}, ?)", (*placed, ABORTING))}


def steps(store: Store | None) -> dict[str, str]:
    """Subscription -> the last step its move did."""
    if store is None:
        return {}
    return {s: st for s, st in store._fetchall("SELECT subscription, step FROM subscription_moves")}


def start(store: Store, subscription: str, source: str, target: str, actor: str, at: dt.datetime,
          data: dict[str, Any] | None = None, *, step: str = "started") -> Move:
    """Record a new move at step ``started`` (or ``SCHEDULED``: it waits for the
    maintenance window); the caller checked none is in progress."""
    if step not in ("started", SCHEDULED):
        raise ValueError(f"a move starts at started or {SCHEDULED}, not {step!r}")
    now = codec.dt_to_text(at)
    with store.transaction():
        store._execute(f"INSERT INTO subscription_moves ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                       (subscription, source, target, step, now, now, actor, json.dumps(data or {}, sort_keys=True)))
    found = get(store, subscription)
    assert found is not None
    return found


def advance(store: Store, subscription: str, step: str, at: dt.datetime, *, data: dict[str, Any] | None = None,
            substitute_until: dt.datetime | None = None) -> Move:
    """Record ``step`` as done, merging ``data`` into what the move recorded."""
    if step not in ALL_STEPS:
        raise ValueError(f"unknown move step {step!r}")
    old = get(store, subscription)
    if old is None:
        raise KeyError(subscription)
    merged = {**old.data, **(data or {})}
    until = substitute_until or old.substitute_until
    with store.transaction():
        store._execute("UPDATE subscription_moves SET step = ?, updated_at = ?, data = ?, substitute_until = ? "
                       "WHERE subscription = ?",
                       (step, codec.dt_to_text(at), json.dumps(merged, sort_keys=True),
                        codec.dt_to_text(until) if until else None, subscription))
    found = get(store, subscription)
    assert found is not None
    return found


def finish(store: Store, subscription: str) -> None:
    """Drop the row (the source is removed: the move is over)."""
    with store.transaction():
        store._execute("DELETE FROM subscription_moves WHERE subscription = ?", (subscription,))


def due(store: Store, now: dt.datetime) -> list[Move]:
    """Switched moves whose substitute period (DNS-4) is over: their source is removed next."""
    return [m for m in all_moves(store).values()
            if m.step == "switched" and m.substitute_until is not None and m.substitute_until <= now]


#: Steps during which DNS keeps the source's address (the target is placed but not yet
#: restored and verified): from ``switching`` on, it names the target's.
SUBSTITUTE_DNS = ("placing", "placed", "restored", "verified", ABORTING)


def substitutes(store: Store | None) -> dict[str, str]:
    """Subscription -> the source's address its DNS records keep while its move is
    placed but not switched (``SUBSTITUTE_DNS``; the address recorded at its start)."""
    return {m.subscription: str(m.data["sourceIp"]) for m in all_moves(store).values()
            if m.step in SUBSTITUTE_DNS and m.data.get("sourceIp")}


#: Steps during which the source's databases are frozen (read-only) where the planner
#: still places them: a pass over the subscription must not grant writes again.
FROZEN = ("frozen", "backed-up")


#: the type of the condition ``status`` shows for a subscription with a move
CONDITION = "Moving"


def describe(mv: Move) -> dict[str, str] | None:
    """The ``Moving`` condition of a move outside ``STEPS``' order (``SCHEDULED``,
    ``ABORTING``), else None (``status.merge_move`` words the others)."""
    if mv.step == SCHEDULED:
        return {"type": CONDITION, "status": "True", "reason": SCHEDULED,
                "message": f"a move from {mv.source} to {mv.target} waits for "
                           f"{mv.data.get('waitsFor', 'the maintenance window')} (OPS-2; `tenantctl run` starts it "
                           f"then, `tenantctl move {mv.subscription} --to {mv.target} --now` now)"}
    if mv.step == ABORTING:
        return {"type": CONDITION, "status": "True", "reason": ABORTING,
                "message": f"the move from {mv.source} to {mv.target} is being aborted (from step "
                           f"{mv.data.get('abortFrom')}; `tenantctl move {mv.subscription} --abort` resumes)"}
    return None


def scheduled(store: Store | None) -> list[Move]:
    """Moves waiting for their maintenance window (OPS-2)."""
    return [m for m in all_moves(store).values() if m.step == SCHEDULED]


def counts(store: Store | None) -> dict[str, int]:
    """Moves by their current step, every value of ``ALL_STEPS`` present (0: none)."""
    out = dict.fromkeys(ALL_STEPS, 0)
    if store is None:
        return out
    for step, n in store._fetchall("SELECT step, COUNT(*) FROM subscription_moves GROUP BY step"):
        out[step] = out.get(step, 0) + int(n)
    return out


def ages(store: Store | None, now: dt.datetime) -> dict[str, float]:
    """Step -> the longest time (seconds) a move has been at it (since its last step was
    recorded), every value of ``ALL_STEPS`` present (0: no move at it)."""
    out = dict.fromkeys(ALL_STEPS, 0.0)
    for m in all_moves(store).values():
        out[m.step] = max(out.get(m.step, 0.0), max(0.0, (now - m.updated_at).total_seconds()))
    return out


def frozen(store: Store | None) -> frozenset[str]:
    """Subscriptions whose databases a move keeps read-only on their current server."""
    return frozenset(m.subscription for m in all_moves(store).values() if m.step in FROZEN)
