"""The ``tenantctl`` entry point: registers every command group, then runs the app.

``tenantctl validate`` is the one command that needs none of the other groups (nor
the reconcile engine, the drivers and the metrics they import): it runs with the app
of ``controller.cli.common``, where it is declared, and starts a tenth of a second
sooner (issue 15: a cold ``validate`` is measured against a bare parse of the files).
Every other command line, ``--help`` included, registers every group first.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

import typer

from controller import errors
from controller.cli import common

__all__ = ["full_app", "main"]  # and ``app`` (module __getattr__: every group registered)

#: command lines that ``common``'s app runs alone (their first word)
LIGHT = frozenset({"validate"})
#: commands that run until stopped: nothing is frozen out of the collector there (with
#: frozen objects, ``model.cache.gc_paused`` freezes each load's documents, and in a
#: process that loads again and again the cyclic garbage of the moment with them)
LONG_LIVED = frozenset({"run", "operator"})


def full_app() -> typer.Typer:
    """The app with every command group registered."""
    # registers every command group; copy and demo: PLAT-2, PLAT-3
    from controller.cli import commands, copy, demo  # noqa: F401

    return common.app


def __getattr__(name: str) -> Any:  # ``from controller.cli.main import app``: every group
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    light = len(sys.argv) > 1 and sys.argv[1] in LIGHT
    run = common.app if light else full_app()
    # A command at 10,000 subscriptions makes about a million objects that live until it
    # ends: the collector's default (a young collection every 700 allocations, each old
    # one walking them all again) cost 15 % of a plan. The modules just imported are
    # frozen out of it (not in a process that runs until stopped); young collections are rarer.
    if not (len(sys.argv) > 1 and sys.argv[1] in LONG_LIVED):
        gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        run()
    except errors.TenantctlError as exc:  # bad settings, an unusable store: one line, no traceback
        for line in str(exc).splitlines():
            sys.stderr.write(f"{line}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
