"""Commands that act: apply, run, status, sync, env, db."""

from __future__ import annotations

from controller.cli.main import app

__all__ = ["app"]
