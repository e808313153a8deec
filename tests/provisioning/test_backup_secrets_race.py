"""Generated backup secrets are made once even when threads ask for them at the same
moment (a repository initialised with a password that lost the race could never be
opened again: seen under `tenantctl run`, stop 19)."""

from __future__ import annotations

import threading
from pathlib import Path

from controller.provisioning import backup


def test_concurrent_first_reads_of_a_servers_secrets_agree(tmp_path: Path) -> None:
    got: list[str] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        got.append(backup.repo_password(tmp_path, "web-1"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1, got
    assert backup.repo_password(tmp_path, "web-1") == got[0]
