"""What every ``tenantctl`` command shares: the app, loading, the store, the clock
(../shared/desired-state.md, "CLI"). The entry point is ``main``; the command groups
live in their own modules.

``tenantctl validate`` runs with this module alone (``controller.cli.main``): what only
the other commands need (the output module, which brings ``effective`` and placement;
the state store) is imported by the functions that use it."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller import errors, model, settings

if TYPE_CHECKING:
    from controller.drivers import transport
    from controller.state import store as state_store

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reconcile hosting subscriptions with their desired state.")

Files = Annotated[list[Path], typer.Option("-f", "--file", help="desired-state file or directory (repeatable)")]
Output = Annotated[str, typer.Option("-o", "--output", help="table, wide (every column) or json")]
ShowAll = Annotated[bool, typer.Option("--all", help="every row (default: only changes, conflicts, failures, "
                                                     "not synced; then a summary line)")]
Customer = Annotated[str | None, typer.Option("--customer", help="only this customer's subscriptions")]
Server = Annotated[str | None, typer.Option("--server", help="only the subscriptions placed on this server")]
Selector = Annotated[str | None, typer.Option("-l", "--selector", help="only the subscriptions whose metadata.labels "
                                              "match (kubectl syntax: k=v,k!=v,k,!k,k in (a,b))")]


def now() -> dt.datetime:
    """The controller's clock; ``TENANTCTL_NOW`` (ISO-8601) fixes it for tests and demos."""
    fixed = settings.current().core.now
    return fixed if fixed is not None else dt.datetime.now(dt.UTC)


def clock() -> Callable[[], dt.datetime]:
    """``now`` for one command's store and engine: the settings read once (a pass asks
    the time for every row it writes; reading the environment each time cost 0.7 s at
    2,000 subscriptions)."""
    fixed = settings.current().core.now
    if fixed is not None:
        return lambda: fixed
    return lambda: dt.datetime.now(dt.UTC)


def actor() -> str:
    """Who runs this command, as the event log names them (OPS-5): ``cli:USER``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def fail(err: errors.TenantctlError, code: int = 2) -> None:
    for line in str(err).splitlines():
        sys.stderr.write(f"{line}\n")
    raise typer.Exit(code)


def load(files: list[Path]) -> model.DesiredState:
    try:
        return model.load_desired(files, cache_dir=state_dir() / "parse-cache")
    except errors.InputError as exc:
        sys.stderr.write(f"tenantctl: {len(exc.issues)} error(s) in the desired state\n")
        fail(exc)
        raise AssertionError from None  # unreachable


def state_dir() -> Path:
    return settings.current().core.state_dir.resolve()


def drivers_for(ds: model.DesiredState) -> dict[str, Any]:
    """The drivers of every concern for this desired state's servers."""
    from controller.drivers import context, registry

    return dict(registry.build(context.Context.of(ds, state_dir())))


def close_drivers(drivers: dict[str, Any]) -> None:
    from controller.drivers import base

    for driver in drivers.values():
        if isinstance(driver, base.Closeable):
            driver.close()


def wiring(ds: model.DesiredState) -> tuple[dict[str, Any], Any]:
    """The drivers and the servers' identity probe for this desired state."""
    from controller.drivers import context, registry

    ctx = context.Context.of(ds, state_dir())
    return dict(registry.build(ctx)), registry.probe(ctx)


def threshold() -> Any:
    """The mass-deletion guard's threshold (``TENANTCTL_MAX_DELETE[_PERCENT]``)."""
    from controller.reconcile import guard

    g = settings.current().guard
    return guard.Threshold(count=g.max_delete, percent=g.max_delete_percent)


def plan_now(ds: model.DesiredState, drivers: dict[str, Any] | None = None) -> Any:
    """Plan against the state store (if any), with the drivers apply would use, so that
    fingerprints compare like with like."""
    from controller.reconcile import engine

    store = open_store(readonly=True)
    try:
        return engine.plan(ds, now(), store, drivers if drivers is not None else drivers_for(ds))
    finally:
        if store is not None:
            store.close()


