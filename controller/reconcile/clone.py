"""The clone primitive of sandboxes (PLAT-2 test copies, PLAT-3 demos): subscription T's
web space and databases filled from a backup of subscription S (S may be T) so that
afterwards they hold exactly the backup's content.

The reference is a subscription (its newest backup: every part's newest snapshot) or
``snapshot:<id>`` (the backup run that took that snapshot: every part's snapshot at or
before its time). The snapshots are chosen by ``drivers.backup.restore.clone`` (S's
database NAME into T's database NAME, S's home into T's home), restored by the backup
agent's exact restore (``restore`` op, parts marked ``exact``) on the servers holding T,
reading the repository of the server that took them. T's settings, certificate, users
and DNS stay T's own: the engine keeps those.

One fill of T at a time, whoever asks (``tenantctl run``'s demo scheduler, the
operator's, ``demo reset``, ``copy refresh``): a work lock per target in the state
directory (``state.locks.exclusive``); a second one asked meanwhile fails at once with
``Busy`` (``state.errors``), nothing changed, nothing recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller import errors
from controller.model import kinds
from controller.state import errors as state_errors
from controller.state import locks
from controller.state import store as state_store

#: raised by ``clone`` while another process fills the same target
Busy = state_errors.Busy


class CloneFailed(errors.PermanentError):
    """The clone could not be made (no backup to clone from, a part failed)."""


@dataclass(frozen=True)
class Reference:
    """What a clone is made from: a subscription's newest backup, or a pinned snapshot."""

    subscription: str | None
    snapshot: str | None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """``snapshot:<id>`` or a subscription's domain (as ``spec.demo.resetFrom`` holds them)."""
        m = kinds.SNAPSHOT_REF.fullmatch(text)
        if m is not None:
            return cls(None, m[1])
        return cls(text, None)

    def __str__(self) -> str:
        return f"snapshot:{self.snapshot}" if self.snapshot else str(self.subscription)


@dataclass(frozen=True)
class Cloned:
    target: str
    source: str
    region: str
    #: the snapshot ids restored
    snapshots: tuple[str, ...]
    #: the parts restored (``files:webspace``, ``db:NAME``)
    restored: tuple[str, ...]
    #: the target's parts the backup had nothing for
    missing: tuple[str, ...]
    seconds: float


def choose(store: state_store.Store, topo: Any, target: str, ref: Reference) -> tuple[str, Any]:
    """The source subscription and the ``restore.Choice`` filling ``target`` from ``ref``."""
    from controller.drivers.backup import restore
    from controller.state import backups as ledger

    item = store.get_status_of(target)
    if item is None or item.get("state") == "deleted":
        raise CloneFailed(f"{target} has no status: apply it first")
    try:
        if ref.snapshot is not None:
            pin = restore.pinned(ledger.snapshots(store), ref.snapshot)
            source, at = pin.subscription, pin.taken_at
        else:
            assert ref.subscription is not None
            source, at = ref.subscription, None
        return source, restore.clone(topo, ledger.snapshots(store, source), source, item, at=at)
    except restore.NothingToRestore as exc:
        raise CloneFailed(str(exc)) from exc


def clone(store: state_store.Store, pool: Any, target: str, ref: Reference) -> Cloned:
    """Fill ``target`` from ``ref``, exactly (``pool``: a ``transport.Pool`` of the
    desired state's servers). ``CloneFailed`` names every part that failed."""
    from controller.drivers import naming
    from controller.drivers.backup import restore, topology

    started = time.monotonic()
    with locks.exclusive(lock_path(store, target), f"a reset or refresh of {target}"):
        topo = topology.Topology.of(pool.ctx)
        source, choice = choose(store, topo, target, ref)
        results = restore.restore(topo, pool, target, choice)
    bad = [f"{r.kind} {r.name}: {r.error}" for r in results if not r.ok]
    if bad:
        raise CloneFailed(f"{target} from {ref}: " + "; ".join(bad))
    names = {naming.database(target, d["name"]): d["name"]
             for d in ((store.get_status_of(target) or {}).get("effective") or {}).get("databases") or []}
    return Cloned(target, source, choice.region, tuple(sorted({s.id for s in choice.snapshots})),
                  tuple(sorted(f"{r.kind}:{names.get(r.name, r.name)}" for r in results)), tuple(choice.missing),
                  round(time.monotonic() - started, 3))


def lock_path(store: state_store.Store, target: str) -> Path:
    """The work lock of filling ``target`` (a subscription's name: a domain, safe as a
    file name) in the state directory."""
    return store.path.parent / "locks" / f"sandbox-{target}.lock"
