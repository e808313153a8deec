"""Fixtures of the model tests: the real CLI, each test with its own state directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .cli_run import Result, run_cli


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        return run_cli(args, tmp_path / "state")

    return run
