"""The operator as a process, with deploy/operator's command line, against kmock (a MOCK
Kubernetes API server in this test's event loop): it reconciles the examples (drivers
off: TENANTCTL_DRIVERS=none), answers its probes, and on SIGTERM stops with exit 0
and releases the Lease."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import pytest
import yaml
from operator_harness import NS, ROOT, T0, example_resources, patches, seed, until

pytestmark = pytest.mark.asyncio

ENTRY_POINTS = [
    pytest.param([sys.executable, "-m", "controller.operator"], id="python-m-controller.operator"),
    # `tenantctl operator` (registered by importing controller.cli.operator)
    pytest.param([sys.executable, "-c", "import sys, controller.cli.operator; from controller.cli.main import main; "
                  "sys.argv[0] = 'tenantctl'; main()", "operator"], id="tenantctl-operator"),
]


def deploy_args() -> list[str]:
    """The container's arguments in deploy/operator/deployment.yaml (after `operator`)."""
    dep = yaml.safe_load((ROOT / "deploy" / "operator" / "deployment.yaml").read_text())
    args: list[str] = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "operator"
    return args[1:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("entry", ENTRY_POINTS)
async def test_the_process_reconciles_probes_and_stops_on_sigterm(
        api: kmock_lib.KubernetesEmulator, tmp_path: Path, entry: list[str]) -> None:
    seed(api, example_resources())
    health, metrics = free_port(), free_port()
    args = []
    for arg in deploy_args():
        flag = arg.split("=", 1)[0]
        args.append({"--metrics-addr": f"--metrics-addr=127.0.0.1:{metrics}",
                     "--health-addr": f"--health-addr=127.0.0.1:{health}"}.get(flag, arg))
    assert {a.split("=", 1)[0] for a in args} == {"--namespace", "--lease", "--metrics-addr", "--health-addr"}
    env = dict(os.environ, TENANTCTL_STATE_DIR=str(tmp_path / "state"), TENANTCTL_DRIVERS="none",
               TENANTCTL_NOW=T0.isoformat(), POD_NAME="operator-0")
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*entry, *args, f"--server={api.url}"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        subs = [o for o in example_resources() if o["kind"] == "Subscription"]
        await until(lambda: len({p.name for p in patches(api)}) == len(subs) or proc.poll() is not None,
                    timeout=60.0, what="the status of every subscription")
        assert proc.poll() is None, log.read_text()
        assert await asyncio.to_thread(ok, health, "/healthz")
        await until(lambda: ok(health, "/readyz"), what="ready")
        assert await asyncio.to_thread(ok, metrics, "/metrics")
        lease: Any = api.objects["coordination.k8s.io/v1/leases", NS, "tenantctl-operator"]
        assert lease["spec"]["holderIdentity"] == "operator-0"
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        await until(lambda: proc.poll() is not None, timeout=30.0, what="the process to stop")
        assert time.monotonic() - stopping < 10.0, log.read_text()
        assert proc.returncode == 0, log.read_text()
        assert api.objects["coordination.k8s.io/v1/leases", NS, "tenantctl-operator"]["spec"]["holderIdentity"] == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_standby_process_takes_over_within_20_s_of_the_holder_s_sigkill(
        api: kmock_lib.KubernetesEmulator, tmp_path: Path) -> None:
    """Two processes with deploy/'s arguments and the real Lease timing (15 s lease, 10 s
    renew deadline, 2 s retry): the holder is SIGKILLed (no release), the standby holds
    the Lease and reconciles within 20 s (issue 11)."""
    seed(api, example_resources())
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for identity in ("operator-0", "operator-1"):
            env = dict(os.environ, TENANTCTL_STATE_DIR=str(tmp_path / "state"), TENANTCTL_DRIVERS="none",
                       TENANTCTL_NOW=T0.isoformat(), POD_NAME=identity)
            logs[identity] = tmp_path / f"{identity}.log"
            with logs[identity].open("wb") as out:
                procs[identity] = subprocess.Popen(
                    [sys.executable, "-m", "controller.operator", *deploy_args(), f"--server={api.url}"],
                    env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            if identity == "operator-0":
                await until(lambda: len(patches(api)) > 0, timeout=60.0, what="operator-0 reconciling")

        def holder() -> str:
            lease: Any = api.objects["coordination.k8s.io/v1/leases", NS, "tenantctl-operator"]
            return str(lease["spec"]["holderIdentity"])

        assert holder() == "operator-0"
        procs["operator-0"].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await until(lambda: holder() == "operator-1", timeout=25.0, what="operator-1 holding the Lease")
        took = time.monotonic() - killed
        # the new holder reconciles: a Subscription created now gets its status
        sub = next(o for o in example_resources() if o["kind"] == "Subscription")
        new = {**sub, "metadata": {"name": "takeover.example.org", "namespace": NS},
               "spec": {k: sub["spec"][k] for k in ("customer", "plan", "region")}}
        async with api.post(f"/apis/tenantctl.io/v1/namespaces/{NS}/subscriptions", json=new) as resp:
            assert resp.status < 300, await resp.text()
        await until(lambda: patches(api, name="takeover.example.org") or procs["operator-1"].poll() is not None,
                    timeout=30.0, what="operator-1 writing the new subscription's status")
        print(f"\ntakeover after SIGKILL: {took:.1f} s (lease 15 s)")
        assert procs["operator-1"].poll() is None, logs["operator-1"].read_text()
        assert took < 20.0, f"takeover after {took:.1f} s"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
