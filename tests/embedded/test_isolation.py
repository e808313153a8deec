"""Two environments on one machine (issue 7 point 1), and the identity marker bootstrap
writes (point 3), checked through real clients: ssh, the mysql client, curl, the CLI.

Both environments declare a server with the same name (``iso-1``) on different loopback
addresses, roles web + db-mariadb only, to keep them quick to bring up. They are brought
up once for the module; every test leaves both up and healthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker import errors as docker_errors

from controller import provisioning
from controller.drivers import embedded
from controller.drivers.embedded import engine, errors, pebble, servers

from .conftest import check_down, sessions_root

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(600)]

CLI = str(Path(sys.executable).parent / "tenantctl")
MARKER = provisioning.roles.MARKER
DATA_FILE = "/srv/iso-test.txt"


def server_doc(name: str, address: str) -> str:
    return (
        "apiVersion: tenantctl.io/v1\nkind: Region\nmetadata: {name: iso}\nspec: {timezone: UTC}\n---\n"
        f"apiVersion: tenantctl.io/v1\nkind: Server\nmetadata: {{name: {name}}}\n"
        f"spec:\n  region: iso\n  provider: docker\n  address: {address}\n"
        f"  ips: [{{address: {address}, type: shared}}]\n  roles: [web, db-mariadb]\n"
    )


@dataclass(frozen=True)
class Environment:
    """One environment of the module: its state directory, its server, its desired state."""

    state_dir: Path
    server: embedded.ServerSpec
    desired: Path

    @property
    def id(self) -> str:
        return embedded.env_id(self.state_dir)

    def up(self) -> None:
        embedded.env_up([self.server], self.state_dir)

    def ssh(self, command: str) -> subprocess.CompletedProcess[str]:
        key = provisioning.ssh_key(self.state_dir)
        return subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-i", str(key), f"root@{self.server.address}",
             command],
            capture_output=True, text=True, timeout=30, check=False,
        )

    def sql(self, statement: str) -> subprocess.CompletedProcess[str]:
        creds = provisioning.credentials(self.state_dir, self.server.name)
        return subprocess.run(
            ["mysql", f"--host={self.server.address}", f"--user={creds['mariadb_admin_user']}", "--batch",
             "--skip-column-names", f"--execute={statement}"],
            capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, "MYSQL_PWD": creds["mariadb_admin_password"]},
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "TENANTCTL_STATE_DIR": str(self.state_dir), "COLUMNS": "200"})

    def marker(self) -> str:
        done = self.ssh(f"cat {MARKER}")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def containers(self) -> dict[str, str]:
        """``{container name: docker status}`` of this environment's containers."""
        found = engine.find_engine()
        assert found is not None, "no docker engine answers"
        with contextlib.closing(found.client):
            return {str(c.name): str(c.status) for c in servers.environment_containers(found.client, self.id)}

    def write_data(self) -> None:
        """A file and a database row only this environment's server holds."""
        assert self.ssh(f"printf '%s' {self.id} > {DATA_FILE}").returncode == 0
        done = self.sql(f"CREATE DATABASE IF NOT EXISTS iso_test; "
                        f"CREATE TABLE IF NOT EXISTS iso_test.t (v VARCHAR(16)); "
                        f"DELETE FROM iso_test.t; INSERT INTO iso_test.t VALUES ('{self.id}')")
        assert done.returncode == 0, done.stderr

    def assert_data(self) -> None:
        assert self.ssh(f"cat {DATA_FILE}").stdout == self.id
        done = self.sql("SELECT v FROM iso_test.t")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == self.id


@dataclass(frozen=True)
class Pair:
    one: Environment
    two: Environment


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    envs = []
    for n, address in ((1, "127.0.26.1"), (2, "127.0.27.1")):
        state_dir = tmp_path_factory.mktemp(f"iso-state-{n}")
        desired = state_dir.parent / f"iso-desired-{n}.yaml"
        desired.write_text(server_doc("iso-1", address))
        spec = embedded.ServerSpec(name="iso-1", region="iso", provider="docker", address=address,
                                   ips=(servers.IpSpec(address),), roles=("web", "db-mariadb"))
        envs.append(Environment(state_dir, spec, desired))
    with contextlib.ExitStack() as stack:
        for env in envs:
            stack.enter_context(embedded.hold(env.state_dir))
        embedded.remove_abandoned([e.server for e in envs], prefix=sessions_root(tmp_path_factory))
        try:
            for env in envs:
                env.up()
                env.write_data()
            yield Pair(*envs)
        finally:
            for env in envs:
                check_down(embedded.env_down(env.state_dir, [env.server], destroy_data=True), env.state_dir)


def test_two_environments_run_side_by_side(pair: Pair) -> None:
    one, two = pair.one, pair.two
    assert one.id != two.id
    assert one.containers() == {f"tenantctl-{one.id}-iso-1": "running"}
    assert two.containers() == {f"tenantctl-{two.id}-iso-1": "running"}
    for env in (one, two):
        head = subprocess.run(["curl", "-sS", "-i", f"http://{env.server.address}/"], capture_output=True,
                              text=True, timeout=30, check=False)
        assert "X-Tenantctl-Server: iso-1" in head.stdout
        env.assert_data()
    assert one.marker() != two.marker()
    assert pebble.host(one.state_dir) != pebble.host(two.state_dir)


