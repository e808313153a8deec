"""Moves of a subscription to another server (issue 13 item 2): ``tenantctl move SUB --to S``.

A journaled sequence of idempotent steps (``state.moves.STEPS``), each recorded in the
state store with an event once done: a re-run resumes after the last step done, and a
crash anywhere (before a step is recorded, its work is redone, each step's work being
idempotent) then a re-run converges with every step recorded once.

1. ``started``: the checks passed (``check``: nothing changed when one fails).
2. ``frozen``: the source's databases are made read-only (MariaDB: SELECT only;
   PostgreSQL: owned by a NOLOGIN holder role, the login keeping reads: ``driver.freeze``)
   and their sessions ended, so that no write committed after the next step's backup is
   lost. Files are not frozen.
3. ``backed-up``: a fresh backup of the subscription (BKP: the source stays untouched
   until the end), its snapshots found in the ledger.
4. ``placing`` (generation bumped; from here the planner places it on the target, its
   databases with it) then ``placed``: one engine pass creates user, web space, vhost,
   pool, databases, certificate (the one on file: no new order) on the target; its DNS
   zone keeps the source's address (``state.moves.substitutes``, read by the dns driver).
5. ``restored``: web space and databases restored from that backup (BKP-5; the copy in
   the target's region when there is one), the files given to the target's system user.
6. ``verified``: each table's rows and digest in a backup of the target equal the
   source's backup's, and the web space's files (sha256 of each, logs/ and tmp/ left
   out) read on both servers are equal. Files are not frozen on the source (the site
   serves and writes there until the switch): when only the files differ, a files-only
   backup of the source is restored on the target (files the source no longer has are
   deleted there) and the files compared again, ``FILE_ROUNDS`` times at most
   (``move_live.converge_files``), then the step fails saying which files keep changing.
7. ``switching`` then ``switched``: a pass over the subscription with every concern
   handed to the drivers: DNS names the target's address; the source's vhost forwards
   every request to the target (the substitute, DNS-4, for ``substitute_days``); the
   source's databases stay read-only.
8. ``removed``: once the period is over (``Mover.due``: ``tenantctl move`` again, or
   ``run``), the source's databases (final dump first), web space, vhost and pool (final
   copy first, LIFE-6) are removed; the row is dropped once the document's region is
   the target's (a move across regions keeps placing it there until then).

Outside the steps: a move asked for while a maintenance window is closed (OPS-2) is
recorded ``scheduled`` (``Mover.schedule``) and started by ``tenantctl run`` once the
windows open (``Mover.start_due``, from ``run_due``). ``Mover.abort`` (``tenantctl move
--abort``) undoes a move before its switch: the step ``aborting`` places the subscription
back on the source (generation bumped), the source's databases are writable again, the
target's copy (databases, web space, vhost, pool) is removed through the drivers' delete
path, then the row is dropped with the event ``aborted``; from ``switching`` on it is
refused (the target serves: the way back is a move back). A re-run of an interrupted
abort converges.

The work of each step is an ``Ops`` (``move_live.Live`` on real servers; tests inject
failures with a fake).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller import effective, errors
from controller.model.desired import DesiredState
from controller.reconcile import planner
from controller.state import events, moves, regions
from controller.state import store as state_store

Move = moves.Move
#: DNS-4: a substitute address stays valid for one week
SUBSTITUTE_DAYS = 7.0
#: Steps with work of their own (the others are marks: ``started``, ``placing``, ``switching``).
WORK = ("frozen", "backed-up", "placed", "restored", "verified", "switched", "removed")


class CannotMove(errors.PermanentError):
    """The move asked for cannot start (nothing was changed)."""


class Ops(Protocol):
    """The work of each step; each returns what it measured or chose (recorded in the
    move's ``data``) and raises a ``TenantctlError`` when it could not be done."""

    def freeze(self, mv: Move) -> dict[str, Any]: ...
    def backup(self, mv: Move) -> dict[str, Any]: ...
    def place(self, mv: Move) -> dict[str, Any]: ...
    def restore(self, mv: Move) -> dict[str, Any]: ...
    def verify(self, mv: Move) -> dict[str, Any]: ...
    def switch(self, mv: Move) -> dict[str, Any]: ...
    def remove(self, mv: Move) -> dict[str, Any]: ...
    def abort(self, mv: Move) -> dict[str, Any]: ...


def _work(ops: Ops, step: str) -> Callable[[Move], dict[str, Any]]:
    return {"frozen": ops.freeze, "backed-up": ops.backup, "placed": ops.place, "restored": ops.restore,
            "verified": ops.verify, "switched": ops.switch, "removed": ops.remove}[step]


# --- checks --------------------------------------------------------------------------


def check(ds: DesiredState, store: state_store.Store | None, sub: str, target: str,
          now: dt.datetime | None = None) -> str:
    """The source server of the move of ``sub`` to ``target`` (a move in progress to
    ``target``: its source); ``CannotMove`` says why it cannot start."""
    if sub not in ds.subscriptions:
        raise CannotMove(f"unknown subscription {sub!r}")
    if target not in ds.servers:
        raise CannotMove(f"unknown server {target!r} (servers: {', '.join(sorted(ds.servers))})")
    srv = ds.servers[target]
    if srv.spare:
        raise CannotMove(f"{target} is a spare server (DR-1): nothing is placed on it")
    if "web" not in srv.roles:
        raise CannotMove(f"{target} has no web role: it cannot serve {sub}")
    going = moves.get(store, sub) if store is not None else None
    if going is not None:
        if going.step == moves.ABORTING:
            raise CannotMove(f"the move of {sub} to {going.target} is being aborted: finish that first "
                             f"(tenantctl move {sub} --abort)")
        if going.target != target:
            raise CannotMove(f"{sub} is moving to {going.target} (step {going.step}): finish that move first "
                             f"(tenantctl move {sub} --to {going.target})")
        return going.source
    rec = store.get_subscription(sub) if store is not None else None
    if rec is None or rec.server is None or rec.deleted_at is not None:
        raise CannotMove(f"{sub} is not placed on a server yet: nothing to move (apply places it)")
    if rec.server == target:
        raise CannotMove(f"{sub} is on {target} already")
    pinned = ds.subscriptions[sub].server
    if pinned is not None and pinned != target:
        raise CannotMove(f"spec.server pins {sub} to {pinned}: edit spec.server instead (to {target}, or remove it)")
    conflicts = target_conflicts(ds, store, sub, target, now or dt.datetime.now(dt.UTC))
    if conflicts:
        raise CannotMove(f"{target} cannot provide what {sub} needs (SYNC-3): " + "; ".join(
            f"{c['property']}: plan {c['planValue']}, available {c['availableValue']}" for c in conflicts))
    return rec.server


def waiting(ds: DesiredState, store: state_store.Store | None, source: str, target: str,
            now: dt.datetime) -> str | None:
    """OPS-2: a move interrupts the site's writes (its databases are read-only from the
    freeze to the switch), so a new one starts only while the maintenance window of the
    source's and the target's regions is open (regular or announced emergency, for the
    regions that have one); what it waits for, else None. A move in progress is never
    held: its source is frozen until it ends."""
    from controller.effective import maintenance
    from controller.state import notices

    emergency = notices.windows(store)
    for server in (source, target):
        name = ds.servers[server].region if server in ds.servers else None
        region = ds.regions.get(name) if name is not None else None
        if region is None or name is None:
            continue
        if maintenance.window_open(region, now, emergency=emergency.get(name, ())) is False:
            return f"{name}: {maintenance.next_window(region, now, emergency.get(name, ()))}"
    return None


def target_conflicts(ds: DesiredState, store: state_store.Store | None, sub: str, target: str,
                     now: dt.datetime) -> list[dict[str, Any]]:
    """The SYNC-3 conflicts ``sub`` would have on ``target`` (its placement computed as
    the move will make it)."""
    hist = planner.observe(store).history
    hist = dataclasses.replace(hist, moves={**hist.moves, sub: target})
    item = effective.compute(ds, now, hist, names=[sub])[sub].item
    return list(item.get("conflicts") or [])


# --- the step machine ----------------------------------------------------------------


@dataclass
class Outcome:
    subscription: str
    source: str
    target: str
    step: str
    #: steps done by this run, in order
    done: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    substitute_until: dt.datetime | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class Mover:
    """Runs moves' steps against a store, with ``ops`` doing each step's work."""

    def __init__(self, store: state_store.Store, ops: Ops, *, clock: Callable[[], dt.datetime],
                 actor: str = "controller") -> None:
        self.store = store
        self.ops = ops
        self.clock = clock
        self.actor = actor

    def _event(self, mv: Move, action: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        events.record(self.store, actor=self.actor, action=action, subject=mv.subscription, concern="move",
                      message=message, data={"source": mv.source, "target": mv.target, **(data or {})})

    def _mark(self, mv: Move, step: str, data: dict[str, Any] | None = None,
              substitute_until: dt.datetime | None = None) -> Move:
        """Record ``step`` done and its event, in one transaction (both or neither)."""
        with self.store.transaction():
            if step == moves.PLACED_FROM:  # fencing: what was written for the old placement is stale
                data = {**(data or {}), "generation": regions.bump(self.store, [mv.subscription])[mv.subscription]}
            mv = moves.advance(self.store, mv.subscription, step, self.clock(), data=data,
                               substitute_until=substitute_until)
            self._event(mv, "move", f"move {mv.source} -> {mv.target}: {step}", {"step": step, **(data or {})})
        return mv

    def move(self, ds: DesiredState, sub: str, target: str, *, substitute_days: float = SUBSTITUTE_DAYS,
             check_target: bool = True) -> Outcome:
        """Start (or resume) the move of ``sub`` to ``target``; up to ``switched``, then
        ``removed`` when its substitute period is already over."""
        started = time.monotonic()
        source = check(ds, self.store, sub, target, self.clock()) if check_target else None
        mv = moves.get(self.store, sub)
        if mv is None:
            assert source is not None
            with self.store.transaction():
                rec = self.store.get_subscription(sub)
                mv = moves.start(self.store, sub, source, target, self.actor, self.clock(),
                                 data={"substituteDays": substitute_days, "sourceIp": rec.ip if rec else None})
                self._event(mv, "move", f"move {source} -> {target}: started", {"step": "started"})
        elif mv.step == moves.SCHEDULED:  # its window opened (or --now): it starts from where it is now
            with self.store.transaction():
                rec = self.store.get_subscription(sub)
                mv = moves.advance(self.store, sub, "started", self.clock(),
                                   data={"sourceIp": rec.ip if rec else None, "substituteDays": substitute_days})
                self._event(mv, "move", f"move {mv.source} -> {mv.target}: started (was scheduled)",
                            {"step": "started"})
        out = Outcome(sub, mv.source, mv.target, mv.step)
        try:
            mv = self._steps(ds, mv, out, until="switched")
            if mv.step == "switched" and mv.substitute_until is not None and mv.substitute_until <= self.clock():
                mv = self._steps(ds, mv, out, until="removed")
            elif mv.step == "removed":
                self._settle(ds, mv)
        except errors.TenantctlError as exc:
            mv = moves.get(self.store, sub) or mv  # where it stopped
            out.error = f"step {moves.STEPS[moves.done_index(mv.step) + 1]}: {exc}"
            self._event(mv, "failed", f"move {mv.source} -> {mv.target}: {out.error} (a re-run resumes there)",
                        {"step": mv.step})
        out.step = mv.step
        out.data = dict(mv.data)
        out.substitute_until = mv.substitute_until
        out.seconds = round(time.monotonic() - started, 2)
        return out

    def _settle(self, ds: DesiredState, mv: Move) -> bool:
        """The end of a removed move: its row is dropped once the subscription's document
        names the target's region (a move across regions keeps placing it there until
        then: ``spec.region`` is the business's to edit). True when dropped."""
        spec = ds.subscriptions.get(mv.subscription)
        srv = ds.servers.get(mv.target)
        if spec is not None and srv is not None and spec.region != srv.region:
            return False
        with self.store.transaction():
            moves.finish(self.store, mv.subscription)
            self._event(mv, "moved", f"moved {mv.source} -> {mv.target}: source removed after the "
                                     "substitute period (DNS-4)")
        return True

    def _steps(self, ds: DesiredState, mv: Move, out: Outcome, *, until: str) -> Move:
        last = moves.STEPS.index(until)
        while moves.done_index(mv.step) < last:
            step = moves.STEPS[moves.done_index(mv.step) + 1]
            data: dict[str, Any] = {}
            until_at = None
            if step in WORK:
                t0 = time.monotonic()
                data = dict(_work(self.ops, step)(mv))
                data[f"{step}Seconds"] = round(time.monotonic() - t0, 2)
            if step == "switched":
                days = float(mv.data.get("substituteDays", SUBSTITUTE_DAYS))
                until_at = self.clock() + dt.timedelta(days=days)
            with self.store.transaction():  # the last step and the end of the move: both or neither
                mv = self._mark(mv, step, data, substitute_until=until_at)
                if step == "removed":
                    self._settle(ds, mv)
            out.done.append(step)
        return mv

    def schedule(self, ds: DesiredState, sub: str, target: str, waits: str, *,
                 substitute_days: float = SUBSTITUTE_DAYS) -> Outcome:
        """OPS-2: record the move of ``sub`` to ``target`` as ``scheduled`` (it waits for
        ``waits``, what ``waiting`` said); ``start_due`` starts it once the windows open.
        Scheduling it again changes nothing."""
        source = check(ds, self.store, sub, target, self.clock())
        mv = moves.get(self.store, sub)
        if mv is None:
            with self.store.transaction():
                mv = moves.start(self.store, sub, source, target, self.actor, self.clock(), step=moves.SCHEDULED,
                                 data={"substituteDays": substitute_days, "waitsFor": waits})
                self._event(mv, "move", f"move {source} -> {target}: scheduled, waits for {waits} (OPS-2)",
                            {"step": moves.SCHEDULED, "waitsFor": waits})
        return Outcome(sub, mv.source, mv.target, mv.step, data=dict(mv.data))

    def start_due(self, ds: DesiredState, waits: Callable[[Move], str | None]) -> list[Outcome]:
        """Start every scheduled move whose windows are open now (``waits``: what it
        still waits for, None when nothing)."""
        out: list[Outcome] = []
        for mv in moves.scheduled(self.store):
            if waits(mv) is not None:
                continue
            days = float(mv.data.get("substituteDays", SUBSTITUTE_DAYS))
            try:
                out.append(self.move(ds, mv.subscription, mv.target, substitute_days=days))
            except CannotMove as exc:  # the desired state changed since: it stays scheduled
                self._event(mv, "failed", f"scheduled move {mv.source} -> {mv.target} cannot start: {exc}",
                            {"step": mv.step})
                out.append(Outcome(mv.subscription, mv.source, mv.target, mv.step, error=str(exc)))
        return out

    def abort(self, ds: DesiredState, sub: str) -> Outcome:
        """Undo the move of ``sub`` before its switch (see the module docstring); a
        re-run after an interruption converges; once aborted, a re-run reports it."""
        started = time.monotonic()
        mv = moves.get(self.store, sub)
        if mv is None:
            last = events.list_events(self.store, subject=sub, concern="move", limit=1, last=True)
            if last and last[-1].action == "aborted":
                said = last[-1].data or {}
                return Outcome(sub, str(said.get("source")), str(said.get("target")), "aborted")
            raise CannotMove(f"{sub} has no move in progress: nothing to abort")
        if mv.step != moves.ABORTING and moves.done_index(mv.step) >= moves.STEPS.index(moves.SWITCH_FROM):
            raise CannotMove(f"the move of {sub} to {mv.target} is at step {mv.step}: the switch began and "
                             f"{mv.target} serves it, so it cannot be aborted; the way back is a move back "
                             f"(tenantctl move {sub} --to {mv.source}, once this one is over)")
        out = Outcome(sub, mv.source, mv.target, mv.step)
        if mv.step == moves.SCHEDULED:  # nothing was done anywhere
            with self.store.transaction():
                moves.finish(self.store, sub)
                self._event(mv, "aborted", f"move {mv.source} -> {mv.target}: aborted while scheduled "
                                           "(nothing was done)", {"step": "aborted", "from": mv.step})
            out.step, out.done = "aborted", ["aborted"]
            out.seconds = round(time.monotonic() - started, 2)
            return out
        try:
            if mv.step != moves.ABORTING:
                rec = self.store.get_subscription(sub)
                data: dict[str, Any] = {"abortFrom": mv.step,
                                        "abortDbServers": dict(rec.db_servers) if rec is not None else {}}
                with self.store.transaction():
                    if mv.placed:  # placed back on the source: what was written for the target is stale
                        data["generation"] = regions.bump(self.store, [sub])[sub]
                    mv = moves.advance(self.store, sub, moves.ABORTING, self.clock(), data=data)
                    self._event(mv, "move", f"move {mv.source} -> {mv.target}: aborting (from step "
                                            f"{data['abortFrom']})", {"step": moves.ABORTING, **data})
                out.done.append(moves.ABORTING)
            t0 = time.monotonic()
            got = dict(self.ops.abort(mv))
            got["abortSeconds"] = round(time.monotonic() - t0, 2)
            placed = moves.done_index(str(mv.data.get("abortFrom"))) >= moves.STEPS.index(moves.PLACED_FROM)
            note = ("; the target's copy never served: removed without a backup taken for it" if placed
                    else "; nothing had been placed on the target")
            with self.store.transaction():
                moves.finish(self.store, sub)
                self._event(mv, "aborted", f"move {mv.source} -> {mv.target}: aborted, {sub} stays on "
                                           f"{mv.source} (its databases writable again){note}",
                            {"step": "aborted", "from": mv.data.get("abortFrom"), **got})
            out.done.append("aborted")
            out.step = "aborted"
            out.data = {**mv.data, **got}
        except errors.TenantctlError as exc:
            out.error = f"abort: {exc}"
            out.step = moves.ABORTING
            self._event(mv, "failed", f"move {mv.source} -> {mv.target}: {out.error} "
                                      f"(tenantctl move {sub} --abort again resumes)", {"step": moves.ABORTING})
        out.seconds = round(time.monotonic() - started, 2)
        return out

    def due(self, ds: DesiredState) -> list[Outcome]:
        """Remove the source of every move whose substitute period is over; drop the
        rows of removed moves whose document now names the target's region."""
        out: list[Outcome] = []
        for mv in moves.all_moves(self.store).values():
            if mv.step == "removed" and self._settle(ds, mv):
                out.append(Outcome(mv.subscription, mv.source, mv.target, mv.step))
        for mv in moves.due(self.store, self.clock()):
            o = Outcome(mv.subscription, mv.source, mv.target, mv.step)
            try:
                mv = self._steps(ds, mv, o, until="removed")
            except errors.TenantctlError as exc:
                mv = moves.get(self.store, mv.subscription) or mv
                o.error = f"step removed: {exc}"
                self._event(mv, "failed", f"move {mv.source} -> {mv.target}: {o.error} (retried)", {"step": mv.step})
            o.step = mv.step
            out.append(o)
        return out


def condition(mv: Move) -> dict[str, str]:
    """The ``Moving`` condition ``status`` shows for a subscription with a move (its
    reason: the step, ``Substitute`` once switched, ``RegionToEdit`` once removed)."""
    from controller.reconcile import status as status_mod

    special = moves.describe(mv)
    if special is not None:
        return special
    item: dict[str, Any] = {"name": mv.subscription}
    status_mod.merge_move(item, {mv.subscription: mv})
    cond: dict[str, str] = item["conditions"][-1]
    return cond


def run_due(ds: DesiredState, store: state_store.Store, eng: Any, *, actor: str = "run") -> list[Outcome]:
    """``tenantctl run``'s share of moves: start the scheduled ones whose maintenance
    windows are open (OPS-2), remove the sources whose substitute period is over (servers
    reached only when there is work)."""
    from controller import settings

    now = eng.clock()
    starting = [m for m in moves.scheduled(store) if due_to_start(ds, store, m, now)]
    if settings.current().core.drivers_off:
        starting = []
    if not starting and not moves.due(store, now) and not any(
            m.step == "removed" for m in moves.all_moves(store).values()):
        return []
    from controller.drivers import context, transport
    from controller.reconcile import move_live

    pool = transport.Pool(context.Context.of(ds, store.path.parent))
    try:
        mover = Mover(store, move_live.Live(ds, store, eng, pool), clock=eng.clock, actor=actor)
        out = mover.start_due(ds, lambda m: None if due_to_start(ds, store, m, eng.clock()) else "window") \
            if starting else []
        return out + mover.due(ds)
    finally:
        pool.close()


def due_to_start(ds: DesiredState, store: state_store.Store, mv: Move, now: dt.datetime) -> bool:
    """A scheduled move whose servers' maintenance windows are open now (``waiting``)."""
    if mv.source not in ds.servers or mv.target not in ds.servers:
        return False
    return waiting(ds, store, mv.source, mv.target, now) is None
