"""``tenantctl move SUB --to SERVER`` (issue 13 item 2): exit 0 when the move reached its
substitute period (or its source was removed), or was scheduled for the maintenance
window (OPS-2), or was aborted (``--abort``); 1 when a step failed (a re-run resumes
there); 2 when it cannot start or be aborted (nothing changed). Thin:
``controller.reconcile.move`` does the work. Registers itself on the CLI's ``app``."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from controller import settings
from controller.cli import common
from controller.cli.common import app


@contextlib.contextmanager
def _mover(ds: Any, store: Any, clock: Any, progress: Any) -> Iterator[Any]:
    """A ``Mover`` working on the servers (engine and connection pool closed after)."""
    from controller.drivers import context, transport
    from controller.reconcile import engine, move_live
    from controller.reconcile import move as move_mod

    drivers, probe = common.wiring(ds)
    eng = engine.Engine(store, drivers, clock=clock, actor=common.actor(), probe=probe, threshold=common.threshold())
    pool = transport.Pool(context.Context.of(ds, common.state_dir()))
    try:
        ops = move_live.Live(ds, store, eng, pool, progress=progress)
        yield move_mod.Mover(store, ops, clock=clock, actor=common.actor())
    finally:
        pool.close()
        eng.close()


def _write(row: dict[str, Any], output: str, text: list[str]) -> None:
    if output == "json":
        json.dump(row, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("".join(f"{line}\n" for line in text))


@app.command("move")
def move(
    files: common.Files,
    sub: Annotated[str, typer.Argument(help="the subscription to move")],
    to: Annotated[str | None, typer.Option("--to", help="the server that takes it")] = None,
    substitute_days: Annotated[float, typer.Option(
        "--substitute-days", min=0.0, help="how long the source keeps serving as substitute (DNS-4)")] = 7.0,
    output: common.Output = "table",
    now: Annotated[bool, typer.Option("--now", help="start outside the maintenance window (OPS-2); an event "
                                                    "names who")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="undo SUB's move before its switch: placed back on "
                                                        "its source, the target's copy removed")] = False,
) -> None:
    """Move SUB to another server (any region) through a verified backup and restore:
    freeze its databases, back it up, place it on --to, restore, verify checksums,
    switch, then keep the source as read-only substitute for --substitute-days before
    removing it (LIFE-6). Outside the maintenance window of either region (OPS-2) the
    move is scheduled: `tenantctl run` starts it when the windows open (--now: now).
    Re-run after a failure: it resumes at the failed step. --abort undoes a move that
    has not begun its switch."""
    from rich.console import Console

    from controller.reconcile import move as move_mod
    from controller.state import events, moves

    ds = common.load(files)
    store = common.open_store(readonly=False)
    assert store is not None
    console = Console(stderr=True)
    drivers_off = settings.current().core.drivers_off
    if abort:
        with store:
            clock = common.clock()
            going = moves.get(store, sub)
            if to is not None and going is not None and going.target != to:
                common.fail(move_mod.CannotMove(f"{sub} is moving to {going.target}, not {to}"), 2)
            if drivers_off and going is not None and going.step != moves.SCHEDULED:
                common.fail(move_mod.CannotMove("drivers are off (TENANTCTL_DRIVERS=none): undoing a move works "
                                                "on the servers"), 2)
            try:
                if going is None or going.step == moves.SCHEDULED:  # nothing on the servers to undo
                    undone = move_mod.Mover(store, _NoServers(), clock=clock, actor=common.actor()).abort(ds, sub)
                else:
                    with console.status(f"aborting the move of {sub}") as status, \
                            _mover(ds, store, clock, lambda what: status.update(what)) as mover:
                        undone = mover.abort(ds, sub)
            except move_mod.CannotMove as exc:
                common.fail(exc, 2)
        row = {"subscription": sub, "source": undone.source, "target": undone.target, "step": undone.step,
               "done": undone.done, "ok": undone.ok, "error": undone.error, "seconds": undone.seconds}
        text = [f"{sub}: move {undone.source} -> {undone.target}: {undone.step}"
                + (f" (this run: {', '.join(undone.done) or 'nothing, aborted before'}); {sub} stays on "
                   f"{undone.source}" if undone.ok else "")]
        if undone.error:
            text.append(f"FAILED: {undone.error}; re-run --abort to resume")
        _write(row, output, text)
        raise typer.Exit(0 if undone.ok else 1)
    if to is None:
        common.fail(move_mod.CannotMove("--to SERVER is needed (or --abort)"), 2)
    assert to is not None
    with store:
        clock = common.clock()
        try:
            source = move_mod.check(ds, store, sub, to, clock())
            going = moves.get(store, sub)
            resuming = going is not None and going.step != moves.SCHEDULED
            waits = None if resuming else move_mod.waiting(ds, store, source, to, clock())
            if waits is not None and not now:  # OPS-2: recorded, `run` starts it when the windows open
                planned = move_mod.Mover(store, _NoServers(), clock=clock, actor=common.actor()).schedule(
                    ds, sub, to, waits, substitute_days=substitute_days)
                row = {"subscription": sub, "source": planned.source, "target": planned.target,
                       "step": planned.step, "waitsFor": waits, "ok": True}
                _write(row, output, [f"{sub}: {planned.source} -> {planned.target}: scheduled, waits for {waits} "
                                     "(OPS-2): `tenantctl run` starts it then; --now starts it now"])
                raise typer.Exit(0)
            if drivers_off:
                raise move_mod.CannotMove("drivers are off (TENANTCTL_DRIVERS=none): a move copies data between "
                                          "servers, it cannot be planned only")
        except move_mod.CannotMove as exc:
            common.fail(exc, 2)
        if waits is not None:
            events.record(store, actor=common.actor(), action="maintenance-override", subject=sub,
                          message=f"move --now: {sub} moves to {to} outside the maintenance window (OPS-2): {waits}")
        with console.status(f"moving {sub} to {to}") as status, \
                _mover(ds, store, clock, lambda what: status.update(what)) as mover:
            done = mover.move(ds, sub, to, substitute_days=substitute_days)
    row = {"subscription": done.subscription, "source": done.source, "target": done.target, "step": done.step,
           "done": done.done, "ok": done.ok, "error": done.error, "seconds": done.seconds,
           "substituteUntil": done.substitute_until.isoformat() if done.substitute_until else None,
           "stepSeconds": {k.removesuffix("Seconds"): v for k, v in sorted(done.data.items())
                           if k.endswith("Seconds") and isinstance(v, int | float)},
           "fileRounds": done.data.get("fileRounds")}
    text = [f"{sub}: {done.source} -> {done.target}: step {done.step} (this run: {', '.join(done.done) or 'none'}) "
            f"in {done.seconds:.1f} s"]
    if done.substitute_until is not None and done.step == "switched":
        text.append(f"{done.source} serves as substitute until {done.substitute_until.isoformat()} "
                    "(DNS-4), then is removed by `tenantctl move` or `run`")
    if done.error:
        text.append(f"FAILED at {done.error}; re-run to resume, or --abort to undo (before the switch)")
    _write(row, output, text)
    raise typer.Exit(0 if done.ok else 1)


class _NoServers:
    """``move.Ops`` for what touches no server (scheduling, aborting a scheduled move):
    any step's work is refused."""

    def _refuse(self, *_args: Any) -> dict[str, Any]:
        from controller.reconcile import move_live

        raise move_live.StepFailed("this command works on no server")

    freeze = backup = place = restore = verify = switch = remove = abort = _refuse
