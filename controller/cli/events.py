"""``tenantctl events``: the audit log (OPS-5) and the runs (passes) that wrote it."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import typer

from controller import errors
from controller.cli import output
from controller.cli.common import Output, app, check_output, fail, now, open_store
from controller.state import events, records

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, at: dt.datetime) -> dt.datetime:
    """``1h``, ``30m``, ``2d``, ``1h30m`` (before ``at``) or an ISO-8601 time (UTC if
    it names no zone)."""
    value = text.strip()
    parts = _DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return at - dt.timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise errors.TenantctlError(
            f"tenantctl: --since expects a duration (30m, 1h, 2d, 1h30m) or an ISO-8601 time, got {text!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def event_doc(ev: records.Event) -> dict[str, Any]:
    """One event as ``events -o json`` prints it."""
    return {
        "at": ev.at.isoformat(), "actor": ev.actor, "action": ev.action, "subject": ev.subject,
        "concern": ev.concern, "run": ev.run_id, "message": ev.message, "data": ev.data,
    }


def run_doc(run: records.Run) -> dict[str, Any]:
    """One run as ``events --runs -o json`` prints it."""
    return {
        "run": run.id, "actor": run.actor, "command": run.command, "startedAt": run.started_at.isoformat(),
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "unfinished": run.finished_at is None, "summary": run.summary,
    }


def _summary_text(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return " ".join(f"{k}={v}" for k, v in summary.items() if v not in (0, [], None, ""))


@app.command(name="events")
def events_(
    since: Annotated[str | None, typer.Option("--since", help="a duration (1h, 30m, 2d) or an ISO-8601 time")] = None,
    subscription: Annotated[str | None, typer.Option("--subscription", "--subject",
                                                     help="only this subscription (or other subject)")] = None,
    action: Annotated[str | None, typer.Option("--action", help="only this action (create, update, delete, ...)")] = None,
    concern: Annotated[str | None, typer.Option("--concern", help="only this concern (web, php, db, dns, tls, ...)")] = None,
    run: Annotated[int | None, typer.Option("--run", help="only the events of this run")] = None,
    runs: Annotated[bool, typer.Option("--runs", help="list the runs (passes) instead: start, end "
                                                      "(or unfinished), actor, command, summary")] = False,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, the most recent")] = 50,
    fmt: Output = "table",
) -> None:
    """The audit log (OPS-5): who did what, to which subscription and concern, in which run."""
    check_output(fmt)
    if limit < 0:
        fail(errors.TenantctlError(f"tenantctl: --limit must be >= 0, got {limit}"))
    try:
        since_at = parse_since(since, now()) if since is not None else None
    except errors.TenantctlError as exc:
        fail(exc)
        return
    store = open_store(readonly=True)
    if store is None:
        if fmt == "json":
            output.print_json([])
        return
    with store:
        if runs:
            found_runs = store.list_runs(since=since_at, limit=limit)
            evs: list[records.Event] = []
        else:
            evs = events.list_events(store, subject=subscription, since=since_at, action=action, concern=concern,
                                     run_id=run, limit=limit, last=True)
    if runs:
        if fmt == "json":
            output.print_json([run_doc(r) for r in found_runs])
            return
        for r in found_runs:
            end = r.finished_at.isoformat() if r.finished_at else "unfinished"
            typer.echo(f"run {r.id:<6} {r.started_at.isoformat()} {end:<32} {r.actor:<10} {r.command:<8} "
                       f"{_summary_text(r.summary)}")
        return
    if fmt == "json":
        output.print_json([event_doc(e) for e in evs])
        return
    for ev in evs:
        where = f"{ev.subject}/{ev.concern}" if ev.concern else ev.subject
        run_text = f"run {ev.run_id}" if ev.run_id is not None else "-"
        typer.echo(f"{ev.at.isoformat()} {run_text:<9} {ev.actor:<10} {ev.action:<10} {where} {ev.message}")
