"""Usage reports from real nginx logs (issue 12 item 5, OPS-4): traffic made with curl,
the real ``tenantctl report usage --collect`` as a process (the ``usage`` agent over
SSH, figures in the state store), compared with what the access log on the server says
(read there with awk, not with tenantctl's parser); then the server's own logrotate
compresses the log and more traffic comes: the totals stay exact, nothing counted twice.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drivers.conftest import Cluster
from drivers.test_hosting import until

from controller.drivers.hosting import render
from controller.drivers.usage import collect
from controller.reconcile import engine
from controller.state import store as state_store

from .test_ftp_logs_live import ADDRESS, SERVER, AccessEnv, sub

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
        logs = render.logs_dir(NAME)
        script = (f"cd {shlex.quote(logs)} && for f in access.log*; do case $f in *.gz) zcat -- \"$f\";; "
                  "*) cat -- \"$f\";; esac; done | awk '{n++; b+=$10} END {print n+0, b+0}'")
        done = self.ssh(SERVER, "sh", "-c", script)
        assert done.returncode == 0, done.error
        n, b = done.text.split()
        return int(n), int(b)


def totals(doc: dict[str, Any]) -> tuple[int, int]:
    rows = [r for r in doc["subscriptions"] if r["domain"] == NAME]
    return sum(r["requests"] for r in rows), sum(r["bytes"] for r in rows)


def get(path: str) -> int:
    """One request; the body's size as curl received it (no compression asked)."""
    out = subprocess.run(["curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{size_download}", "--resolve",
                          f"{NAME}:80:{ADDRESS}", f"http://{NAME}{path}"], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path) -> Iterator[UsageEnv]:
    e = UsageEnv(cluster, tmp_path)
    try:
        yield e
    finally:
        e.close()


def test_report_usage_matches_the_access_log_across_a_rotation(env: UsageEnv) -> None:
    assert collect.logs_dir(NAME) == render.logs_dir(NAME)
    env.subs = [sub(NAME)]
    report = env.reconcile()
    assert report.ok, report.failed
    sent = [get("/") for _ in range(5)] + [get(f"/missing-{i}") for i in range(3)]
    assert until(lambda: env.logged()[0] == 8)
    doc, first = env.report()
    assert totals(doc) == env.logged() == (8, sum(sent)), (doc, sent)
    [row] = [r for r in doc["subscriptions"] if r["domain"] == NAME]
    assert row["customer"] == "acc-tests" and row["diskMB"] is not None and row["diskMB"] > 0
    assert any(c["customer"] == "acc-tests" and c["domain"] == "*" for c in doc["customers"])
    # traffic after the collection, then the server's own logrotate (compress, no
    # delaycompress: the unread tail is inside the .gz now), then traffic in the new log
    sent += [get("/") for _ in range(4)]
    assert until(lambda: env.logged()[0] == 12)
    done = env.ssh(SERVER, "logrotate", "-f", render.logrotate_path(NAME))
    assert done.returncode == 0, done.text + done.error
    assert env.ssh(SERVER, "sh", "-c", f"ls {shlex.quote(render.logs_dir(NAME))}/access.log-*.gz").returncode == 0

    def reopened() -> bool:
        sent.append(get("/after-rotation"))
        return "/after-rotation" in env.ssh(SERVER, "cat", f"{render.logs_dir(NAME)}/access.log").text
    assert until(reopened, timeout=10)
    sent += [get("/") for _ in range(2)]
    assert until(lambda: env.logged()[0] == len(sent))
    doc, second = env.report()
    assert totals(doc) == env.logged() == (len(sent), sum(sent)), (doc, len(sent))
    # a collection with nothing new counts nothing again
    doc, _ = env.report()
    assert totals(doc) == (len(sent), sum(sent))
    print(f"collection on {SERVER}: {first:.2f} s (first), {second:.2f} s (after rotation)")
