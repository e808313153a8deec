"""The live access tests' environment (issue 14 points 2 and 3): one embedded server on
127.0.109.1 in an environment of its own (a temporary state directory), up once for
the package's tests (both modules: one env up, not two) and destroyed with its data at
the end, like tests/drivers' cluster. Each test deletes what it created (``env``).

Embedded servers are created with CAP_SYS_NICE and CAP_DAC_READ_SEARCH, which Debian's
pure-ftpd keeps (built with capabilities, it exits 252 without them) and Docker does not
give by default (``controller.drivers.embedded.servers.FTP_CAPABILITIES``).

``env``: a test's view of the cluster (``support.AccessEnv``; a module overrides
``env_class`` for its own subclass), closed after the test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from drivers.conftest import Cluster, docker_specs

from controller import model
from controller.drivers import context, embedded

from .support import AccessEnv

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers.yaml"


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state_dir = tmp_path_factory.mktemp("access-state")
    ds = model.load_desired([SERVERS])
    specs = docker_specs(ds)
    with contextlib.ExitStack() as stack:
        stack.enter_context(embedded.hold(state_dir))
        embedded.remove_abandoned(specs, prefix=str(tmp_path_factory.getbasetemp().parent) + "/")
        try:
            embedded.env_up(specs, state_dir)
            yield Cluster(state_dir, SERVERS, context.Context.of(ds, state_dir))
        finally:
            embedded.env_down(state_dir, only=specs, destroy_data=True)


@pytest.fixture
def env_class() -> type[AccessEnv]:
    return AccessEnv


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path, env_class: type[AccessEnv]) -> Iterator[AccessEnv]:
    e = env_class(cluster, tmp_path)
    try:
        yield e
    finally:
        e.close()
