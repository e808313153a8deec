"""``tenantctl demo reset SUB`` (PLAT-3): reset a demo platform now from its reference,
whatever its schedule (``tenantctl run`` resets demos on their schedule). Exit 0 reset,
1 the reset failed (recorded: event, ``DemoReset`` False in status), 2 not a demo of the
desired state, not placed yet, or being reset by another process (nothing changed). Thin: ``controller.reconcile.demo``
does the work. Registers ``demo`` on the CLI's ``app``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from controller import errors, settings
from controller.cli import common
from controller.cli.common import app

demo_app = typer.Typer(help="Demo platforms reset from a reference (PLAT-3).", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@demo_app.command("reset")
def reset(
    files: common.Files,
    sub: Annotated[str, typer.Argument(help="the demo subscription")],
    output: common.Output = "table",
) -> None:
    """Reset demo SUB now: its web space and databases become exactly its reference's
    (spec.demo.resetFrom: a subscription's newest backup, or snapshot:<id>); measured and
    recorded (event, status)."""
    from rich.console import Console

    from controller.reconcile import clone, demo

    ds = common.load(files)
    spec = ds.subscriptions.get(sub)
    if spec is None or spec.demo is None:
        common.fail(errors.TenantctlError(f"{sub} is no demo of the desired state (spec.demo)"), 2)
        raise AssertionError  # unreachable
    if settings.current().core.drivers_off:
        common.fail(errors.TenantctlError("drivers are off (TENANTCTL_DRIVERS=none): a reset copies data"), 2)
    store = common.open_store(readonly=False)
    assert store is not None
    with (store, common.sandbox_pool(ds, store, sub) as pool,
          Console(stderr=True).status(f"resetting {sub} from {spec.demo.resetFrom}")):
        try:
            row = demo.Resetter(store, pool, clock=common.clock(), actor=common.actor()).reset(
                sub, spec.demo.resetFrom)
        except clone.Busy as exc:  # run's scheduler (or another reset) is at it now
            common.fail(exc, 2)
            raise AssertionError from None  # unreachable
    if output == "json":
        json.dump({"subscription": sub, "ok": row.ok, "error": row.error, "seconds": row.seconds,
                   "source": row.source, "snapshots": list(row.snapshots), "at": row.at.isoformat()},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif row.ok:
        sys.stdout.write(f"{sub}: reset from {row.source} in {row.seconds:.1f} s "
                         f"(snapshots {', '.join(s[:8] for s in row.snapshots)})\n")
    else:
        sys.stdout.write(f"{sub}: reset from {row.source} FAILED after {row.seconds:.1f} s: {row.error}\n")
    raise typer.Exit(0 if row.ok else 1)
