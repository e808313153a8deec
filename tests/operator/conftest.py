"""Fixtures for the operator: kmock as a MOCK Kubernetes API server, fake drivers,
replicas on their own threads (helpers in ``operator_harness``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import pytest
import pytest_asyncio
from operator_harness import Fakes, Replica, serve_kinds


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest_asyncio.fixture
async def api(kmock: kmock_lib.KubernetesEmulator) -> AsyncIterator[kmock_lib.KubernetesEmulator]:
    """The MOCK API server (kmock) serving the six kinds and Leases."""
    serve_kinds(kmock)
    yield kmock


@pytest_asyncio.fixture
async def replicas(api: kmock_lib.KubernetesEmulator, tmp_path: Path,
                   fakes: Fakes) -> AsyncIterator[Callable[..., Replica]]:
    """Start replicas sharing one state directory (one volume, as deploy/ does);
    every one still running is stopped at the end."""
    started: list[Replica] = []

    def start(identity: str = "replica-a", **opts: Any) -> Replica:
        r = Replica(api, tmp_path / "state", fakes, identity, **opts).start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.control.stop()
    for r in started:
        await r.join()
