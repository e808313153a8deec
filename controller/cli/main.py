"""The ``tenantctl`` entry point: registers every command group, then runs the app."""

from __future__ import annotations

import gc
import sys

from controller import errors
from controller.cli import commands  # noqa: F401  (registers every command group)
from controller.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    # A command at 10,000 subscriptions makes about a million objects that live until it
    # ends: the collector's default (a young collection every 700 allocations, each old
    # one walking them all again) cost 15 % of a plan. The modules just imported are
    # frozen out of it; young collections are rarer.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        app()
    except errors.TenantctlError as exc:  # bad settings, an unusable store: one line, no traceback
        for line in str(exc).splitlines():
            sys.stderr.write(f"{line}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
