"""The live backup tests' environment: the embedded servers of ``desired/`` (two regions,
each with a repository server), up once per session in an environment of their own and
destroyed at the end; the real ``tenantctl`` runs as a subprocess (``e2e.conftest.E2E``)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.conftest import E2E

from controller import model
from controller.drivers import embedded

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    root = tmp_path_factory.mktemp("backup-live")
    state, desired = root / "state", root / "desired"
    shutil.copytree(HERE / "desired", desired)
    ds = model.load_desired([desired])
    specs = [embedded.ServerSpec.from_dict({"name": n, **s.model_dump(mode="json")}) for n, s in ds.servers.items()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    env.update(TENANTCTL_STATE_DIR=str(state), COLUMNS="200")
    with contextlib.ExitStack() as stack:
        stack.enter_context(embedded.hold(state))
        embedded.remove_abandoned(specs, prefix=str(tmp_path_factory.getbasetemp().parent) + "/")
        embedded.env_up(specs, state)
        try:
            yield E2E(state, desired, specs, env)
        finally:
            embedded.env_down(state, only=specs, destroy_data=True)
