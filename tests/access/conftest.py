"""The live access tests' environment (issue 14 points 2 and 3): one embedded server on
127.0.109.1 in an environment of its own (a temporary state directory), up once for
the module's tests and destroyed with its data at the end, like tests/drivers' cluster.

Embedded servers are created with CAP_SYS_NICE and CAP_DAC_READ_SEARCH, which Debian's
pure-ftpd keeps (built with capabilities, it exits 252 without them) and Docker does not
give by default (``controller.drivers.embedded.servers.FTP_CAPABILITIES``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from drivers.conftest import Cluster, docker_specs

from controller import model
from controller.drivers import context, embedded

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers.yaml"
@pytest.fixture(scope="module")
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
