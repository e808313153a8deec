"""Fixtures of the kube tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .support import Result, tenantctl


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    def run(*args: str) -> Result:
        return tenantctl(*args, state=tmp_path / "state")

    return run
