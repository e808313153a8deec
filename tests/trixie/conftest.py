"""The live trixie tests' environment: the two servers of ``desired/`` (one Debian 13, one
Debian 12, addresses 127.0.115.x), up once for the package (test_live.py, then
test_live_demo.py on what it left) in an environment of their own and destroyed at the end; the real ``tenantctl`` runs as a subprocess (``e2e.conftest.E2E``).
``env_up_seconds`` is how long bringing them up took (containers and bootstrap)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.conftest import E2E, environment

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    started = time.monotonic()
    with environment(tmp_path_factory, HERE / "desired", "trixie-live") as env:
        print(f"\ntrixie environment up in {time.monotonic() - started:.1f}s")
        yield env
