"""``tenantctl db``: tenant databases' credentials, shown only on request (issue 3, BKP-7)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from controller.state import store as state_store

db_app = typer.Typer(help="Tenant databases (MariaDB, PostgreSQL).", no_args_is_help=True)


@db_app.command("credentials")
def credentials(
    sub: Annotated[str, typer.Argument(help="subscription (its domain)")],
    db: Annotated[str, typer.Argument(help="database name as in the subscription's spec")],
    output: Annotated[str, typer.Option("-o", "--output", help="table or json")] = "table",
) -> None:
    """Print host, port, database, user and password of SUB's database DB."""
    from controller.drivers import db as db_driver  # here: every other command starts faster
    state_dir = state_store.default_path().parent
    try:
        creds = db_driver.credentials_of(state_dir, sub, db)
    except ValueError as exc:
        sys.stderr.write(f"tenantctl: {exc}\n")
        raise typer.Exit(2) from None
    if creds is None:
        sys.stderr.write(f"tenantctl: no database {db!r} provisioned for {sub!r}\n")
        raise typer.Exit(2)
    fields = {"engine": creds.engine, "host": creds.host, "port": creds.port, "database": creds.database,
              "user": creds.user, "password": creds.password}
    if output == "json":
        sys.stdout.write(json.dumps(fields, indent=2) + "\n")
    else:
        width = max(len(k) for k in fields)
        for key, value in fields.items():
            sys.stdout.write(f"{key:<{width}}  {value}\n")
