"""The region-loss drill's environment: the embedded servers of ``desired/`` (two
regions, one full server each), up once for the package in an environment of their own and
destroyed when its last test is done; the real ``tenantctl`` runs as a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.conftest import E2E, environment

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="package")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with environment(tmp_path_factory, HERE / "desired", "region-drill") as env:
        yield env