@contextlib.contextmanager
def sandbox_pool(ds: model.DesiredState, store: state_store.Store, name: str) -> Iterator[transport.Pool]:
    """Connections to the servers for filling sandbox ``name`` (a demo reset, a copy
    refresh), closed at the end; exit 2, nothing changed, while it is not placed with its
    web space provisioned."""
    from controller.drivers import context, transport
    from controller.reconcile import demo

    if not demo.ready(store.get_status_of(name)):
        fail(errors.TenantctlError(f"{name} is not placed with its web space provisioned yet: apply it first"), 2)
    pool = transport.Pool(context.Context.of(ds, state_dir()))
    try:
        yield pool
    finally:
        pool.close()


def open_store(*, readonly: bool) -> state_store.Store | None:
    """The state store; read-only commands open it read-only (None if there is none).
    An unusable store (corrupt, foreign, newer) is one line on stderr and exit 2."""
    from controller.state import store as state_store

    path = settings.current().core.state_dir / "state.db"
    try:
        if readonly:
            if not path.exists():
                return None
            return state_store.Store.open_readonly(path)
        return state_store.Store(path, now=clock())
    except errors.StateError as exc:
        fail(exc, 2)
        raise AssertionError from None  # unreachable


def check_output(fmt: str) -> None:
    from controller.cli import output

    if fmt not in output.FORMATS:
        sys.stderr.write(f"tenantctl: -o expects {', '.join(output.FORMATS)}, got {fmt!r}\n")
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
    refresh: Annotated[bool, typer.Option("--refresh", help="ask the servers what drifted (one listing per server "
                                                            "and concern) and show its repair")] = False,
    show_all: ShowAll = False,
    customer: Customer = None,
    server: Server = None,
    selector: Selector = None,
) -> None:
    """Effective specs, sync states, conflicts and the actions an apply would take."""
    from controller.cli import output
    from controller.reconcile import engine, guard

    check_output(fmt)
    try:
        ds = load(files)
        names = labelled(ds, selector)
        drivers = drivers_for(ds)
        store = open_store(readonly=True)
        try:
            planned = engine.plan(ds, now(), store, drivers, recorded=False)  # streamed from the store below
            drifted = _refresh(drivers, planned) if refresh else {}
            live = store.count_live() if store is not None else 0
            decision = guard.decide(planned.deletions, live, threshold(), allowed=False)
            if fmt == "json":
                output.stream_json("subscriptions", _plan_json(planned, store, drifted, customer, server, names), {
                    "deletions": planned.deletions, "deletionsHeld": decision.held and bool(planned.deletions),
                    **({"deletionGuard": decision.message} if decision.held else {})})
            else:
                rows, ages = plan_rows(planned, store, drifted)
                output.subscriptions_table(output.select(rows, customer=customer, server=server, names=names),
                                           title="plan", with_actions=True, wide=fmt == "wide", show_all=show_all,
                                           ages=ages)
                for name in planned.deletions:
                    typer.echo(f"delete {name} (final backup, then kept {engine.RETENTION_DAYS} days: LIFE-6)")
                if decision.held:
                    typer.echo(f"HELD: {decision.message}")
        finally:
            close_drivers(drivers)
            if store is not None:
                store.close()
    except typer.Exit as exc:
        raise typer.Exit(1 if detailed_exitcode else exc.exit_code) from None
    except errors.TenantctlError as exc:
        fail(exc, 1)
        return
    if detailed_exitcode and (planned.has_changes or drifted):
        raise typer.Exit(2)


def labelled(ds: model.DesiredState, selector: str | None) -> frozenset[str] | None:
    """The subscriptions whose ``metadata.labels`` match ``selector`` (None: no selector)."""
    if selector is None:
        return None
    from controller.cli import output

    matches = output.parse_selector(selector)
    return frozenset(name for name in ds.subscriptions if matches(ds.docs[("Subscription", name)].labels))


