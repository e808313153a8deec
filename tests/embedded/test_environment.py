"""The embedded environment seen from the host, through real clients only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from controller import provisioning
from controller.drivers import embedded
from controller.drivers.embedded import errors, servers
from controller.provisioning import ansible

from .conftest import Env

pytestmark = pytest.mark.embedded

UNUSED_ADDRESS = "127.0.22.1"
"""A loopback address no server uses: nothing of the environment may answer there."""


def run(argv: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert shutil.which(argv[0]), f"{argv[0]} is not installed on the host"
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, **(env or {})})


class TestWeb:
    def test_nginx_answers_on_the_first_server(self, env: Env) -> None:
        result = run(["curl", "-sS", "-i", f"http://{env.a.address}/"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("HTTP/1.1 200")
        assert "Server: nginx" in result.stdout
        assert f"X-Tenantctl-Server: {env.a.name}" in result.stdout

    def test_second_server_is_a_distinct_nginx(self, env: Env) -> None:
        names = [run(["curl", "-sS", f"http://{s.address}/.tenantctl/server"]).stdout.strip()
                 for s in (env.a, env.b)]
        assert names == [env.a.name, env.b.name]

    def test_php_fpm_answers_its_ping_through_nginx(self, env: Env) -> None:
        for server in (env.a, env.b):
            result = run(["curl", "-sS", f"http://{server.address}{servers.FPM_PING_PATH}"])
            assert result.stdout.strip() == "pong"


class TestDatabases:
    def test_mariadb_admin_login_over_tcp(self, env: Env) -> None:
        creds = provisioning.credentials(env.state_dir, env.a.name)
        result = run(
            ["mysql", f"--host={env.a.address}", f"--user={creds['mariadb_admin_user']}",
             "--batch", "--skip-column-names", "--execute=SELECT @@bind_address"],
            env={"MYSQL_PWD": creds["mariadb_admin_password"]},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == env.a.address

    def test_mariadb_refuses_a_wrong_password(self, env: Env) -> None:
        result = run(["mysql", f"--host={env.a.address}", "--user=tenantctl", "--execute=SELECT 1"],
                     env={"MYSQL_PWD": "wrong"})
        assert result.returncode != 0
        assert "Access denied" in result.stderr

    def test_postgresql_admin_login_over_tcp(self, env: Env) -> None:
        creds = provisioning.credentials(env.state_dir, env.a.name)
        result = run(
            ["psql", f"host={env.a.address} user={creds['postgresql_admin_user']} dbname=postgres",
             "--no-psqlrc", "--tuples-only", "--no-align", "--command=SHOW listen_addresses"],
            env={"PGPASSWORD": creds["postgresql_admin_password"]},
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == env.a.address


class TestDns:
    def test_pdns_serves_a_zone_created_through_its_api(self, env: Env) -> None:
        key = provisioning.credentials(env.state_dir, env.a.name)["pdns_api_key"]
        zone = "emb-test.example."
        body = json.dumps({"name": zone, "kind": "Native", "nameservers": ["ns1.emb-test.example."]})
        request = urllib.request.Request(
            f"http://{env.a.address}:8081/api/v1/servers/localhost/zones",
            data=body.encode(), method="POST",
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 201
        except urllib.error.HTTPError as exc:  # 409: created by an earlier run on a kept server
            exc.close()
            assert exc.code == 409
        result = run(["dig", "+short", "+time=2", "+tries=1", f"@{env.a.address}", zone, "NS"])
        assert result.stdout.strip() == "ns1.emb-test.example."
        soa = run(["dig", "+norec", "+time=2", "+tries=1", f"@{env.a.address}", zone, "SOA"])
        assert "status: NOERROR" in soa.stdout
        assert " aa" in soa.stdout.split("flags:")[1].split(";")[0]  # authoritative answer

    def test_pdns_on_the_second_server_answers(self, env: Env) -> None:
        result = run(["dig", "+time=2", "+tries=1", f"@{env.b.address}", "unknown.example.", "SOA"])
        assert result.returncode == 0
        assert "status: REFUSED" in result.stdout  # an authoritative server with no such zone

    def test_pdns_api_wants_the_key(self, env: Env) -> None:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://{env.b.address}:8081/api/v1/servers", timeout=10)
        info.value.close()
        assert info.value.code == 401


class TestIsolation:
    @pytest.mark.parametrize("port", [22, 53, 80, 3306, 5432, 8081])
    def test_nothing_answers_on_an_unused_address(self, env: Env, port: int) -> None:
        assert not servers._tcp_up(UNUSED_ADDRESS, port)

    def test_second_server_has_no_database(self, env: Env) -> None:
        assert not servers._tcp_up(env.b.address, 3306)
        assert not servers._tcp_up(env.b.address, 5432)

    def test_ssh_takes_only_our_key(self, env: Env, tmp_path_factory: pytest.TempPathFactory) -> None:
        key = provisioning.ssh_key(env.state_dir)
        assert key.stat().st_mode & 0o777 == 0o600
        base = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5"]
        ours = run([*base, "-i", str(key), f"root@{env.a.address}", "cat /proc/1/comm"])
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout.strip() == "tini"
        other = tmp_path_factory.mktemp("otherkey") / "id"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)])
        theirs = run([*base, "-o", "IdentitiesOnly=yes", "-i", str(other), f"root@{env.a.address}", "true"])
        assert theirs.returncode == 255
        assert "Permission denied" in theirs.stderr


class TestLifecycle:
    def test_status_reports_every_service_up(self, env: Env) -> None:
        status = embedded.env_status(env.servers, env.state_dir)
        by_name = {s["name"]: s for s in status["servers"]}
        assert by_name[env.a.name]["state"] == "running"
        assert by_name[env.a.name]["services"] == dict.fromkeys(
            ["ssh", "nginx", "php-fpm", "mariadb", "postgresql", "pdns", "pdns-api", "node-exporter",
             "nginx-exporter", "nginx-status", "mysqld-exporter", "postgres-exporter"], "up")
        assert by_name[env.b.name]["services"] == dict.fromkeys(
            ["ssh", "nginx", "php-fpm", "pdns", "pdns-api", "node-exporter", "nginx-exporter", "nginx-status"], "up")
        assert set(by_name[env.b.name]) == {"name", "region", "provider", "address", "state", "roles",
                                               "os", "services"}
        assert by_name[env.b.name]["os"] == "debian-12"  # no os in its document: bookworm
        assert status["healthy"] is True
        assert status["environment"]["id"] == embedded.env_id(env.state_dir)

    def test_status_of_an_unknown_server_is_missing(self, env: Env) -> None:
        ghost = embedded.ServerSpec(name="emb-ghost", region="x", provider="docker", address="127.0.23.1")
        [entry] = embedded.env_status([ghost], env.state_dir)["servers"]
        assert entry["state"] == "missing"
        assert set(entry["services"].values()) == {"down"}
        assert embedded.env_status([ghost], env.state_dir)["healthy"] is False

    def test_second_bootstrap_changes_nothing(self, env: Env) -> None:
        started = time.monotonic()
        stats = provisioning.bootstrap(env.servers, env.state_dir)
        print(f"\nidempotent bootstrap of 2 servers in {time.monotonic() - started:.1f}s")
        assert {h: s.changed for h, s in stats.items()} == {env.a.name: 0, env.b.name: 0}
        assert all(s.ok > 0 and s.failed == 0 for s in stats.values())

    def test_up_again_is_a_no_op(self, env: Env) -> None:
        started = time.monotonic()
        embedded.env_up(env.servers, env.state_dir)
        assert time.monotonic() - started < 5

    def test_a_failed_task_is_mapped_with_its_message(self, env: Env, tmp_path_factory:
                                                       pytest.TempPathFactory) -> None:
        project = tmp_path_factory.mktemp("failing-project")
        (project / "fail.yml").write_text(
            "- hosts: all\n  gather_facts: false\n  tasks:\n"
            "    - name: Refuse on purpose\n      ansible.builtin.fail:\n        msg: boom on purpose\n"
        )
        with pytest.raises(errors.PlaybookError) as info:
            ansible.run_playbook("fail.yml", [env.b], env.state_dir, project_dir=project)
        assert (info.value.host, info.value.task) == (env.b.name, "Refuse on purpose")
        assert "boom on purpose" in str(info.value)
