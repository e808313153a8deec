"""Generated secrets are made once even when threads ask for them at the same moment:
a repository initialised with a password that lost the race could never be opened
again; a server certificate signed by a CA that another thread replaced fails every TLS
handshake; a server's database password written twice leaves the server with the
other one."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from controller.provisioning import backup, keys, pitr


def together(ask: Callable[[], str], n: int = 8) -> list[str]:
    got: list[str] = []
    start = threading.Barrier(n)

    def one() -> None:
        start.wait()
        got.append(ask())

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == n, got
    return got


@pytest.mark.parametrize("ask", [
    pytest.param(lambda d: backup.repo_password(d, "web-1"), id="repository-password"),
    pytest.param(lambda d: keys.credentials(d, "web-1")["mariadb_admin_password"], id="server-credentials"),
    pytest.param(lambda d: backup.ca_pem(d), id="backup-ca"),
])
def test_concurrent_first_reads_of_a_secret_agree(tmp_path: Path, ask: Callable[[Path], str]) -> None:
    got = together(lambda: ask(tmp_path))
    assert len(set(got)) == 1, got
    assert ask(tmp_path) == got[0]


@pytest.mark.parametrize("make", [
    pytest.param(lambda d: backup.server_cert(d, "bk-1", "127.0.0.9")[0], id="repository-server"),
    pytest.param(lambda d: pitr.identity(d, "db-1")[0], id="pgbackrest-identity"),
])
def test_concurrent_first_certificates_are_one_and_signed_by_the_kept_ca(
        tmp_path: Path, make: Callable[[Path], str]) -> None:
    got = together(lambda: make(tmp_path))
    assert len(set(got)) == 1
    ca = x509.load_pem_x509_certificate(backup.ca_pem(tmp_path).encode())
    cert = x509.load_pem_x509_certificate(got[0].encode())
    cert.verify_directly_issued_by(ca)  # raises when another thread's CA signed it
