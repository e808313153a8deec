"""``tenantctl backup run|list|export|verify|dr-drill`` and ``tenantctl restore`` (issue 9;
contract in desired-state.md, "Backups and restores"; the disaster-recovery drill on
spare servers: issue 10 item 5, DR-1).

Thin: the topology comes from the desired state (``-f``, its servers and regions), what
is backed up from the status the engine recorded, everything else from
``controller.drivers.backup``. Exit codes: 0 done, 1 some part failed (named), 2 bad
input or nothing matches (nothing changed).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from controller import errors
from controller.cli import common

if TYPE_CHECKING:
    from controller.drivers import transport
    from controller.drivers.backup import topology
    from controller.state import store as state_store

backup_app = typer.Typer(help="Nightly backups: run, list, export, verify (BKP-1..7).", no_args_is_help=True)

Sub = Annotated[str, typer.Argument(help="subscription (its domain)")]


@dataclass(frozen=True)
class Wired:
    ds: Any
    topo: topology.Topology
    store: state_store.Store
    pool: transport.Pool
    items: list[dict[str, Any]]
    settings_of: Any


@contextmanager
def _wired(files: list[Path]) -> Iterator[Wired]:
    from controller.drivers import backup_settings, context, transport
    from controller.drivers.backup import topology
    from controller.reconcile import status as status_mod

    ds = common.load(files)
    store = common.open_store(readonly=False)
    assert store is not None
    ctx = context.Context.of(ds, common.state_dir())
    topo = topology.Topology.of(ctx)
    if not topo.repositories:
        common.fail(errors.TenantctlError("no server has the backup role: nowhere to keep backups"), 2)
    pool = transport.Pool(ctx)
    try:
        items = [i for i in status_mod.items(store) if i.get("state") != "deleted"]
        docs = {name: [sub.model_dump(mode="json", warnings=False)] for name, sub in ds.subscriptions.items()}
        yield Wired(ds, topo, store, pool, items, backup_settings.builder(ctx, lambda s: docs.get(s, [])))
    finally:
        pool.close()
        store.close()


def _progress(total: int, what: str) -> Any:
    from rich.progress import Progress

    bar = Progress(transient=True, console=None)
    task = bar.add_task(what, total=total)
    return bar, task


@backup_app.command("run")
def run(
    files: common.Files,
    subs: Annotated[list[str] | None, typer.Argument(help="subscriptions (default: --server or --all)")] = None,
    server: Annotated[str | None, typer.Option("--server", help="every subscription this server holds")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every subscription")] = False,
) -> None:
    """Back up now, then copy to the other regions (exit 1 names each failure)."""
    from controller.drivers.backup import driver, pitr, runner, units

    if sum(bool(x) for x in (subs, server, all_)) != 1:
        common.fail(errors.TenantctlError("name subscriptions, or --server S, or --all (one of them)"), 2)
    with _wired(files) as w:
        topo, store, pool, items, settings_of = w.topo, w.store, w.pool, w.items, w.settings_of
        known = {i["name"] for i in items}
        if subs:
            unknown = sorted(set(subs) - known)
            if unknown:
                common.fail(errors.UnknownObject(f"unknown subscription(s): {', '.join(unknown)}"), 2)
            chosen: list[str] = list(subs)
        elif server:
            if server not in topo.ctx.servers:
                common.fail(errors.UnknownObject(f"unknown server {server!r}"), 2)
            chosen = sorted({u.subscription for u in units.by_server(items).get(server, [])})
        else:
            chosen = sorted(units.wanted(items))
        driver.BackupDriver(topo.ctx, settings_of).ensure_logins()
        bar, task = _progress(len(units.by_server(items, chosen)), "backing up")
        with bar:
            report = runner.Runner(topo, store, pool, settings_of).run(
                items, common.now(), only=chosen, progress=lambda _s, _n: bar.advance(task))
            # PostgreSQL's point-in-time base backups of the chosen subscriptions' servers (BKP-4)
            bases = pitr.base_backups(topo, pool, [i for i in items if i["name"] in set(chosen)], common.now(),
                                      verify=False)
        _record_event(store, "backup", report)
    for sub in chosen:
        err = report.subscriptions.get(sub)
        typer.echo(f"{sub}: {'ok' if err is None else 'FAILED: ' + err}")
    for srv, err in sorted(bases.items()):
        typer.echo(f"{srv}: point-in-time base backup {'ok' if not err else 'FAILED: ' + err}")
    for (srv, region), err in sorted(report.targets.items()):
        if err is not None:
            typer.echo(f"{srv} -> {region}: copy missing ({err}); the next run catches up")
    state = "Succeeded" if report.ok else "PartiallyFailed"
    typer.echo(f"{state}: {len(chosen) - len(report.failed)}/{len(chosen)} subscriptions in "
               f"{report.seconds:.1f} s, {report.added} bytes added")
    raise typer.Exit(0 if report.ok and not any(bases.values()) else 1)


def _record_event(store: Any, action: str, report: Any) -> None:
    from controller.state import events

    failed = report.failed
    events.record(store, actor=common.actor(), action=action, subject="*", concern="backup",
                  message=("succeeded" if report.ok else f"partially failed: {', '.join(sorted(failed))}"),
                  data={"failed": failed, "copiesMissing": {f"{s}->{r}": e for (s, r), e in
                                                            report.copies_missing.items()}})


@backup_app.command("list")
def list_(sub: Sub, output: common.Output = "table") -> None:
    """Snapshots of SUB per region, newest first, and its latest DR drill."""
    from controller.state import backups as ledger
    from controller.state import drills

    store = common.open_store(readonly=True)
    if store is None or store.get_subscription(sub) is None:
        common.fail(errors.UnknownObject(f"unknown subscription {sub!r}"), 2)
    assert store is not None
    with store:
        snaps = ledger.snapshots(store, sub)
        dr = drills.latest(store).get(sub)
    rows: list[dict[str, Any]] = [{"id": s.id, "time": s.taken_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
             "region": s.region, "kind": s.kind, "name": s.name, "bytes": s.bytes, "verified": s.verified,
             "final": s.final} for s in snaps]
    if output == "json":
        json.dump({"subscription": sub, "snapshots": rows, "drDrill": dr.as_dict() if dr else None}, sys.stdout,
                  indent=2)
        sys.stdout.write("\n")
        return
    typer.echo(f"{'ID':10} {'TIME':21} {'REGION':14} {'KIND':9} {'NAME':24} {'BYTES':>12} VERIFIED")
    for r in rows:
        typer.echo(f"{r['id'][:8]:10} {r['time'][:19]:21} {r['region']:14} {r['kind']:9} {r['name']:24} "
                   f"{r['bytes']:>12} {'yes' if r['verified'] else 'no'}{' (final)' if r['final'] else ''}")
    typer.echo(f"{len(rows)} snapshots")
    typer.echo(f"DR drill: {_dr_line(dr) if dr else 'never'}")


def _dr_line(d: Any) -> str:
    """One drill as a line: when, ok or the error, RTO, RPO, from where into which spare,
    its notes (remarks that are no failure)."""
    doc = d.as_dict()
    where = f"from {d.source_region} into {d.spare} ({d.spare_region})" if d.spare else "no spare"
    notes = f" (note: {d.notes})" if d.notes else ""
    if not d.ok:
        return f"{doc['at']} FAILED {where}: {d.error}{notes}"
    return (f"{doc['at']} ok, RTO {d.rto_seconds:.1f} s, RPO {(d.rpo_seconds or 0.0) / 3600:.2f} h "
            f"({d.rpo_basis}), {where}{notes}")


@backup_app.command("dr-drill")
def dr_drill(
    files: common.Files,
    subs: Annotated[list[str] | None, typer.Option("--sub", help="drill these subscriptions (default: tonight's "
                                                                     "sample)")] = None,
    count: Annotated[int | None, typer.Option("--count", min=0, help="subscriptions in tonight's sample")] = None,
    output: common.Output = "table",
) -> None:
    """The disaster-recovery drill now (DR-1): restore from another region's repository
    into a spare server of another region, fetch the site over HTTP there, compare the
    databases, remove the scratch copy; RTO and RPO recorded (exit 1 on a failure)."""
    from controller.drivers.backup import drdrill

    with _wired(files) as w:
        spares = sorted(n for n, s in w.ds.servers.items() if s.spare)
        if not spares:
            common.fail(errors.TenantctlError("no spare server (Server.spec.spare): nowhere to drill"), 2)
        known = {i["name"] for i in w.items}
        unknown = sorted(set(subs or ()) - known)
        if unknown:
            common.fail(errors.UnknownObject(f"unknown subscription(s): {', '.join(unknown)}"), 2)
        done = drdrill.DrDrill(w.topo, w.store, w.pool, spares).run(
            w.items, common.now(), only=subs, count=drdrill.DEFAULT_PER_NIGHT if count is None else count)
        from controller.state import events

        bad = {s: d.error for s, d in done.items() if not d.ok}
        events.record(w.store, actor=common.actor(), action="dr-drill" if not bad else "failed", subject="*",
                      concern="backup", message=(f"{len(done)} subscription(s) drilled on spares" if not bad else
                                                 f"DR drill failed: {', '.join(sorted(bad))}"),
                      data={s: d.as_dict() for s, d in done.items()})
    if output == "json":
        json.dump({"drills": {s: d.as_dict() for s, d in sorted(done.items())}}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for s, d in sorted(done.items()):
            typer.echo(f"dr-drill {s}: {_dr_line(d)}")
        typer.echo(f"{len(done) - len(bad)}/{len(done)} drilled ok")
    raise typer.Exit(1 if bad else 0)


@backup_app.command("verify")
def verify(
    files: common.Files,
    check: Annotated[bool, typer.Option("--check/--no-check", help="restic check of every region")] = True,
    drill: Annotated[bool, typer.Option("--drill/--no-drill", help="tonight's restore drill")] = True,
    rotate: Annotated[bool, typer.Option("--rotate/--no-rotate", help="rotation (forget, server-side)")] = True,
    read: Annotated[str | None, typer.Option("--read", help="check: read this data subset (e.g. 100%)")] = None,
    subs: Annotated[list[str] | None, typer.Option("--sub", help="drill these subscriptions (default: "
                                                                     "tonight's share)")] = None,
) -> None:
    """The nightly care now: rotation, repository check, restore drill (exit 1 on a failure)."""
    from controller.drivers.backup import nightly

    with _wired(files) as w:
        topo, store, pool, items = w.topo, w.store, w.pool, w.items
        now = common.now()
        out = nightly.Outcome()
        job = nightly.Nightly(topo, store, pool)
        if rotate:
            job.rotate(items, now, out)
        if check:
            job.check(now, out, read=read)
        if drill:
            job.drill(items, now, out, only=subs)
    for region, removed in sorted(out.removed.items()):
        typer.echo(f"rotation {region}: {len(removed)} snapshot(s) removed")
    for region, err in sorted(out.checks.items()):
        typer.echo(f"check {region}: {'ok' if err is None else 'FAILED: ' + err}")
    for sub, err in sorted(out.drills.items()):
        typer.echo(f"drill {sub}: {'ok' if err is None else 'FAILED: ' + err}")
    bad = any(out.checks.values()) or any(out.drills.values())
    raise typer.Exit(1 if bad else 0)


@backup_app.command("export")
def export(files: common.Files, sub: Sub,
           db: Annotated[str, typer.Argument(help="database name as in the subscription's spec")]) -> None:
    """A plain dump of SUB's database DB on stdout, made now (BKP-7)."""
    from controller.drivers import naming
    from controller.drivers.backup import exporting

    with _wired(files) as w:
        pool, items = w.pool, w.items
        item = next((i for i in items if i["name"] == sub), None)
        if item is None:
            common.fail(errors.UnknownObject(f"unknown subscription {sub!r}"), 2)
        assert item is not None
        spec_db = next((d for d in item.get("effective", {}).get("databases", []) if d["name"] == db), None)
        if spec_db is None:
            common.fail(errors.UnknownObject(f"{sub} has no database {db!r}"), 2)
        assert spec_db is not None
        server = spec_db.get("server") or item["server"]
        with tempfile.TemporaryDirectory(prefix="tenantctl-export-", dir=common.state_dir()) as tmp:
            path = Path(tmp) / "dump.sql"
            try:
                exporting.export(pool.get(server), spec_db["engine"], naming.database(sub, db), path)
            except errors.TenantctlError as exc:
                common.fail(exc, 1)
            with path.open("rb") as fh:
                shutil.copyfileobj(fh, sys.stdout.buffer)


