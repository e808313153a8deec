"""The ``tenantctl`` entry point: registers every command group, then runs the app."""

from __future__ import annotations

import sys

from controller import errors
from controller.cli import commands  # noqa: F401  (registers every command group)
from controller.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except errors.TenantctlError as exc:  # bad settings, an unusable store: one line, no traceback
        for line in str(exc).splitlines():
            sys.stderr.write(f"{line}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
