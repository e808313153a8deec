"""Region evacuations and subscription generations (schema v5; issue 10, DR-1).

An evacuation ``R -> R2`` places every subscription whose document says region R in
R2 instead, until it is ended: the documents stay as written (they describe the
business), the state store says where reality had to go. A subscription's generation
grows by one each time an evacuation moves it; what a mover writes for it carries the
generation, so a copy of an older generation (the stale servers of a region that came
back) is recognisable and never taken for the primary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from controller.state import codec
from controller.state import store as state_store

Store = state_store.Store


@dataclass(frozen=True)
class Evacuation:
    region: str
    target: str
    started_at: datetime


def evacuations(store: Store) -> dict[str, Evacuation]:
    """Evacuations in force, by evacuated region."""
    rows = store._fetchall("SELECT region, target, started_at FROM region_evacuations ORDER BY region")
    return {r: Evacuation(r, t, codec.text_to_dt(at)) for r, t, at in rows}


def targets(store: Store | None) -> dict[str, str]:
    """Evacuated region -> the region its subscriptions are placed in."""
    return {} if store is None else {r: e.target for r, e in evacuations(store).items()}


def start(store: Store, region: str, target: str, at: datetime) -> None:
    """Record (or re-point) the evacuation of ``region`` to ``target``."""
    with store.transaction():
        store._execute("INSERT INTO region_evacuations (region, target, started_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (region) DO UPDATE SET target = excluded.target",
                       (region, target, codec.dt_to_text(at)))


def end(store: Store, region: str) -> bool:
    """Stop evacuating ``region`` (its subscriptions stay where they are until moved)."""
    with store.transaction():
        cur = store._execute("DELETE FROM region_evacuations WHERE region = ?", (region,))
    return cur.rowcount > 0


def generations(store: Store) -> dict[str, int]:
    return {s: int(g) for s, g in store._fetchall("SELECT subscription, generation FROM subscription_generations")}


def generation(store: Store, subscription: str) -> int:
    """1 for a subscription never moved."""
    row = store._fetchone("SELECT generation FROM subscription_generations WHERE subscription = ?", (subscription,))
    return int(row[0]) if row else 1


def bump(store: Store, subscriptions: Iterable[str]) -> dict[str, int]:
    """The next generation of each subscription (recorded): it is moving."""
    out: dict[str, int] = {}
    with store.transaction():
        for sub in subscriptions:
            store._execute("INSERT INTO subscription_generations (subscription, generation) VALUES (?, 2) "
                           "ON CONFLICT (subscription) DO UPDATE SET generation = generation + 1", (sub,))
            out[sub] = generation(store, sub)
    return out
