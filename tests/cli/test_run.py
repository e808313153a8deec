"""``tenantctl run``: the continuous loop reacts to file edits within seconds (SYNC-5),
serves Prometheus metrics that promtool accepts, and stops cleanly on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.request

from .conftest import CLI, Cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def wait_for(pred, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


def test_run_reacts_to_edits_and_serves_metrics(cli: Cli) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**cli.env}
    env.pop("TENANTCTL_NOW")  # the loop runs on the real clock
    proc = subprocess.Popen([CLI, "run", "-f", str(cli.desired), "--metrics-addr", f"127.0.0.1:{port}",
                             "--resync", "30"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        text = wait_for(lambda: (t := scrape(url)) and 'tenantctl_subscriptions{sync="locked"} 1.0' in t and t)
        assert 'tenantctl_subscriptions{sync="unsynced"}' in text
        assert 'tenantctl_reconcile_total{result="success"}' in text
        assert 'tenantctl_concern_status{concern="web",status="not provisioned"}' in text
        promtool = shutil.which("promtool")
        assert promtool, "promtool missing: `make setup` installs the prometheus package"
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        # SYNC-5: an edit of a plan reaches its synced subscriptions within seconds
        cli.edit("plans.yaml", "settings: {memory_limit: 256M, max_execution_time: 60",
                 "settings: {memory_limit: 384M, max_execution_time: 60")
        t0 = time.monotonic()

        def updated() -> bool:
            s = Cli(cli.state, cli.desired).status()["hangar.example.com"]
            return bool(s["effective"]["hosting"]["php"]["settings"]["memory_limit"] == "384M")

        wait_for(updated, timeout=15)
        assert time.monotonic() - t0 < 15
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    # the resync timer's first round took the state store's daily copy
    assert len(list((cli.state / "backups").glob("state-*.db"))) == 1
