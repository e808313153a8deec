"""Commands that act: apply, run, status, sync (env: ``cli/env.py``, events: ``cli/events.py``)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from controller import errors
from controller.cli import backup as _backup  # noqa: F401  (registers `restore`)
from controller.cli import crds as _crds  # noqa: F401  (registers crds, resources, documents)
from controller.cli import dashboards as _dashboards
from controller.cli import events as _events  # noqa: F401  (registers `events`)
from controller.cli import infra as _infra  # noqa: F401  (registers `infra`)
from controller.cli import move as _move  # noqa: F401  (registers `move`)
from controller.cli import operator as _operator  # noqa: F401  (registers `operator`)
from controller.cli import output
from controller.cli.backup import backup_app
from controller.cli.common import (
    Customer,
    Files,
    Output,
    Selector,
    Server,
    ShowAll,
    actor,
    app,
    check_output,
    clock,
    close_drivers,
    drivers_for,
    fail,
    labelled,
    load,
    now,
    open_store,
    plan_rows,
    state_dir,
    threshold,
    wiring,
)
from controller.cli.db import db_app
from controller.cli.env import env_app
from controller.cli.maintenance import maintenance_app
from controller.cli.region import region_app
from controller.cli.report import report_app
from controller.cli.state import state_app
from controller.cli.tls import tls_app
from controller.reconcile import status as status_mod
from controller.state import events
from controller.state import store as state_store

app.command(name="dashboards")(_dashboards.dashboards)
app.add_typer(env_app, name="env")
app.add_typer(state_app, name="state")
app.add_typer(db_app, name="db")
app.add_typer(tls_app, name="tls")
app.add_typer(backup_app, name="backup")
app.add_typer(region_app, name="region")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(report_app, name="report")


def _status_items(store: state_store.Store | None,
                  releases: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return status_mod.items(store, releases=releases) if store is not None else []


#: ``apply``'s exit codes (README, "CLI")
EXIT_CONVERGED, EXIT_FAILED, EXIT_DEFERRED, EXIT_HELD = 0, 1, 3, 4


@app.command()
def apply(
    files: Files,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be done, change nothing")] = False,
    allow_mass_delete: Annotated[bool, typer.Option(
        "--allow-mass-delete", help="carry out a pass that deletes more than the guard's threshold")] = False,
    retry_now: Annotated[bool, typer.Option(
        "--retry-now", help="clear the backoff of failed work (of SUB... if given) and try it in this pass")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="hand every concern of every subscription (of SUB... if given) to the drivers, changed "
                        "or not: they compare with the servers and send only what differs (what an upgrade "
                        "triggers)")] = False,
    now_: Annotated[bool, typer.Option(
        "--now", help="disruptive changes (a PHP version change) run now instead of waiting for their region's "
                      "maintenance window (OPS-2); recorded as an event naming who")] = False,
    subs: Annotated[list[str] | None, typer.Argument(
        metavar="[SUB]...", help="with --retry-now or --force: only these")] = None,
) -> None:
    """Reconcile once and report: exit 0 converged, 1 failed, 3 deferred (backing off),
    4 refused (mass deletion without --allow-mass-delete)."""
    from rich.console import Console
    from rich.progress import Progress

    from controller.reconcile import engine, guard

    if subs and not (retry_now or force):
        fail(errors.TenantctlError("tenantctl: subscriptions on the command line go with --retry-now or --force"))
    ds = load(files)
    unknown = sorted(set(subs or []) - set(ds.subscriptions))
    if force and unknown:
        fail(errors.TenantctlError(f"tenantctl: --force: no such subscription in the desired state: "
                                   f"{', '.join(unknown)}"))
    if dry_run:
        ro = open_store(readonly=True)
        try:
            drivers = drivers_for(ds)
            planned = engine.plan(ds, now(), ro, drivers, override_windows=now_)
            if force:
                engine.forced(planned, drivers, set(subs) if subs else None)
            rows, ages = plan_rows(planned, ro, {})
        finally:
            if ro is not None:
                ro.close()
        output.subscriptions_table(rows, title="apply --dry-run (nothing changed)", with_actions=True, ages=ages)
        return
    store = open_store(readonly=False)
    assert store is not None
    with store:
        live = store.count_live()
        drivers, probe = wiring(ds)
        eng = engine.Engine(store, drivers, clock=clock(), actor=actor(), probe=probe, threshold=threshold(),
                            override_windows=now_)
        try:
            planned = eng.plan(ds)  # the guard decides on it; the pass reuses it
            if now_:
                _record_override(store, eng, ds)
            decision = guard.decide(planned.deletions, live, threshold(), allowed=allow_mass_delete)
            if decision.held:
                sys.stderr.write(f"tenantctl: refused: {decision.message}\n")
                for name in decision.deletions:
                    sys.stderr.write(f"  would delete {name}\n")
                raise typer.Exit(EXIT_HELD)
            if retry_now:
                _clear_backoff(store, subs or [])
            with Progress(transient=True, console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("reconciling", total=None)

                def show(what: str, done: int, total: int) -> None:
                    bar.update(task, description=what, completed=done, total=total)

                report = eng.reconcile(ds, progress=show, allow_mass_delete=allow_mass_delete, planned=planned,
                                       force=(subs or True) if force else False)
        finally:
            eng.close()
        rows = status_mod.rows(store)
    at = now()
    for row in rows:  # a forced re-check is no change of its own: the rows show what changed
        row["actions"] = [a for a in report.planned.actions.get(row["name"], []) if not a.startswith("force:")]
    acted = [acts for acts in report.planned.actions.values() if acts]
    touched = sum(1 for acts in acted if not all(a.startswith("force:") for a in acts)) + len(report.planned.deletions)
    rechecked = f"{len(acted) - touched + len(report.planned.deletions)} re-checked, " if force else ""
    waiting = sorted(set(report.deferred) | set(report.held))
    output.subscriptions_table(rows, title=f"apply: {touched} changed, {rechecked}{len(report.failed)} failed, "
                                          f"{len(waiting)} deferred ({report.seconds:.2f} s)", show_all=False,
                               ages={r["name"]: output.age(r["createdAt"], at) for r in rows})
    for server, n in sorted(report.replaced.items()):
        sys.stderr.write(f"server {server} was replaced or wiped: re-ensured {n} subscriptions placed there\n")
    for why in sorted(report.unreachable.values()):
        sys.stderr.write(f"unreachable: {why}\n")
    for name, msgs in sorted(report.failed.items()):
        for msg in msgs:
            sys.stderr.write(f"failed: {name}: {msg}\n")
    for key in sorted(report.held):
        sys.stderr.write(f"held: {key}: failed permanently; retried when its inputs change or with --retry-now\n")
    deferred = sorted(set(report.deferred))
    if deferred:
        when = min(report.retry_at.values()) if report.retry_at else None
        sys.stderr.write(f"{len(deferred)} deferred: backing off until {when.isoformat() if when else 'later'} "
                         f"({', '.join(deferred[:10])}{' ...' if len(deferred) > 10 else ''})\n")
    if report.failed:
        raise typer.Exit(EXIT_FAILED)
    if waiting:
        raise typer.Exit(EXIT_DEFERRED)


def _record_override(store: state_store.Store, eng: Any, ds: Any) -> None:
    """``apply --now``: the disruptive changes that wait for a window run now; one event
    naming who, and which subscriptions, when there are any (OPS-2)."""
    from controller.reconcile import engine

    waiting = engine.plan(ds, eng.clock(), store, eng.drivers)  # as without --now: what would wait
    names = sorted(n for n in waiting.subscriptions if output.waiting(waiting.item(n)))
    if names:
        events.record(store, actor=actor(), action="maintenance-override", subject=",".join(names)[:500],
                      message=f"apply --now: {len(names)} disruptive change(s) run outside the maintenance window "
                              f"(OPS-2): {', '.join(names[:20])}")
        sys.stderr.write(f"apply --now: {len(names)} disruptive change(s) run outside the maintenance window\n")


def _clear_backoff(store: state_store.Store, subs: list[str]) -> None:
    """``--retry-now``: forget the backoff of every failed item (of ``subs`` if given)."""
    with store.transaction():
        cleared = [b.key for b in store.list_backoff() if not subs or b.key.split("/", 1)[0] in subs]
        for key in cleared:
            store.clear_backoff(key)
        if cleared:
            events.record(store, actor=actor(), action="retry-now", subject=",".join(subs) or "*",
                          message=f"backoff cleared for {len(cleared)} item(s): {', '.join(cleared[:20])}")
    sys.stderr.write(f"retry now: backoff cleared for {len(cleared)} item(s)\n")


@app.command()
def status(
    fmt: Output = "table",
    show_all: ShowAll = False,
    customer: Customer = None,
    server: Server = None,
    selector: Selector = None,
    live: Annotated[bool, typer.Option("--live", help="ask the servers (needs -f): identity markers and drift")] = False,
    files: Annotated[list[Path] | None, typer.Option("-f", "--file", help="the desired state (for --live, "
                                                     "--selector: labels live in the documents, and the database "
                                                     "engines' versions: servers' releases)")] = None,
) -> None:
    """Live state from the state store; with --live -f PATH, checked against the servers."""
    check_output(fmt)
    if live and not files:
        fail(errors.TenantctlError("tenantctl: status --live needs the desired state (-f PATH)"))
    if selector is not None and not files:
        fail(errors.TenantctlError("tenantctl: status --selector needs the desired state (-f PATH): "
                                   "labels are read from the documents' metadata.labels"))
    ds = load(files) if files else None
    names = labelled(ds, selector) if ds is not None else None
    store = open_store(readonly=True)
    try:
        releases = ds.releases() if ds is not None else None  # PLAT-5: database engines' versions
        if live and ds is not None:
            items = _status_items(store, releases)
            probe_doc = _live(ds, store, items)
            _show_status(items, fmt, show_all, customer, server, names, probe_doc)
        elif fmt == "json":
            docs = status_mod.stream(store, releases=releases) if store is not None else iter(())
            output.stream_json("subscriptions", (d for d in docs if output.wanted(
                d, customer=customer, server=server, names=names)))
        else:
            rows = status_mod.rows(store) if store is not None else []
            _show_status(rows, fmt, show_all, customer, server, names, {})
            from controller.cli import maintenance as maintenance_cli
            from controller.state import notices

            for line in maintenance_cli.lines(notices.pending(store, now())):  # OPS-2: announced windows
                sys.stdout.write(line + "\n")
    finally:
        if store is not None:
            store.close()


def _show_status(items: list[dict[str, Any]], fmt: str, show_all: bool, customer: str | None,
                 server: str | None, names: frozenset[str] | None, probe_doc: dict[str, Any]) -> None:
    chosen = output.select(items, customer=customer, server=server, names=names)
    if fmt == "json":
        output.print_json({"subscriptions": list(chosen), **probe_doc})
        return
    at = now()
    ages = {str(it["name"]): output.age(it.get("createdAt"), at) for it in chosen if "createdAt" in it}
    output.subscriptions_table(chosen, title=f"status ({state_dir() / 'state.db'})", wide=fmt == "wide",
                               show_all=show_all, ages=ages)
    for line in probe_doc.get("warnings", []):
        sys.stderr.write(f"warning: {line}\n")


def _live(ds: Any, store: state_store.Store | None, items: list[dict[str, Any]]) -> dict[str, Any]:
    """``status --live``: mark drifted concerns in ``items`` and report servers."""
    from controller.reconcile import drift
    from controller.reconcile import engine as engine_mod

    drivers, probe = wiring(ds)
    warnings: list[str] = []
    servers: dict[str, Any] = {}
    try:
        if probe is not None:
            probed = probe.probe(ds.servers)
            known = store.get_server_generations() if store is not None else {}
            for name in sorted(ds.servers):
                gen = probed.generations.get(name)
                state = ("unreachable" if name in probed.unreachable else
                         "replaced" if known.get(name) not in (None, gen) else "ok")
                servers[name] = {"state": state, "generation": gen,
                                 **({"error": probed.unreachable[name]} if name in probed.unreachable else {}),
                                 "tenants": probed.tenants.get(name, 0)}
                if state != "ok":
                    warnings.append(f"server {name}: {state}"
                                    + (f" ({probed.unreachable[name]})" if name in probed.unreachable else ""))
            held = sum(probed.tenants.values())
            if not any(i["state"] != "deleted" for i in items) and held:
                warnings.append(f"the state store is empty but the servers hold {held} tenant vhost(s): "
                                "restore it (`tenantctl state restore FILE`) before applying")
        if store is not None:
            found = drift.detect(drivers, engine_mod.plan(ds, now(), store, drivers))
            for it in items:
                for concern, what in found.drifted.get(it["name"], {}).items():
                    it.setdefault("concerns", {})[concern] = "drifted"
                    it.setdefault("drift", {})[concern] = what
                    warnings.append(f"{it['name']}: {concern} drifted: {what}")
    finally:
        close_drivers(drivers)
        if probe is not None:
            probe.close()
    return {"servers": servers, "warnings": warnings}


@app.command()
def urls() -> None:
    """Where to look: each site's URL and the curl line that reaches it on its IP."""
    store = open_store(readonly=True)
    if store is None:
        return
    with store:
        items = _status_items(store)
    bundle = state_dir() / "pebble" / "ca-bundle.pem"
    for it in items:
        eff = it.get("effective") or {}
        if it["state"] == "deleted" or not it.get("ip") or not eff.get("hosting", {}).get("enabled"):
            continue
        tls = it.get("concerns", {}).get("tls") == "provisioned" and eff["hosting"].get("ssl")
        for name in [it["name"], *(s["name"] for s in eff.get("sites", []))]:
            if tls:
                typer.echo(f"https://{name}/  curl --cacert {bundle} --resolve {name}:443:{it['ip']} https://{name}/")
            else:
                typer.echo(f"http://{name}/  curl --resolve {name}:80:{it['ip']} http://{name}/")


