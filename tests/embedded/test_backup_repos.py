"""The restic repository server of role ``backup`` (issue 9; BKP-1..3), through real
clients: restic 0.14 and curl on the host over TLS with the environment's backup CA, a
login written into the server's htpasswd the way the controller will (root over SSH),
restic inside a source server with the CA bootstrap put there, and the owner's restic on
the repository server's own disk.

An environment of this module's own: ``bkp-test-r`` (role backup, 127.0.90.1) and
``bkp-test-s`` (role dns, 127.0.91.1: no repository server, but the CA)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller import provisioning
from controller.drivers import embedded
from controller.provisioning import backup

from .conftest import check_down, sessions_root

pytestmark = pytest.mark.embedded

REPO_SERVER = embedded.ServerSpec.from_dict({
    "name": "bkp-test-r", "region": "ap-southeast", "provider": "docker", "address": "127.0.90.1",
    "ips": [{"address": "127.0.90.1", "type": "shared"}], "roles": ["backup"],
})
SOURCE = embedded.ServerSpec.from_dict({
    "name": "bkp-test-s", "region": "eu-west", "provider": "docker", "address": "127.0.91.1",
    "ips": [{"address": "127.0.91.1", "type": "shared"}], "roles": ["dns"],
})
#: the logins of the tests (source server names: the login names the design uses)
ALICE, BOB = "bkp-src-alice", "bkp-src-bob"


@dataclass(frozen=True)
class BackupEnv:
    state_dir: Path
    work: Path
    up_seconds: float

    def ssh(self, server: embedded.ServerSpec, argv: list[str], *, stdin: str = "",
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``argv`` as root on ``server`` (quoted: one remote shell word per item)."""
        key = provisioning.ssh_key(self.state_dir)
        return subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "-i", str(key), f"root@{server.address}", shlex.join(argv)],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False)

    def restic(self, login: str, password: str, *args: str, repo_of: str | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The host's restic as ``login`` against ``repo_of``'s repository (default: its own);
        the URL (it holds the login's password) in a 0600 ``--repository-file``."""
        url = backup.repo_url(login, password, REPO_SERVER.address)
        if repo_of is not None:
            url = url.replace(f"/{login}/main/", f"/{repo_of}/main/")
        repo_file = self.work / f"{login}-{repo_of or login}.repo"
        repo_file.touch(mode=0o600)
        repo_file.write_text(url)
        pw_file = self.work / f"{login}.pw"
        pw_file.touch(mode=0o600)
        pw_file.write_text(backup.repo_password(self.state_dir, login))
        return subprocess.run(
            ["restic", "--cacert", str(backup.ca(self.state_dir)), "--repository-file", str(repo_file),
             "--password-file", str(pw_file), "--cache-dir", str(self.work / "cache"), *args],
            capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, "HOME": str(self.work)})

    def set_logins(self, *logins: str) -> None:
        """Write the repository server's htpasswd (root over SSH, as the controller will)."""
        lines = "".join(backup.htpasswd_line(s, backup.login_password(self.state_dir, s)) + "\n" for s in logins)
        done = self.ssh(REPO_SERVER, ["sh", "-c", f"cat > {shlex.quote(backup.HTPASSWD)}"], stdin=lines)
        assert done.returncode == 0, done.stderr

    def pw(self, login: str) -> str:
        return backup.login_password(self.state_dir, login)


@pytest.fixture(scope="module")
def benv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackupEnv]:
    state_dir = tmp_path_factory.mktemp("backup-state")
    work = tmp_path_factory.mktemp("backup-work")
    specs = [REPO_SERVER, SOURCE]
    with embedded.hold(state_dir):
        embedded.remove_abandoned(specs, prefix=sessions_root(tmp_path_factory))
        try:
            started = time.monotonic()
            embedded.env_up(specs, state_dir)
            up_seconds = time.monotonic() - started
            print(f"\nbackup env up (containers, bootstrap) in {up_seconds:.1f}s")
            benv = BackupEnv(state_dir=state_dir, work=work, up_seconds=up_seconds)
            benv.set_logins(ALICE, BOB)
            yield benv
        finally:
            check_down(embedded.env_down(state_dir, only=specs, destroy_data=True), state_dir)


@pytest.fixture(scope="module")
def alice_snapshot(benv: BackupEnv) -> str:
    """ALICE's repository made over TLS from the host, with one snapshot: its id."""
    started = time.monotonic()
    init = benv.restic(ALICE, benv.pw(ALICE), "init")
    print(f"\nfirst restic init over TLS in {time.monotonic() - started:.2f}s")
    assert init.returncode == 0, init.stderr
    data = benv.work / "data"
    data.mkdir(exist_ok=True)
    (data / "hello.txt").write_text("hello from the host\n")
    done = benv.restic(ALICE, benv.pw(ALICE), "backup", "--host", ALICE, "--tag", "kind=files", str(data))
    assert done.returncode == 0, done.stderr
    listed = benv.restic(ALICE, benv.pw(ALICE), "snapshots", "--json")
    assert listed.returncode == 0, listed.stderr
    [snap] = json.loads(listed.stdout)
    return str(snap["id"])


