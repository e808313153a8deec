"""Commands that act: apply, run, status, sync (env: ``cli/env.py``, events: ``cli/events.py``)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from controller import errors
from controller.cli import events as _events  # noqa: F401  (registers `events`)
from controller.cli import output
from controller.cli.db import db_app
from controller.cli.env import env_app
from controller.cli.main import (
    Files,
    Output,
    app,
    check_output,
    drivers_for,
    fail,
    load,
    now,
    open_store,
    plan_now,
    state_dir,
)
from controller.cli.tls import tls_app
from controller.state import events
from controller.state import store as state_store

app.add_typer(env_app, name="env")
app.add_typer(db_app, name="db")
app.add_typer(tls_app, name="tls")


def _status_items(store: state_store.Store | None) -> list[dict[str, Any]]:
    if store is None:
        return []
    items = store.get_status()
    for rec in store.list_subscriptions(include_deleted=True):
        if rec.deleted_at is not None:
            items.append({
                "name": rec.name, "customer": rec.customer, "plan": None, "addons": [], "region": None,
                "server": rec.server, "ip": rec.ip, "state": "deleted", "stateReason": None, "sync": "custom",
                "conflicts": [], "conditions": [], "effective": {}, "concerns": {},
                "deletedAt": rec.deleted_at.isoformat(),
                "purgeAfter": rec.purge_after.isoformat() if rec.purge_after else None,
            })
    return sorted(items, key=lambda i: i["name"])


@app.command()
def apply(
    files: Files,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would be done, change nothing")] = False,
) -> None:
    """Reconcile once and report: exit 0 converged, 1 failed items."""
    from controller.reconcile import engine

    ds = load(files)
    if dry_run:
        planned = plan_now(ds)
        items = [{**s.item, "actions": planned.actions[n]} for n, s in planned.subscriptions.items()]
        output.subscriptions_table(items, title="apply --dry-run (nothing changed)", with_actions=True)
        return
    store = open_store(readonly=False)
    assert store is not None
    with store:
        eng = engine.Engine(store, drivers_for(ds), clock=now, actor="operator")
        with Progress(transient=True, console=Console(stderr=True), disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("reconciling", total=None)

            def show(what: str, done: int, total: int) -> None:
                bar.update(task, description=what, completed=done, total=total)

            report = eng.reconcile(ds, progress=show)
        items = _status_items(store)
    touched = sum(1 for acts in report.planned.actions.values() if acts) + len(report.planned.deletions)
    output.subscriptions_table(items, title=f"apply: {touched} changed, {len(report.failed)} failed "
                                            f"({report.seconds:.2f} s)")
    for name, msgs in sorted(report.failed.items()):
        for msg in msgs:
            sys.stderr.write(f"failed: {name}: {msg}\n")
    waiting = sorted(set(report.deferred) - {f"{n}/{m.split(':')[0]}" for n, ms in report.failed.items() for m in ms})
    for key in waiting:
        name = key.split("/")[0]
        when = report.retry_at.get(name)
        sys.stderr.write(f"backing off: {key} after an earlier failure, next try {when.isoformat() if when else 'later'}\n")
    if not report.ok or waiting:  # not converged
        raise typer.Exit(1)


@app.command()
def status(fmt: Output = "table") -> None:
    """Live state from the state store."""
    check_output(fmt)
    try:
        store = open_store(readonly=True)
    except errors.TenantctlError as exc:
        fail(exc, 1)
        return
    try:
        items = _status_items(store)
    finally:
        if store is not None:
            store.close()
    if fmt == "json":
        output.print_json({"subscriptions": items})
    else:
        output.subscriptions_table(items, title=f"status ({state_store.default_path()})")


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
    """Reconcile continuously: watch the files, resync on a timer."""
    from controller.reconcile import loop

    store = open_store(readonly=False)
    assert store is not None
    with store:
        marker = state_dir() / "metrics.addr"
        if metrics_addr:
            marker.write_text(metrics_addr + "\n")
        try:
            loop.run(files, store, clock=now, metrics_addr=metrics_addr, resync=resync, once=once,
                     drivers_for=drivers_for)
        finally:
            marker.unlink(missing_ok=True)
