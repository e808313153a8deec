"""The region-loss drill's environment: the embedded servers of ``desired/`` (two
regions, one full server each), up once per session in an environment of their own and
destroyed at the end; the real ``tenantctl`` runs as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.conftest import E2E, environment

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with environment(tmp_path_factory, HERE / "desired", "region-drill") as env:
        yield env
