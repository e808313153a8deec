"""The embedded environment for the whole session: two docker servers on their own
loopback addresses, brought up once (image cached under the engine root) and torn down
at the end, where ``env down`` must leave no container and no dockerd of ours."""

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


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state_dir = tmp_path_factory.mktemp("embedded-state")
    specs = (SERVER_A, SERVER_B)
    found = engine.find_engine()
    if found is not None:  # leftovers of an interrupted run of these tests (other servers stay)
        with contextlib.closing(found.client):
            for spec in specs:
                for container in found.client.containers.list(all=True, filters={"name": spec.container_name}):
                    container.remove(force=True)
    try:
        started = time.monotonic()
        embedded.env_up(list(specs), state_dir)
        up_seconds = time.monotonic() - started
        print(f"\nembedded env up (image, containers, bootstrap) in {up_seconds:.1f}s")
        yield Env(a=SERVER_A, b=SERVER_B, state_dir=state_dir, up_seconds=up_seconds)
    finally:
        # Other servers (another session fixture) may still run: then they check the full down.
        if embedded.env_down(state_dir, only=list(specs)):
            assert engine.engine_pid() is None, "env down left our dockerd running"
            assert _processes_under(engine.engine_root()) == [], "env down left engine processes"
        external = engine.find_engine()
        if external is not None:  # an engine we did not start: only our containers must be gone
            with contextlib.closing(external.client):
                names = {c.name for c in external.client.containers.list(all=True, filters={"label": servers.LABEL})}
                assert not names & {s.container_name for s in specs}


def _processes_under(root: Path) -> list[str]:
    """Command lines of processes that mention the engine root (dockerd, containerd, shims)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if str(root) in cmdline:
            found.append(cmdline)
    return found