def _curl(benv: BackupEnv, login: str, password: str, method: str, path: str) -> str:
    """HTTP status of ``method`` on ``path`` of the repository server, over TLS with the CA."""
    cfg = benv.work / "curl.cfg"  # the login stays out of argv
    cfg.touch(mode=0o600)
    cfg.write_text(f'user = "{login}:{password}"\n')
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(backup.ca(benv.state_dir)),
         "-K", str(cfg), "-X", method, f"https://{REPO_SERVER.address}:{backup.PORT}{path}"],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


class TestService:
    def test_status_probes_the_repository_server(self, benv: BackupEnv) -> None:
        status = embedded.env_status([REPO_SERVER, SOURCE], benv.state_dir)
        by_name = {s["name"]: s["services"] for s in status["servers"]}
        assert by_name[REPO_SERVER.name] == {"ssh": "up", "restic-rest": "up", "node-exporter": "up"}
        assert "restic-rest" not in by_name[SOURCE.name]
        assert status["healthy"] is True

    def test_runs_as_its_own_user_on_the_servers_address_only(self, benv: BackupEnv) -> None:
        done = benv.ssh(REPO_SERVER, ["ps", "-o", "user:32=,args=", "-C", "rclone"])
        assert done.returncode == 0, done.stderr
        [line] = done.stdout.strip().splitlines()
        user, args = line.split(None, 1)
        assert user == backup.USER
        assert f"--addr {REPO_SERVER.address}:{backup.PORT}" in args
        assert "--append-only" in args and "--private-repos" in args
        assert not embedded.servers._tcp_up(SOURCE.address, backup.PORT, timeout=0.5)

    def test_files_and_modes(self, benv: BackupEnv) -> None:
        done = benv.ssh(REPO_SERVER, ["stat", "-c", "%n %U:%G %a", backup.REPO_ROOT, "/etc/tenantctl-backup",
                                      "/etc/tenantctl-backup/server.key", backup.HTPASSWD, backup.CA_ON_SERVERS])
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            f"{backup.REPO_ROOT} tenantctl-backup:tenantctl-backup 700",
            "/etc/tenantctl-backup root:tenantctl-backup 750",
            "/etc/tenantctl-backup/server.key root:tenantctl-backup 640",
            f"{backup.HTPASSWD} root:tenantctl-backup 640",
            f"{backup.CA_ON_SERVERS} root:root 644",
        ]
        shell = benv.ssh(REPO_SERVER, ["getent", "passwd", backup.USER])
        assert shell.stdout.strip().endswith(":/usr/sbin/nologin")

    def test_every_server_has_the_ca(self, benv: BackupEnv) -> None:
        done = benv.ssh(SOURCE, ["cat", backup.CA_ON_SERVERS])
        assert done.stdout == backup.ca_pem(benv.state_dir)


