"""Two operator replicas against kmock, a MOCK Kubernetes API server: only the holder of
the coordination.k8s.io Lease reconciles; the standby takes over once the Lease
expired (holder killed) or at once (holder stopped: Lease released). Probes and
metrics of both."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import Any

import kmock as kmock_lib
import pytest
from operator_harness import FAST, NS, example_resources, seed, until

pytestmark = pytest.mark.asyncio


def lease(api: kmock_lib.KubernetesEmulator) -> Any:
    return api.objects["coordination.k8s.io/v1/leases", NS, "tenantctl-operator"]


def get(port: int | None, path: str) -> tuple[int, str]:
    assert port is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_only_the_holder_reconciles_and_the_standby_takes_over_after_expiry(
        api: kmock_lib.KubernetesEmulator, replicas: Any) -> None:
    seed(api, example_resources())
    a = replicas("replica-a")
    await until(lambda: a.passes, what="a's first pass")
    b = replicas("replica-b")
    await until(lambda: b.control.health_port and get(b.control.health_port, "/readyz")[0] == 200,
                what="the standby ready")
    await asyncio.sleep(FAST.duration * 1.5)  # longer than a Lease: a renews, b keeps waiting
    spec = lease(api)["spec"]
    assert spec["holderIdentity"] == "replica-a" and spec["leaseDurationSeconds"] == 2
    assert spec["renewTime"] and spec["acquireTime"]
    assert not b.control.leading.is_set() and b.control.reconciler is None
    assert "tenantctl_leader 1.0" in get(a.control.metrics_port, "/metrics")[1]
    assert "tenantctl_leader 0.0" in get(b.control.metrics_port, "/metrics")[1]
    a.control.kill()  # as if the process died: the Lease is not released
    killed = time.monotonic()
    await until(lambda: b.passes, timeout=20.0, what="b's first pass")
    took = time.monotonic() - killed
    assert lease(api)["spec"]["holderIdentity"] == "replica-b"
    assert lease(api)["spec"]["leaseTransitions"] == 1
    assert FAST.duration * 0.9 <= took < 20.0, f"takeover after {took:.1f} s"
    assert "tenantctl_leader 1.0" in get(b.control.metrics_port, "/metrics")[1]
    await a.join()
    assert a.result == 0


async def test_a_stopped_holder_releases_the_lease_for_an_immediate_takeover(
        api: kmock_lib.KubernetesEmulator, replicas: Any) -> None:
    seed(api, example_resources())
    a = replicas("replica-a")
    await until(lambda: a.passes, what="a's first pass")
    b = replicas("replica-b")
    await until(lambda: b.control.health_port and get(b.control.health_port, "/readyz")[0] == 200,
                what="the standby ready")
    a.control.stop()
    stopped = time.monotonic()
    await a.join()
    assert lease(api)["spec"]["holderIdentity"] in ("", "replica-b")
    await until(lambda: b.passes, timeout=20.0, what="b's first pass")
    assert time.monotonic() - stopped < FAST.duration, "the standby waited for expiry despite a release"


async def test_probes_and_metrics(api: kmock_lib.KubernetesEmulator, replicas: Any) -> None:
    seed(api, example_resources())
    a = replicas("replica-a")
    await until(lambda: a.control.health_port, what="the health endpoint")
    assert await asyncio.to_thread(get, a.control.health_port, "/healthz") == (200, "ok\n")
    await until(lambda: a.passes, what="a's first pass")
    assert await asyncio.to_thread(get, a.control.health_port, "/readyz") == (200, "ok\n")
    code, text = await asyncio.to_thread(get, a.control.metrics_port, "/metrics")
    assert code == 200
    assert 'tenantctl_reconcile_total{result="success"}' in text
    assert await asyncio.to_thread(get, a.control.health_port, "/nothing") == (404, "not found\n")


async def test_a_holder_that_sees_another_holder_stops_reconciling(
        api: kmock_lib.KubernetesEmulator, replicas: Any) -> None:
    seed(api, example_resources())
    a = replicas("replica-a")
    await until(lambda: a.passes, what="a's first pass")
    # another replica took the Lease (a was cut off from the API server for too long)
    async with api.patch(f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/tenantctl-operator",
                         json={"spec": {"holderIdentity": "replica-z", "renewTime": "2026-11-30T00:00:00.000000Z"}},
                         headers={"Content-Type": "application/merge-patch+json"}) as resp:
        assert resp.status < 300
    # main.run returns 1 at once; the real process then exits (os._exit) without waiting
    # for a pass in flight, which this harness's thread may still be finishing.
    # (60 s: under a loaded CI machine the loop's teardown after the lost Lease once took
    # over 20 s; the root cause, teardown waiting for the pass thread, is in the note)
    assert await a.returned(timeout=60.0) == 1  # `tenantctl operator` exits 1: the pod restarts as a standby
    assert not a.control.leading.is_set()
    assert lease(api)["spec"]["holderIdentity"] == "replica-z"  # not released: it is not a's