@app.command()
def sync(name: str) -> None:
    """Unlock & sync (SYNC-2) a subscription and re-attach a transferred one (PLAN-7):
    drops its recorded values so that the next apply recomputes it from its plan."""
    store = open_store(readonly=False)
    assert store is not None
    with store:
        if store.get_subscription(name) is None:
            fail(errors.UnknownObject(f"tenantctl: unknown subscription {name!r}"))
        with store.transaction():
            store.drop_sticky(name)
            store.drop_transfer(name)
            events.record(store, actor="operator", action="sync", subject=name,
                          message="unlock & sync: recorded values dropped")
    typer.echo(f"{name}: recorded values dropped; the next apply synchronises it with its plan")




@app.command()
def run(
    files: Files,
    metrics_addr: Annotated[str | None, typer.Option("--metrics-addr", help="HOST:PORT for /metrics")] = None,
    resync: Annotated[float, typer.Option("--resync", help="seconds between full resyncs")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="stop after the first pass (for tests)")] = False,
) -> None:
    """Reconcile continuously: watch the files, resync on a timer. Survives every fault
    (servers, databases, DNS, invalid files): only a signal ends it."""
    import logging

    from controller.reconcile import loop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    store = open_store(readonly=False)
    assert store is not None
    with store:
        marker = state_dir() / "metrics.addr"
        if metrics_addr:
            marker.write_text(metrics_addr + "\n")
        try:
            loop.run(files, store, clock=clock(), metrics_addr=metrics_addr, resync=resync, once=once,
                     wiring=wiring, cache_dir=state_dir() / "parse-cache",
                     threshold=threshold())
        finally:
            marker.unlink(missing_ok=True)
