"""The embedded servers for driver tests, brought up once for the package.

``TENANTCTL_TEST_STATE=DIR`` reuses an environment already up under DIR (developers
running one test at a time) and leaves it running; otherwise the session has an
environment of its own (a temporary state directory), destroyed at the end with its
data. Other environments on this machine (``make run``'s, another session's) are never
touched: only what a killed test session left on these servers' addresses is removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller import model
from controller.drivers import context, embedded
from controller.drivers.embedded import engine

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers.yaml"


@dataclass(frozen=True)
class Cluster:
    state_dir: Path
    servers_file: Path
    ctx: context.Context


def docker_specs(ds: model.DesiredState) -> list[embedded.ServerSpec]:
    return [embedded.ServerSpec.from_dict({"name": n, **s.model_dump(mode="json")}) for n, s in ds.servers.items()]


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    shared = os.environ.get("TENANTCTL_TEST_STATE")
    state_dir = Path(shared) if shared else tmp_path_factory.mktemp("drivers-state")
    ds = model.load_desired([SERVERS])
    specs = docker_specs(ds)
    with contextlib.ExitStack() as stack:
        if not shared:
            stack.enter_context(embedded.hold(state_dir))
            # what a killed test session left on these addresses (test sessions' state dirs only)
            embedded.remove_abandoned(specs, prefix=str(tmp_path_factory.getbasetemp().parent) + "/")
        embedded.env_up(specs, state_dir)
        try:
            yield Cluster(state_dir, SERVERS, context.Context.of(ds, state_dir))
        finally:
            if not shared and embedded.env_down(state_dir, only=specs, destroy_data=True).engine_stopped:
                # the last environment down: nothing of ours may be left running
                assert engine.engine_pid() is None, "env down left our dockerd running"