def restore(
    files: common.Files,
    sub: Sub,
    at: Annotated[str, typer.Option("--at", help="ISO-8601 time (UTC if no offset) or 'latest'")] = "latest",
    from_region: Annotated[str | None, typer.Option("--from-region", help="region to restore from")] = None,
    only: Annotated[str | None, typer.Option("--only", help="files, settings or db:NAME")] = None,
    suspend_during: Annotated[bool, typer.Option("--suspend-during", help="serve the suspended page while "
                                                                          "restoring")] = False,
    output: common.Output = "table",
) -> None:
    """Restore SUB from its backups (BKP-5: what the backup holds is created or replaces
    what exists; what it does not hold is left untouched)."""
    import time

    from controller.drivers.backup import pitr
    from controller.drivers.backup import restore as restore_mod
    from controller.reconcile import backups as backups_mod
    from controller.state import backups as ledger
    from controller.state import events

    when: dt.datetime | None = None
    if at != "latest":
        try:
            when = dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            common.fail(errors.TenantctlError(f"--at {at!r}: expected an ISO-8601 time or 'latest'"), 2)
        assert when is not None
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    with _wired(files) as w:
        topo, store, pool, items = w.topo, w.store, w.pool, w.items
        item = next((i for i in items if i["name"] == sub), None)
        if item is None:
            common.fail(errors.UnknownObject(f"unknown subscription {sub!r}"), 2)
        assert item is not None
        # With --at and a plan with backup.pitr, databases are recovered to that point
        # (BKP-4); the rest comes from the newest nightly snapshot at or before it.
        point = when is not None and pitr.wanted(item) and (only is None or only.startswith("db:"))
        dbs: list[str] = []
        choice: restore_mod.Choice | None = None
        try:
            if point:
                assert when is not None
                placed = [d["name"] for d in item["effective"]["databases"] if d.get("server")]
                dbs = [only[3:]] if only else placed
                pitr.check(topo, pool, store, item, dbs, when, common.now())
            if not (point and only):
                choice = restore_mod.choose(topo, ledger.snapshots(store, sub), item, at=when, region=from_region,
                                            only=only)
                if point:
                    choice = restore_mod.without_databases(choice)
        except (restore_mod.NothingToRestore, pitr.OutOfRange) as exc:
            common.fail(exc, 2)
            raise AssertionError from None
        started = time.monotonic()
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        recovered: list[pitr.Recovered] = []
        source = choice.region if choice is not None else "the point-in-time archive"
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True) as bar:
            bar.add_task(f"restoring {sub} from {source}", total=None)
            results: list[Any] = []
            try:
                with backups_mod.suspended(w.ds, common.state_dir(), item) if suspend_during \
                        else contextlib.nullcontext():
                    if choice is not None and choice.parts:
                        results = restore_mod.restore(topo, pool, sub, choice)
                    for db in dbs:
                        assert when is not None
                        recovered.append(pitr.recover(topo, pool, store, item, db, when, region=from_region))
            except errors.TenantctlError as exc:
                failure: str | None = str(exc)
            else:
                failure = "; ".join(f"{r.kind} {r.name}: {r.error}" for r in results if not r.ok) or None
        seconds = time.monotonic() - started
        settings = next((r for r in results if r.kind == "settings" and r.ok and r.content), None)
        saved = None
        if settings is not None:
            saved = common.state_dir() / "restored" / sub / f"settings-{common.now().strftime('%Y%m%dT%H%M%SZ')}.json"
            saved.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            saved.write_text(settings.content)
            saved.chmod(0o600)
        points = [{"database": r.database, "engine": r.engine, "base": r.base, "stoppedAt": r.stopped_at,
                   "region": r.region} for r in recovered]
        events.record(store, actor=common.actor(), action="restore" if failure is None else "failed", subject=sub,
                      concern="backup", message=(f"restored from {source} in {seconds:.1f} s"
                                                 if failure is None else f"restore failed: {failure}"),
                      data={"region": choice.region if choice else None,
                            "snapshots": [s.id for s in choice.snapshots] if choice else [],
                            "pointInTime": points, "only": only, "at": at})
    doc = {"subscription": sub, "region": choice.region if choice else None, "ok": failure is None, "error": failure,
           "seconds": round(seconds, 2), "parts": [{"kind": r.kind, "name": r.name, "snapshot": r.snapshot,
                                                    "ok": r.ok, "error": r.error or None} for r in results],
           "pointInTime": points, "settingsFile": str(saved) if saved else None}
    if output == "json":
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            typer.echo(f"{r.kind} {r.name}: {'restored' if r.ok else 'FAILED: ' + r.error} ({r.snapshot[:8]})")
        for p in points:
            typer.echo(f"db {p['database']} ({p['engine']}): recovered to {at} from {p['base']}, replay stopped at "
                       f"{p['stoppedAt']} (archive in {p['region']})")
        if saved:
            typer.echo(f"settings saved to {saved} (review, then apply what you need)")
        typer.echo(f"{'restored' if failure is None else 'FAILED'}: {sub} from {source} in {seconds:.1f} s")
    raise typer.Exit(0 if failure is None else 1)


common.app.command("restore")(restore)
