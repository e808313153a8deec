"""Usage reports from real nginx logs (issue 12 item 5, OPS-4): traffic made with curl,
the real ``tenantctl report usage --collect`` as a process (the ``usage`` agent over
SSH, figures in the state store), compared with what the access logs on the server say
(read there with awk, not with tenantctl's parser); then the server's own logrotate
renames the log (``delaycompress``: compressed at the next rotation) and more traffic
comes, twice: the totals stay exact, nothing counted twice, nothing lost.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from drivers.conftest import Cluster
from drivers.test_hosting import until

from controller.drivers import naming
from controller.reconcile import engine
from controller.state import store as state_store

from .support import SERVER, AccessEnv, Traffic, rotate, rotated, sub

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(300)]

CLI = str(Path(sys.executable).parent / "tenantctl")
NAME = "usage.access.test"


class UsageEnv(AccessEnv):
    """The module's Env with its store where the CLI finds it (the cluster's state dir)."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        super().__init__(cluster, tmp)
        self.store.close()
        self.store = state_store.Store(cluster.state_dir / "state.db")
        self.engine = engine.Engine(self.store, dict(self.engine.drivers), clock=lambda: dt.datetime.now(dt.UTC))

    def report(self) -> tuple[dict[str, Any], float]:
        """``report usage --collect --period day -o json``: the document and the
        collection's seconds (from its summary line)."""
        env = dict(os.environ, TENANTCTL_STATE_DIR=str(self.cluster.state_dir))
        env.pop("TENANTCTL_NOW", None)
        done = subprocess.run([CLI, "report", "usage", "--collect", "--period", "day", "-o", "json",
                               "-f", str(self.cluster.servers_file), "-f", str(self.tmp / "desired.yaml")],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        took = re.search(r"collected: .* ([0-9.]+) s$", done.stderr.strip())
        assert took is not None, done.stderr
        return json.loads(done.stdout), float(took.group(1))

    def logged(self) -> tuple[int, int]:
        """(requests, bytes) in every access log of the subscription on the server:
        ``$body_bytes_sent`` is field 10 of the combined format."""
        script = (f"cd {shlex.quote(naming.logs_dir(NAME))} && for f in access.log*; do case $f in "
                  "*.gz) zcat -- \"$f\";; *) cat -- \"$f\";; esac; done | awk '{n++; b+=$10} END {print n+0, b+0}'")
        done = self.ssh(SERVER, "sh", "-c", script)
        assert done.returncode == 0, done.error
        n, b = done.text.split()
        return int(n), int(b)


@pytest.fixture
def env_class() -> type[AccessEnv]:
    return UsageEnv


def totals(doc: dict[str, Any]) -> tuple[int, int]:
    rows = [r for r in doc["subscriptions"] if r["domain"] == NAME]
    return sum(r["requests"] for r in rows), sum(r["bytes"] for r in rows)


def test_report_usage_matches_the_access_log_across_rotations(env: UsageEnv) -> None:
    env.subs = [sub(NAME)]
    report = env.reconcile()
    assert report.ok, report.failed
    traffic = Traffic(NAME)
    for path in ["/"] * 5 + [f"/missing-{i}" for i in range(3)]:
        traffic.get(path)
    assert until(lambda: env.logged()[0] == 8)
    doc, first = env.report()
    assert totals(doc) == env.logged() == traffic.totals, doc
    [row] = [r for r in doc["subscriptions"] if r["domain"] == NAME]
    assert row["customer"] == "acc-tests" and row["diskMB"] is not None and row["diskMB"] > 0
    assert any(c["customer"] == "acc-tests" and c["domain"] == "*" for c in doc["customers"])
    # traffic after the collection, then the server's own logrotate: the log renamed
    # with its unread tail (compression waits for the next rotation), traffic in the
    # new log; then a second rotation compresses the first one: still nothing collected
    for rotation in (1, 2):
        for _ in range(4):
            traffic.get("/")
        assert until(lambda: env.logged()[0] == traffic.totals[0])
        time.sleep(1.1)  # dateext names rotations by the second
        rotate(env, NAME)
        assert traffic.until_logged(env, f"/after-rotation-{rotation}")
    names = rotated(env, NAME)
    assert len(names) == 2 and names[0].endswith(".gz") and not names[1].endswith(".gz"), names
    for _ in range(2):
        traffic.get("/")
    assert until(lambda: env.logged()[0] == traffic.totals[0])
    doc, second = env.report()
    assert totals(doc) == env.logged() == traffic.totals, doc
    # a collection with nothing new counts nothing again
    doc, _ = env.report()
    assert totals(doc) == traffic.totals
    print(f"collection on {SERVER}: {first:.2f} s (first), {second:.2f} s (after two rotations)")
