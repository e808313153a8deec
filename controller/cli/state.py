"""``tenantctl state``: copies of the state store (backup, restore)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller import errors
from controller.cli import common
from controller.state import backup, migrations
from controller.state import store as state_store

state_app = typer.Typer(no_args_is_help=True, help="Back up and restore the state store.")


def _db() -> Path:
    return common.state_dir() / "state.db"


@state_app.command(name="backup")
def backup_(
    to: Annotated[Path | None, typer.Option("--to", help="write the copy here (default: "
                                             "<state>/backups/state-<UTC time>.db, keeping the last 14)")] = None,
) -> None:
    """A consistent copy of the state store, taken while a controller may be writing."""
    db = _db()
    if not db.exists():
        common.fail(errors.StateError(f"{db}: no state store to back up (has the controller run?)"), 2)
    try:
        with state_store.Store.open_readonly(db, require_latest=False) as st:
            path = backup.take(st, db.parent / "backups", common.now()) if to is None else st.backup_to(to)
            counts = st.counts()
    except errors.StateError as exc:
        common.fail(exc, 2)
        return
    typer.echo(f"{path}: {counts['subscriptions']} subscriptions, {counts['events']} events")


@state_app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="a copy made by `tenantctl state backup` (or the nightly one)")],
) -> None:
    """Replace the state store by a copy; refused while a controller holds the store.
    The replaced file is kept as state.db.before-restore-<UTC time>."""
    db = _db()
    try:
        done = backup.restore(file, db, common.now())
    except FileNotFoundError as exc:
        common.fail(errors.StateError(str(exc)), 2)
        return
    except errors.StateError as exc:
        common.fail(exc, 2)
        return
    typer.echo(f"restored {db} from {file}: {done.source.describe()}")
    if done.kept is not None:
        typer.echo(f"the replaced store is kept as {done.kept}")
    if done.source.version < migrations.latest():
        typer.echo(f"schema version {done.source.version}: the next apply or run migrates it to "
                   f"{migrations.latest()} (read-only commands refuse it until then)")
