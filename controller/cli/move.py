"""``tenantctl move SUB --to SERVER`` (issue 13 item 2): exit 0 when the move reached its
substitute period (or its source was removed), 1 when a step failed (a re-run resumes
there), 2 when it cannot start (nothing changed). Thin: ``controller.reconcile.move``
does the work. Registers itself on the CLI's ``app``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from controller import settings
from controller.cli import common
from controller.cli.common import app


@app.command("move")
def move(
    files: common.Files,
    sub: Annotated[str, typer.Argument(help="the subscription to move")],
    to: Annotated[str, typer.Option("--to", help="the server that takes it")],
    substitute_days: Annotated[float, typer.Option(
        "--substitute-days", min=0.0, help="how long the source keeps serving as substitute (DNS-4)")] = 7.0,
    output: common.Output = "table",
    now: Annotated[bool, typer.Option("--now", help="start outside the maintenance window (OPS-2); an event "
                                                    "names who")] = False,
) -> None:
    """Move SUB to another server (any region) through a verified backup and restore:
    freeze its databases, back it up, place it on --to, restore, verify checksums,
    switch, then keep the source as read-only substitute for --substitute-days before
    removing it (LIFE-6). A new move starts inside the maintenance window of both
    regions (OPS-2) unless --now. Re-run after a failure: it resumes at the failed step."""
    from rich.console import Console

    from controller.drivers import context, transport
    from controller.reconcile import engine
    from controller.reconcile import move as move_mod
    from controller.state import events, moves

    ds = common.load(files)
    store = common.open_store(readonly=False)
    assert store is not None
    console = Console(stderr=True)
    with store:
        clock = common.clock()
        try:
            source = move_mod.check(ds, store, sub, to, clock())
            resuming = moves.get(store, sub) is not None
            waits = None if resuming else move_mod.waiting(ds, store, source, to, clock())
            if waits is not None and not now:
                raise move_mod.CannotMove(f"{sub}: a move waits for {waits} (OPS-2; --now overrides)")
            if settings.current().core.drivers_off:
                raise move_mod.CannotMove("drivers are off (TENANTCTL_DRIVERS=none): a move copies data between "
                                          "servers, it cannot be planned only")
        except move_mod.CannotMove as exc:
            common.fail(exc, 2)
        if waits is not None:
            events.record(store, actor=common.actor(), action="maintenance-override", subject=sub,
                          message=f"move --now: {sub} moves to {to} outside the maintenance window (OPS-2): {waits}")
        drivers, probe = common.wiring(ds)
        eng = engine.Engine(store, drivers, clock=clock, actor=common.actor(), probe=probe, threshold=common.threshold())
        pool = transport.Pool(context.Context.of(ds, common.state_dir()))
        try:
            with console.status(f"moving {sub} to {to}") as status:
                ops = move_mod.Live(ds, store, eng, pool, progress=lambda what: status.update(what))
                done = move_mod.Mover(store, ops, clock=clock, actor=common.actor()).move(
                    ds, sub, to, substitute_days=substitute_days)
        finally:
            pool.close()
            eng.close()
    row = {"subscription": done.subscription, "source": done.source, "target": done.target, "step": done.step,
           "done": done.done, "ok": done.ok, "error": done.error, "seconds": done.seconds,
           "substituteUntil": done.substitute_until.isoformat() if done.substitute_until else None,
           "stepSeconds": {k.removesuffix("Seconds"): v for k, v in sorted(done.data.items())
                           if k.endswith("Seconds") and isinstance(v, int | float)}}
    if output == "json":
        json.dump(row, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        steps = ", ".join(done.done) or "none"
        sys.stdout.write(f"{sub}: {done.source} -> {done.target}: step {done.step} (this run: {steps}) "
                         f"in {done.seconds:.1f} s\n")
        if done.substitute_until is not None and done.step == "switched":
            sys.stdout.write(f"{done.source} serves as substitute until {done.substitute_until.isoformat()} "
                             "(DNS-4), then is removed by `tenantctl move` or `run`\n")
        if done.error:
            sys.stdout.write(f"FAILED at {done.error}; re-run to resume\n")
    raise typer.Exit(0 if done.ok else 1)