class TestClients:
    def test_a_login_backs_up_and_lists_over_tls(self, benv: BackupEnv, alice_snapshot: str) -> None:
        listed = benv.restic(ALICE, benv.pw(ALICE), "snapshots", "--json")
        assert [s["id"] for s in json.loads(listed.stdout)] == [alice_snapshot]
        [snap] = json.loads(listed.stdout)
        assert (snap["hostname"], snap["tags"]) == (ALICE, ["kind=files"])

    def test_without_the_ca_the_server_is_not_trusted(self, benv: BackupEnv, alice_snapshot: str) -> None:
        cfg = benv.work / "nocurl.cfg"
        cfg.touch(mode=0o600)
        cfg.write_text(f'user = "{ALICE}:{benv.pw(ALICE)}"\n')
        done = subprocess.run(["curl", "-s", "-K", str(cfg), f"https://{REPO_SERVER.address}:{backup.PORT}/"
                               f"{ALICE}/main/config"], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 60  # peer certificate cannot be authenticated with known CA certificates

    def test_another_login_is_forbidden_on_that_repository(self, benv: BackupEnv, alice_snapshot: str) -> None:
        done = benv.restic(BOB, benv.pw(BOB), "snapshots", repo_of=ALICE)
        assert done.returncode != 0
        assert "403" in done.stderr
        assert _curl(benv, BOB, benv.pw(BOB), "GET", f"/{ALICE}/main/config") == "403"

    def test_a_wrong_password_is_unauthorized(self, benv: BackupEnv, alice_snapshot: str) -> None:
        done = benv.restic(ALICE, "W" * 32, "snapshots")
        assert done.returncode != 0
        assert "401" in done.stderr
        assert _curl(benv, ALICE, "W" * 32, "GET", f"/{ALICE}/main/config") == "401"

    def test_append_only_refuses_a_login_deleting(self, benv: BackupEnv, alice_snapshot: str) -> None:
        # restic's own forget retries ~43 s against the 403 (field notes): the same request, raw
        assert _curl(benv, ALICE, benv.pw(ALICE), "DELETE", f"/{ALICE}/main/snapshots/{alice_snapshot}") == "403"
        keys = benv.restic(ALICE, benv.pw(ALICE), "key", "list", "--json")
        assert keys.returncode == 0, keys.stderr
        key_id = json.loads(keys.stdout)[0]["id"]
        assert _curl(benv, ALICE, benv.pw(ALICE), "DELETE", f"/{ALICE}/main/keys/{key_id}") == "403"
        listed = benv.restic(ALICE, benv.pw(ALICE), "snapshots", "--json")
        assert [s["id"] for s in json.loads(listed.stdout)] == [alice_snapshot]

    def test_a_source_server_reaches_it_with_the_ca_bootstrap_wrote(self, benv: BackupEnv) -> None:
        url = backup.repo_url(BOB, benv.pw(BOB), REPO_SERVER.address)
        script = ('umask 077; d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
                  'read -r url; read -r pw; printf %s "$url" > "$d/repo"; printf %s "$pw" > "$d/pw"; '
                  'restic --cacert "$1" --repository-file "$d/repo" --password-file "$d/pw" --no-cache init '
                  '&& restic --cacert "$1" --repository-file "$d/repo" --password-file "$d/pw" --no-cache '
                  'backup --host "$2" /etc/hostname')
        done = benv.ssh(SOURCE, ["sh", "-c", script, "sh", backup.CA_ON_SERVERS, BOB],
                        stdin=f"{url}\n{backup.repo_password(benv.state_dir, BOB)}\n")
        assert done.returncode == 0, done.stderr
        listed = benv.restic(BOB, benv.pw(BOB), "snapshots", "--json")
        assert [s["hostname"] for s in json.loads(listed.stdout)] == [BOB]


class TestOwner:
    def test_the_owner_forgets_on_the_servers_disk(self, benv: BackupEnv, alice_snapshot: str) -> None:
        done = benv.ssh(REPO_SERVER, [
            "runuser", "-u", backup.USER, "--", "restic", "-r", backup.owner_path(ALICE),
            "--cache-dir", "/var/lib/tenantctl-backup/cache", "forget", "--prune", alice_snapshot,
        ], stdin=backup.repo_password(benv.state_dir, ALICE) + "\n")
        assert done.returncode == 0, done.stderr
        listed = benv.restic(ALICE, benv.pw(ALICE), "snapshots", "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []


class TestBootstrap:
    def test_second_bootstrap_changes_nothing_and_keeps_the_logins(self, benv: BackupEnv) -> None:
        before = benv.ssh(REPO_SERVER, ["cat", backup.HTPASSWD]).stdout
        assert before.count("\n") == 2
        stats = provisioning.bootstrap([REPO_SERVER, SOURCE], benv.state_dir)
        assert {h: s.changed for h, s in stats.items()} == {REPO_SERVER.name: 0, SOURCE.name: 0}
        assert benv.ssh(REPO_SERVER, ["cat", backup.HTPASSWD]).stdout == before

    def test_a_restarted_server_starts_it_again(self, benv: BackupEnv, alice_snapshot: str) -> None:
        """Without a bootstrap: the container's entrypoint starts the autostart list."""
        started = time.monotonic()
        down = embedded.env_down(benv.state_dir, only=[REPO_SERVER])
        assert down.stopped == (REPO_SERVER.name,)
        assert not embedded.servers._tcp_up(REPO_SERVER.address, backup.PORT, timeout=0.5)
        embedded.servers.up([REPO_SERVER], benv.state_dir)
        deadline = time.monotonic() + 30
        while not embedded.servers._tcp_up(REPO_SERVER.address, backup.PORT, timeout=0.5):
            assert time.monotonic() < deadline, "the repository server did not come back"
            time.sleep(0.2)
        print(f"\nrepository server stopped and started again in {time.monotonic() - started:.1f}s")
        opened = benv.restic(ALICE, benv.pw(ALICE), "cat", "config")
        assert opened.returncode == 0, opened.stderr
        embedded.env_up([REPO_SERVER, SOURCE], benv.state_dir)  # bootstrap marks follow the restart
