"""``tenantctl region evacuate|end|list`` (issue 10 item 4, DR-1; contract in
desired-state.md: ``region evacuate R --to R2``, exit 0 all moved, 1 some failed, 2 bad
input with nothing changed). Thin: ``controller.reconcile.evacuate`` does the work."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from controller import errors
from controller.cli import common

region_app = typer.Typer(help="Regions: evacuate one after its loss (DR-1).", no_args_is_help=True)


@region_app.command("evacuate")
def evacuate(
    files: common.Files,
    region: Annotated[str, typer.Argument(help="the region that was lost")],
    to: Annotated[str, typer.Option("--to", help="the region that takes its subscriptions")],
    output: common.Output = "table",
) -> None:
    """Place every subscription of REGION in --to, restore it from --to's backup
    repository (the databases of plans with backup.pitr from the archives copied
    there, to their newest archived point), move its DNS primary and addresses, issue
    its certificates; print the recovery time and point of each."""
    from rich.console import Console

    from controller.drivers import context, transport
    from controller.drivers.backup import topology
    from controller.reconcile import engine
    from controller.reconcile import evacuate as evacuate_mod

    ds = common.load(files)
    try:
        subs = evacuate_mod.check(ds, region, to)
    except evacuate_mod.CannotEvacuate as exc:
        common.fail(exc, 2)
        raise AssertionError from None
    store = common.open_store(readonly=False)
    assert store is not None
    console = Console(stderr=True)
    with store:
        drivers, probe = common.wiring(ds)
        eng = engine.Engine(store, drivers, clock=common.now, actor=common.actor(), probe=probe,
                            threshold=common.threshold())
        pool = transport.Pool(context.Context.of(ds, common.state_dir()))
        try:
            with console.status(f"evacuating {region} to {to}: {len(subs)} subscription(s)") as status:
                done = evacuate_mod.evacuate(ds, store, eng, topology.Topology.of(pool.ctx), pool, region, to,
                                             actor=common.actor(), progress=lambda what: status.update(what))
        finally:
            pool.close()
            eng.close()
    rows = [{"subscription": m.subscription, "server": m.server, "generation": m.generation, "ok": m.ok,
             "error": m.error, "rtoSeconds": m.rto, "rpoSeconds": m.rpo, "rpoBasis": m.rpo_basis,
             "snapshots": m.snapshots, "pointInTime": m.points, "notes": m.notes}
            for m in done.moved]
    if output == "json":
        json.dump({"region": region, "to": to, "seconds": done.seconds, "subscriptions": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from rich.table import Table

        table = Table(title=f"region {region} evacuated to {to} in {done.seconds:.1f} s")
        for col in ("SUBSCRIPTION", "SERVER", "GEN", "RTO", "RPO", "RESULT"):
            table.add_column(col)
        for r in rows:
            table.add_row(str(r["subscription"]), str(r["server"] or "-"), str(r["generation"]),
                          f"{r['rtoSeconds']:.1f}s" if r["rtoSeconds"] is not None else "-",
                          f"{r['rpoSeconds']:.0f}s ({r['rpoBasis']})" if r["rpoSeconds"] is not None else "-",
                          "ok" if r["ok"] else f"FAILED: {r['error']}")
        Console().print(table)
        for m in done.moved:
            for p in m.points:
                sys.stdout.write(f"{m.subscription}: db {p['database']} ({p['engine']}) from {p['base']}, "
                                 f"replay stopped at {p['stoppedAt']} (archive in {p['region']}, "
                                 f"recovered to {p['point'] or 'unknown'})\n")
            for n in m.notes:
                sys.stdout.write(f"{m.subscription}: {n}\n")
    raise typer.Exit(0 if done.ok else 1)


@region_app.command("end")
def end(region: Annotated[str, typer.Argument(help="an evacuated region")]) -> None:
    """Stop placing REGION's subscriptions elsewhere. They stay where they are (a placed
    subscription never moves implicitly): move them back with `tenantctl move`."""
    from controller.state import events, regions

    store = common.open_store(readonly=False)
    assert store is not None
    with store:
        if not regions.end(store, region):
            common.fail(errors.UnknownObject(f"region {region!r} is not evacuated"), 2)
        events.record(store, actor=common.actor(), action="evacuation-ended", subject="*",
                      message=f"region {region}: evacuation ended")


@region_app.command("list")
def list_(output: common.Output = "table") -> None:
    """Evacuations in force."""
    from controller.state import regions

    store = common.open_store(readonly=True)
    found = regions.evacuations(store) if store is not None else {}
    rows = [{"region": e.region, "to": e.target, "since": e.started_at.isoformat()} for e in found.values()]
    if output == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for r in rows:
        sys.stdout.write(f"{r['region']} -> {r['to']} since {r['since']}\n")
    if not rows:
        sys.stdout.write("no region is evacuated\n")
