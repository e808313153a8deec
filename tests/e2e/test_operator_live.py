"""The operator with the real drivers (issue 11, "a site created through a custom
resource answers over HTTP"): the e2e environment's documents as custom resources in
kmock -- a MOCK Kubernetes API server, since none can run on this machine -- plus one new
Subscription; `tenantctl operator` as a process (deploy/'s arguments) reconciles them onto
the environment's real servers. Runs after test_e2e.py (file order): the store already
holds the other subscriptions, so the operator only creates the new one."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import pytest
import pytest_asyncio
import yaml

from .conftest import CLI, E2E

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
from operator_harness import NS, ROOT, res, seed, serve_kinds, stored, until

pytestmark = [pytest.mark.embedded, pytest.mark.asyncio, pytest.mark.timeout(600)]

NEW = "op.e2e.example.org"
#: the conditions of a served site (the environment has no backup repository: BackupReady
#: stays Unknown there, so Ready does not turn True)
SERVED = ("WebReady", "PhpReady", "DbReady", "DnsReady", "TlsReady")


@pytest_asyncio.fixture
async def api(kmock: kmock_lib.KubernetesEmulator) -> kmock_lib.KubernetesEmulator:
    return serve_kinds(kmock)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def resources(e2e: E2E) -> list[dict[str, Any]]:
    """The environment's documents as `tenantctl resources` prints them, plus NEW."""
    out = e2e("resources", *e2e.files(), "-n", NS).out
    objs = [o for o in yaml.safe_load_all(out) if o]
    beta = next(o for o in objs if o["kind"] == "Subscription" and o["metadata"]["name"].startswith("beta."))
    new = {**beta, "metadata": {"name": NEW, "namespace": NS}, "spec": dict(beta["spec"])}
    return [stored(o) for o in [*objs, new]]


def conditions(api: kmock_lib.KubernetesEmulator, name: str) -> dict[str, str]:
    obj: Any = api.objects[res("Subscription"), NS, name]
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


def served(api: kmock_lib.KubernetesEmulator, name: str) -> bool:
    found = conditions(api, name)
    return all(found.get(c) == "True" for c in SERVED)


async def test_a_subscription_created_as_a_custom_resource_is_served_by_the_real_servers(
        e2e: E2E, api: kmock_lib.KubernetesEmulator, tmp_path: Path) -> None:
    objs = resources(e2e)
    seed(api, objs)
    health, metrics = free_port(), free_port()
    env = dict(e2e.env, POD_NAME="operator-live")
    argv = [CLI, "operator", f"--namespace={NS}", "--lease=tenantctl-operator", f"--server={api.url}",
            f"--metrics-addr=127.0.0.1:{metrics}", f"--health-addr=127.0.0.1:{health}"]
    log = tmp_path / "operator.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        await until(lambda: served(api, NEW) or proc.poll() is not None, timeout=300.0,
                    what=f"{', '.join(SERVED)} True on {NEW}")
        assert proc.poll() is None, log.read_text()[-3000:]
        print(f"\n{NEW}: served through the operator in {time.monotonic() - started:.1f} s")
        # what the operator did is what `tenantctl` sees: the same store, the same engine
        status = await asyncio.to_thread(e2e.status)
        assert {c: status[NEW]["concerns"][c] for c in ("web", "php", "db", "dns", "tls")} == dict.fromkeys(
            ("web", "php", "db", "dns", "tls"), "provisioned"), status[NEW]
        lines = [ln for ln in (await asyncio.to_thread(e2e, "urls")).out.splitlines() if f"//{NEW}/" in ln]
        assert any(ln.startswith("https://") for ln in lines), lines
        for line in lines:
            _url, command = line.split("  ", 1)
            cmd = command.split()
            got = await asyncio.to_thread(subprocess.run, [cmd[0], "-sS", "--fail", "--max-time", "10", *cmd[1:]],
                                          capture_output=True, text=True, timeout=20)
            assert got.returncode == 0 and "Upload your files to" in got.stdout, (line, got.stderr)
        # the others were already applied: the operator changed none of them
        for name in [o["metadata"]["name"] for o in objs if o["kind"] == "Subscription"]:
            assert served(api, name), (name, conditions(api, name))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), 30)
            except TimeoutError:
                proc.kill()
    assert proc.returncode == 0, log.read_text()[-3000:]
