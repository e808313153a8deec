"""The embedded environment of this package's tests: two docker servers on their own
loopback addresses, brought up once (image cached under the engine root) and destroyed
when the package's last test is done (``env down --destroy-data`` of this session's environment only), where the
last environment down must leave no dockerd of ours."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from controller.drivers import embedded
from controller.drivers.embedded import engine, servers

SERVER_A = embedded.ServerSpec.from_dict({
    "apiVersion": "tenantctl.io/v1",
    "kind": "Server",
    "metadata": {"name": "emb-test-a"},
    "spec": {
        "region": "eu-west",
        "provider": "docker",
        "address": "127.0.20.1",
        "ips": [{"address": "127.0.20.1", "type": "shared"}],
        "roles": ["web", "db-mariadb", "db-postgresql", "dns"],
    },
})
SERVER_B = embedded.ServerSpec.from_dict({
    "name": "emb-test-b",
    "region": "us-east",
    "provider": "docker",
    "address": "127.0.21.1",
    "ips": [{"address": "127.0.21.1", "type": "shared"}],
    "roles": ["web", "dns"],
})


@dataclass(frozen=True)
class Env:
    """The running environment handed to tests."""

    a: embedded.ServerSpec
    """web, db-mariadb, db-postgresql, dns on 127.0.20.1."""
    b: embedded.ServerSpec
    """web, dns on 127.0.21.1."""
    state_dir: Path
    up_seconds: float

    @property
    def servers(self) -> list[embedded.ServerSpec]:
        return [self.a, self.b]


def sessions_root(factory: pytest.TempPathFactory) -> str:
    """The prefix of every test session's state directories (``/tmp/pytest-of-<user>/``):
    what a killed session left there, on our addresses, may be removed."""
    return str(factory.getbasetemp().parent) + "/"


@pytest.fixture(scope="package")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state_dir = tmp_path_factory.mktemp("embedded-state")
    specs = [SERVER_A, SERVER_B]
    with embedded.hold(state_dir):
        embedded.remove_abandoned(specs, prefix=sessions_root(tmp_path_factory))
        try:
            started = time.monotonic()
            embedded.env_up(specs, state_dir)
            up_seconds = time.monotonic() - started
            print(f"\nembedded env up (image, containers, bootstrap) in {up_seconds:.1f}s")
            yield Env(a=SERVER_A, b=SERVER_B, state_dir=state_dir, up_seconds=up_seconds)
        finally:
            check_down(embedded.env_down(state_dir, only=specs, destroy_data=True), state_dir)


def check_down(done: embedded.Down, state_dir: Path) -> None:
    """What any environment's ``env down --destroy-data`` must leave: none of its
    containers; and, when it was the last one, no dockerd of ours and no engine process."""
    if done.engine_stopped:
        assert engine.engine_pid() is None, "env down left our dockerd running"
        assert _processes_under(engine.engine_root()) == [], "env down left engine processes"
        return
    found = engine.find_engine()
    if found is not None:  # other environments remain: only ours must be gone
        with contextlib.closing(found.client):
            assert servers.environment_containers(found.client, embedded.env_id(state_dir)) == []


def _processes_under(root: Path) -> list[str]:
    """Command lines of processes that mention the engine root (dockerd, containerd, shims)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if str(root) in cmdline:
            found.append(cmdline)
    return found
