"""``tenantctl events``: the audit log (OPS-5)."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli.main import app, open_store
from controller.state import events


@app.command(name="events")
def events_(
    subject: Annotated[str | None, typer.Option("--subject", help="only this subscription")] = None,
    limit: int = 50,
) -> None:
    """The audit log (OPS-5)."""
    store = open_store(readonly=True)
    if store is None:
        return
    with store:
        evs = events.list_events(store, subject=subject, limit=10**9)
    for ev in evs[-limit:]:
        typer.echo(f"{ev.at.isoformat()} {ev.actor:<10} {ev.action:<10} {ev.subject} {ev.message}")