def _plan_json(planned: Any, store: state_store.Store | None, drifted: dict[str, dict[str, str]],
               customer: str | None, server: str | None, names: frozenset[str] | None) -> Iterator[Any]:
    """Every planned row, in name order, one at a time: an unchanged subscription's row is
    its recorded status document as SQLite rewrites it (never decoded here), the others
    are computed items with their actions."""
    from controller.cli import output
    from controller.reconcile import planner

    recorded: Iterator[tuple[Any, ...]] = iter(())
    extract = [k for k, v in (("customer", customer), ("server", server)) if v is not None]
    if store is not None and planned.unchanged:
        recorded = store.iter_status_raw(drop=(*planner.STATUS_ONLY, "actions"), extract=extract)
    ahead = next(recorded, None)
    for name in planned.subscriptions:
        if names is not None and name not in names:
            continue
        if name in planned.unchanged and name not in drifted:
            while ahead is not None and ahead[0] < name:
                ahead = next(recorded, None)
            if ahead is not None and ahead[0] == name:
                if all(got == want for got, want in zip(ahead[2:], (v for v in (customer, server) if v is not None),
                                                        strict=True)):
                    text: str = ahead[1]  # a JSON object without "actions": add it as text
                    yield f'{text[:-1]}{"," if len(text) > 2 else ""}"actions":[]}}'
                continue
        acts = list(planned.actions[name]) + [f"repair:{c}" for c in sorted(drifted.get(name, {}))]
        item = {**planned.item(name), "actions": acts, **({"drift": drifted[name]} if name in drifted else {})}
        if output.wanted(item, customer=customer, server=server):
            yield item


def plan_rows(planned: Any, store: state_store.Store | None, drifted: dict[str, dict[str, str]]
               ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """What the plan table shows: the recorded rows of unchanged subscriptions (read by
    SQLite), computed items for the rest; READY and AGE from the store."""
    from controller.cli import output
    from controller.reconcile import status as status_mod

    recorded = {r["name"]: r for r in status_mod.rows(store)} if store is not None else {}
    at = now()
    ages = {n: output.age(r["createdAt"], at) for n, r in recorded.items()}
    rows: list[dict[str, Any]] = []
    for name in planned.subscriptions:
        acts = list(planned.actions[name]) + [f"repair:{c}" for c in sorted(drifted.get(name, {}))]
        rec = recorded.get(name)
        if name in planned.unchanged and name not in drifted and rec is not None:
            rows.append({**rec, "actions": acts})
            continue
        item = planned.item(name)
        rows.append({k: item.get(k) for k in ("name", "customer", "plan", "server", "ip", "state", "stateReason",
                                               "sync", "conflicts", "conditions")}
                    | {"concerns": rec["concerns"] if rec else {}, "actions": acts})
    return rows, ages


def _refresh(drivers: dict[str, Any], planned: Any) -> dict[str, dict[str, str]]:
    """What the drift-aware drivers find lost or changed on the servers (read-only);
    nothing before the first apply (no placement was ever applied)."""
    from controller.reconcile import drift

    if not (settings.current().core.state_dir / "state.db").exists():
        return {}
    found = drift.detect(drivers, planned)
    for (concern, server), why in sorted(found.unreachable.items()):
        sys.stderr.write(f"tenantctl: cannot check {concern} on {server}: {why}\n")
    return found.drifted


@app.command()
def effective(
    name: str,
    files: Annotated[list[Path] | None, typer.Option("-f", "--file", help="compute from these files "
                                                     "instead of reading the state store")] = None,
    fmt: Output = "json",
) -> None:
    """One subscription's effective spec, from the state store (or computed from -f);
    exit 2 if unknown."""
    from controller.cli import output
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
                item = store.get_status_of(key)
    if item is None:
        fail(errors.UnknownObject(f"tenantctl: unknown subscription {name!r}"))
        return
    if fmt == "json":
        output.print_json({**item["effective"], **item})
    else:
        output.subscriptions_table([item], title=key)
        output.print_json(item["effective"])
