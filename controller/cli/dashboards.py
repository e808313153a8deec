"""``tenantctl dashboards``: write tenantctl's Grafana dashboards (controller/dashboards/)
as JSON files into ``--out`` (default ``monitoring/grafana/``, where they are checked in);
``--check`` writes nothing and exits 1 when a file there differs from what the code
generates. Registered in controller/cli/main.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller.dashboards import DEFAULT_DIR  # the generator (boards) only inside the command: ~0.1 s


def dashboards(
    out: Annotated[Path, typer.Option("--out", help="directory of the dashboard JSON files")] = DEFAULT_DIR,
    check: Annotated[bool, typer.Option("--check", help="exit 1 if a file differs, write nothing")] = False,
) -> None:
    """Grafana dashboards (overview, server, TLS, DNS, backups) generated from code."""
    from controller.dashboards import boards

    if check:
        stale = boards.differing(out)
        for name in stale:
            typer.echo(f"tenantctl: {out / name} differs from the generated dashboard", err=True)
        if stale:
            raise typer.Exit(1)
        typer.echo(f"{len(boards.BOARDS)} dashboards in {out} are up to date")
        return
    changed = boards.write(out)
    for path in changed:
        typer.echo(f"wrote {path}")
    typer.echo(f"{len(boards.BOARDS)} dashboards in {out} ({len(changed)} changed)")
