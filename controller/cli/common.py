"""``tenantctl`` commands (../shared/desired-state.md, "CLI")."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from controller import errors, model
from controller.cli import output
from controller.state import store as state_store

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reconcile hosting subscriptions with their desired state.")

Files = Annotated[list[Path], typer.Option("-f", "--file", help="desired-state file or directory (repeatable)")]
Output = Annotated[str, typer.Option("-o", "--output", help="table or json")]


def now() -> dt.datetime:
    """The controller's clock; ``TENANTCTL_NOW`` (ISO-8601) fixes it for tests and demos."""
    fixed = os.environ.get("TENANTCTL_NOW")
    if fixed:
        t = dt.datetime.fromisoformat(fixed)
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)


def fail(err: errors.TenantctlError, code: int = 2) -> None:
    for line in str(err).splitlines():
        sys.stderr.write(f"{line}\n")
    raise typer.Exit(code)


def load(files: list[Path]) -> model.DesiredState:
    try:
        return model.load_desired(files)
    except errors.InputError as exc:
        sys.stderr.write(f"tenantctl: {len(exc.issues)} error(s) in the desired state\n")
        fail(exc)
        raise AssertionError from None  # unreachable


def state_dir() -> Path:
    return state_store.default_path().parent.resolve()


def drivers_for(ds: model.DesiredState) -> dict[str, Any]:
    """The drivers of every concern for this desired state's servers."""
    from controller.drivers import context, registry

    return dict(registry.build(context.Context.of(ds, state_dir())))


def plan_now(ds: model.DesiredState) -> Any:
    """Plan against the state store (if any), with the drivers apply would use, so that
    fingerprints compare like with like."""
    from controller.reconcile import engine

    store = open_store(readonly=True)
    try:
        return engine.plan(ds, now(), store, drivers_for(ds))
    finally:
        if store is not None:
            store.close()


def open_store(*, readonly: bool) -> state_store.Store | None:
    path = state_store.default_path()
    if readonly:
        if not path.exists():
            return None
        return state_store.Store.open_readonly(path)
    return state_store.Store(path, now=now)


def check_output(fmt: str) -> None:
    if fmt not in ("table", "json"):
        sys.stderr.write(f"tenantctl: -o expects table or json, got {fmt!r}\n")
        raise typer.Exit(2)


@app.command()
def validate(files: Files) -> None:
    """Parse and check documents and references: exit 0 valid, 2 invalid."""
    ds = load(files)
    counts = {k: len(ds.table(k)) for k in ("Region", "Server", "ServicePlan", "AddOnPlan", "Customer", "Subscription")}
    typer.echo("valid: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


@app.command()
def plan(
    files: Files,
    fmt: Output = "table",
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="exit 2 when an apply would change something")] = False,
) -> None:
    """Effective specs, sync states, conflicts and the actions an apply would take."""
    from controller.reconcile import engine

    check_output(fmt)
    try:
        planned = plan_now(load(files))
    except typer.Exit as exc:
        raise typer.Exit(1 if detailed_exitcode else exc.exit_code) from None
    except errors.TenantctlError as exc:
        fail(exc, 1)
        return
    items = [{**s.item, "actions": planned.actions[n]} for n, s in planned.subscriptions.items()]
    if fmt == "json":
        output.print_json({"subscriptions": items, "deletions": planned.deletions})
    else:
        output.subscriptions_table(items, title="plan", with_actions=True)
        for name in planned.deletions:
            typer.echo(f"delete {name} (final backup, then kept {engine.RETENTION_DAYS} days: LIFE-6)")
    if detailed_exitcode and planned.has_changes:
        raise typer.Exit(2)


@app.command()
def effective(
    name: str,
    files: Annotated[list[Path] | None, typer.Option("-f", "--file", help="compute from these files "
                                                     "instead of reading the state store")] = None,
    fmt: Output = "json",
) -> None:
    """One subscription's effective spec, from the state store (or computed from -f);
    exit 2 if unknown."""
    from controller.model import values

    check_output(fmt)
    try:
        key = values.domain_name(name)
    except ValueError:
        key = name
    item: dict[str, Any] | None = None
    if files:
        sub = plan_now(load(files)).subscriptions.get(key)
        item = sub.item if sub is not None else None
    else:
        store = open_store(readonly=True)
        if store is not None:
            with store:
                item = next((d for d in store.get_status() if d["name"] == key), None)
    if item is None:
        fail(errors.UnknownObject(f"tenantctl: unknown subscription {name!r}"))
        return
    if fmt == "json":
        output.print_json({**item["effective"], **item})
    else:
        output.subscriptions_table([item], title=key)
        output.print_json(item["effective"])


def main() -> None:
    from controller.cli import commands  # noqa: F401  (registers the remaining commands)

    app()


if __name__ == "__main__":
    main()