def test_bootstrap_writes_the_identity_marker_once(pair: Pair) -> None:
    env = pair.one
    first = env.marker()
    assert re.fullmatch(r"[a-z0-9]{32}", first)
    assert env.ssh(f"stat -c '%a %U' {MARKER}").stdout.strip() == "644 root"
    stats = provisioning.bootstrap([env.server], env.state_dir)
    assert stats["iso-1"].changed == 0, "the second bootstrap changed something"
    assert env.marker() == first


def test_down_of_one_environment_keeps_the_other_and_its_own_data(pair: Pair) -> None:
    one, two = pair.one, pair.two
    marker = one.marker()
    down = one.cli("env", "down")
    assert down.returncode == 0, down.stderr
    assert "stopped iso-1; kept their data" in down.stdout
    assert one.containers() == {f"tenantctl-{one.id}-iso-1": "exited"}
    # the other environment: still running, its data intact
    assert two.containers() == {f"tenantctl-{two.id}-iso-1": "running"}
    two.assert_data()
    assert two.cli("env", "status", "-f", str(two.desired)).returncode == 0
    # the downed one: status says so and exits 1, table and JSON still printed
    table = one.cli("env", "status", "-f", str(one.desired))
    assert table.returncode == 1
    assert re.search(r"^iso-1\s+stopped\s+127\.0\.26\.1", table.stdout, re.M), table.stdout
    assert "server iso-1 (127.0.26.1) is stopped" in table.stderr
    doc = json.loads(one.cli("env", "status", "-f", str(one.desired), "-o", "json").stdout)
    assert (doc["healthy"], doc["servers"][0]["state"]) == (False, "stopped")
    # up again: the same server, with its data and its identity
    one.up()
    assert one.containers() == {f"tenantctl-{one.id}-iso-1": "running"}
    one.assert_data()
    assert one.marker() == marker
    assert one.cli("env", "status", "-f", str(one.desired)).returncode == 0


def test_status_exits_1_while_a_service_is_down(pair: Pair) -> None:
    env = pair.two
    assert env.ssh("service mariadb stop").returncode == 0
    try:
        status = env.cli("env", "status", "-f", str(env.desired))
        assert status.returncode == 1
        assert "mariadb=down" in status.stdout
        assert "server iso-1 (127.0.27.1): mariadb down" in status.stderr
    finally:
        assert env.ssh("service mariadb start").returncode == 0
    assert env.cli("env", "status", "-f", str(env.desired)).returncode == 0


def test_up_refuses_an_address_of_another_environment(pair: Pair,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    intruder = tmp_path_factory.mktemp("iso-state-intruder")
    spec = embedded.ServerSpec(name="iso-x", region="iso", provider="docker", address=pair.two.server.address)
    with pytest.raises(errors.ServerError) as info:
        embedded.env_up([spec], intruder)
    message = str(info.value)
    assert f"address 127.0.27.1 is already used by container tenantctl-{pair.two.id}-iso-1" in message
    assert f"environment {pair.two.id} (state directory {pair.two.state_dir.resolve()})" in message
    assert not pebble.status(intruder)["running"], "a refused env up started its CA"
    assert Environment(intruder, spec, pair.two.desired).containers() == {}
    pair.two.assert_data()


def test_destroy_data_removes_the_server_and_a_new_one_has_a_new_identity(pair: Pair) -> None:
    one, two = pair.one, pair.two
    old_marker = one.marker()
    done = embedded.env_down(one.state_dir, destroy_data=True)
    assert done.removed == ("iso-1",) and done.stopped == ()
    assert one.containers() == {}
    two.assert_data()
    one.up()
    assert one.marker() != old_marker
    assert one.ssh(f"test -e {DATA_FILE}").returncode == 1
    assert one.sql("SHOW DATABASES LIKE 'iso\\_test'").stdout.strip() == ""
    one.write_data()  # as the fixture made it, for whatever runs next
    two.assert_data()


def test_only_what_a_dead_session_left_is_removed(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A container of an environment no live process holds (its session was killed) is
    removed when a new session needs its address; held environments are left alone."""
    root = sessions_root(tmp_path_factory)
    spec = embedded.ServerSpec(name="iso-1", region="iso", provider="docker", address="127.0.28.1")
    found = engine.find_engine()
    assert found is not None
    name = "tenantctl-deadbeef-iso-1"
    with contextlib.closing(found.client):
        image_id = found.client.containers.get(f"tenantctl-{pair.one.id}-iso-1").image.id
        found.client.containers.create(image_id, name=name, network_mode="host", labels={
            servers.LABEL: "iso-1", servers.ENV_LABEL: "deadbeef", servers.ADDRESSES_LABEL: spec.address,
            servers.STATE_LABEL: str(Path(root) / "pytest-killed" / "iso-state-0")})
        try:
            removed = embedded.remove_abandoned([spec, pair.one.server, pair.two.server], prefix=root)
            assert removed == [name]
            assert embedded.remove_abandoned([spec, pair.one.server, pair.two.server], prefix=root) == []
        finally:
            with contextlib.suppress(docker_errors.NotFound):
                found.client.containers.get(name).remove(force=True)
    assert pair.one.containers() == {f"tenantctl-{pair.one.id}-iso-1": "running"}
    assert pair.two.containers() == {f"tenantctl-{pair.two.id}-iso-1": "running"}
