"""The backup repositories' secrets (issue 9, BKP-1..3): made once, kept 0600 under the
state directory, certificates checked with openssl, bcrypt lines checked by a real
``rclone serve restic``."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.provisioning import ansible, backup, roles

RCLONE_ADDRESS = "127.0.0.1"


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _x509_text(pem: str) -> str:
    done = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, capture_output=True, text=True,
                          check=True)
    return done.stdout


class TestCa:
    def test_made_once_and_kept_private(self, tmp_path: Path) -> None:
        crt = backup.ca(tmp_path)
        first = crt.read_bytes()
        assert backup.ca(tmp_path).read_bytes() == first
        folder = tmp_path / "secrets" / "backup"
        assert crt.parent == folder and _mode(folder) == 0o700
        assert {p.name: _mode(p) for p in folder.iterdir()} == {"ca.crt": 0o600, "ca.key": 0o600, ".lock": 0o600}
        text = _x509_text(backup.ca_pem(tmp_path))
        assert "CA:TRUE" in text and "prime256v1" in text and "Certificate Sign" in text

    def test_a_loosened_mode_is_tightened(self, tmp_path: Path) -> None:
        backup.ca(tmp_path)
        key = tmp_path / "secrets" / "backup" / "ca.key"
        key.chmod(0o644)
        backup.ca(tmp_path)
        assert _mode(key) == 0o600


class TestServerCert:
    def test_names_the_address_and_the_server(self, tmp_path: Path) -> None:
        cert, key = backup.server_cert(tmp_path, "ap-southeast-1", "127.0.13.1")
        text = _x509_text(cert)
        assert "DNS:ap-southeast-1, IP Address:127.0.13.1" in text
        assert "Issuer: CN = tenantctl backup CA" in text and "TLS Web Server Authentication" in text
        assert key.startswith("-----BEGIN PRIVATE KEY-----")
        folder = tmp_path / "secrets" / "backup"
        assert _mode(folder / "ap-southeast-1.key") == 0o600 and _mode(folder / "ap-southeast-1.crt") == 0o600

    def test_verifies_against_the_ca(self, tmp_path: Path) -> None:
        cert, _ = backup.server_cert(tmp_path, "eu-west-1", "127.0.10.1")
        done = subprocess.run(["openssl", "verify", "-CAfile", str(backup.ca(tmp_path)), "-verify_ip", "127.0.10.1"],
                              input=cert, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        other = subprocess.run(["openssl", "verify", "-CAfile", str(backup.ca(tmp_path)), "-verify_ip", "127.0.10.2"],
                               input=cert, capture_output=True, text=True, check=False)
        assert other.returncode != 0

    def test_made_once(self, tmp_path: Path) -> None:
        assert backup.server_cert(tmp_path, "eu-west-1", "127.0.10.1") == \
            backup.server_cert(tmp_path, "eu-west-1", "127.0.10.1")

    def test_made_again_when_the_address_changed(self, tmp_path: Path) -> None:
        old_cert, old_key = backup.server_cert(tmp_path, "eu-west-1", "127.0.10.1")
        cert, key = backup.server_cert(tmp_path, "eu-west-1", "127.0.10.5")
        assert cert != old_cert and key != old_key
        assert "IP Address:127.0.10.5" in _x509_text(cert)


class TestPasswords:
    def test_made_once_distinct_and_private(self, tmp_path: Path) -> None:
        login = backup.login_password(tmp_path, "eu-west-1")
        repo = backup.repo_password(tmp_path, "eu-west-1")
        assert login != repo
        for pw in (login, repo):
            assert len(pw) == 32 and pw.isalnum() and pw.isascii()
        assert backup.login_password(tmp_path, "eu-west-1") == login
        assert backup.repo_password(tmp_path, "eu-west-1") == repo
        assert backup.login_password(tmp_path, "eu-west-2") != login
        assert _mode(tmp_path / "secrets" / "backup" / "eu-west-1.json") == 0o600


class TestNames:
    def test_repository_url_and_owner_path(self) -> None:
        pw = "A" * 32
        assert backup.repo_url("eu-west-1", pw, "127.0.12.1") == \
            f"rest:https://eu-west-1:{pw}@127.0.12.1:8000/eu-west-1/main/"
        assert backup.owner_path("eu-west-1") == "/var/lib/tenantctl-backup/repos/eu-west-1/main"

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("Eu-West", id="upper"),
            pytest.param("../etc", id="dots"),
            pytest.param("a/b", id="slash"),
            pytest.param("a:b", id="colon"),
            pytest.param("-a", id="leading-dash"),
            pytest.param("", id="empty"),
        ],
    )
    def test_refuses_a_name_that_is_not_a_label(self, tmp_path: Path, name: str) -> None:
        for call in (lambda: backup.owner_path(name), lambda: backup.repo_url(name, "A" * 32, "127.0.0.1"),
                     lambda: backup.login_password(tmp_path, name),
                     lambda: backup.server_cert(tmp_path, name, "127.0.0.1")):
            with pytest.raises(ValueError, match="DNS label"):
                call()

    @pytest.mark.parametrize(
        ("password", "address"),
        [
            pytest.param("short", "127.0.0.1", id="short-password"),
            pytest.param("A" * 31 + "@", "127.0.0.1", id="password-with-at"),
            pytest.param("A" * 32, "example.org", id="hostname"),
            pytest.param("A" * 32, "127.0.0.1:80", id="port"),
        ],
    )
    def test_refuses_what_would_break_the_url(self, password: str, address: str) -> None:
        with pytest.raises(ValueError):
            backup.repo_url("eu-west-1", password, address)


class TestRoleAgrees:
    def test_the_role_uses_the_same_names(self) -> None:
        role = ansible.PLAYBOOKS_DIR / "roles" / roles.ROLE
        internal = yaml.safe_load((role / "vars" / "main.yml").read_text())
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
        assert internal["tenantctl_server_backup_user"] == backup.USER
        assert internal["tenantctl_server_backup_repo_root"] == backup.REPO_ROOT
        assert internal["tenantctl_server_backup_etc"] + "/htpasswd" == backup.HTPASSWD
        assert internal["tenantctl_server_backup_ca_file"] == backup.CA_ON_SERVERS
        assert defaults["tenantctl_backup_port"] == backup.PORT
        assert internal["tenantctl_server_role_services"]["backup"] == ["tenantctl-restic-rest"]

    def test_hostvars_give_the_certificate_only_to_backup_servers(self, tmp_path: Path) -> None:
        repo = roles.hostvars(tmp_path, ansible.Host("ap-southeast-1", "127.0.13.1", ("dns", "backup")))
        web = roles.hostvars(tmp_path, ansible.Host("eu-west-2", "127.0.11.1", ("web",)))
        assert repo["tenantctl_backup_ca"] == web["tenantctl_backup_ca"] == backup.ca_pem(tmp_path)
        assert repo["tenantctl_backup_port"] == backup.PORT
        assert (repo["tenantctl_backup_cert"], repo["tenantctl_backup_key"]) == \
            backup.server_cert(tmp_path, "ap-southeast-1", "127.0.13.1")
        assert "tenantctl_backup_cert" not in web and "tenantctl_backup_key" not in web


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((RCLONE_ADDRESS, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def rclone(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A real ``rclone serve restic`` (plain HTTP): its htpasswd file and port."""
    port = _free_port()
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    proc = subprocess.Popen(
        ["rclone", "serve", "restic", str(tmp_path / "repos"), "--addr", f"{RCLONE_ADDRESS}:{port}",
         "--private-repos", "--append-only", "--htpasswd", str(htpasswd), "--config", "/dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((RCLONE_ADDRESS, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield htpasswd, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _create(port: int, login: str, password: str) -> str:
    """HTTP status of creating ``/<login>/main/`` as ``login``."""
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{login}:{password}", "-X", "POST",
         f"http://{RCLONE_ADDRESS}:{port}/{login}/main/?create=true"],
        capture_output=True, text=True, check=True)
    return done.stdout


def test_rclone_accepts_the_bcrypt_lines_and_rereads_them_live(rclone: tuple[Path, int], tmp_path: Path) -> None:
    htpasswd, port = rclone
    pw = backup.login_password(tmp_path, "eu-west-1")
    assert _create(port, "eu-west-1", pw) == "401"  # started with no login at all
    line = backup.htpasswd_line("eu-west-1", pw)
    assert line.startswith("eu-west-1:$2y$05$")
    htpasswd.write_text(line + "\n")
    assert _create(port, "eu-west-1", pw) == "200"
    assert _create(port, "eu-west-1", "B" * 32) == "401"
