"""The SSH transport against a real server's sshd: threads of one process share a
server's ControlMaster, and one thread closing its pool never cuts another's session.

Before: ``close()`` sent ``-O exit``, which killed the sessions in flight with status
255; that read as "could not connect" and the job was run again while the first still
ran (under ``tenantctl run`` the usage thread's close cut the first nightly backup, and
two ``restic init`` of one repository left it unreadable).
"""

from __future__ import annotations

import threading
import time

import pytest

from controller.drivers import transport
from drivers.conftest import Cluster

pytestmark = pytest.mark.embedded


def test_closing_one_pool_lets_another_threads_session_finish(cluster: Cluster) -> None:
    server = sorted(cluster.ctx.servers)[0]
    busy, closing = transport.Pool(cluster.ctx), transport.Pool(cluster.ctx)
    out: list[transport.Completed] = []
    try:
        closing.get(server).run(["true"])  # the shared master is up
        t = threading.Thread(target=lambda: out.append(busy.get(server).run(["sh", "-c", "sleep 3; echo done"])))
        t.start()
        time.sleep(1.0)
        closing.close()  # what the usage thread does after its collection
        t.join(30)
        assert out and out[0].returncode == 0 and out[0].text.strip() == "done", out
        # a session after the close gets a master again
        assert closing.get(server).run(["echo", "again"]).text.strip() == "again"
    finally:
        busy.close()
        closing.close()
