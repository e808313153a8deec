"""Helpers of the operator tests: kmock as a MOCK Kubernetes API server (an in-memory
emulator, no cluster can run here), the examples as custom resources, fake drivers,
and operator replicas each running in a thread with its own event loop (as in a pod).

The fake drivers stand in for the real ones (exercised by tests/drivers and
tests/embedded): they record every batch and can be told to fail on a subscription.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import yaml

from controller import model
from controller.drivers import base
from controller.kube import resource
from controller.operator import index, lease, main
from controller.operator.options import Options

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NS = "tenantctl"
GROUP_VERSION = "tenantctl.io/v1"
T0 = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
#: short Lease timings, so that a takeover after expiry fits in a test
FAST = lease.Timing(duration=2.0, renew_deadline=1.5, retry=0.2)


class FakeDriver:
    """A driver that succeeds (or fails on ``fail``) and records ``(action, names)``."""

    def __init__(self, concern: str) -> None:
        self.concern = concern
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: dict[str, str] = {}
        self.lock = threading.Lock()

    def slice(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        result: Mapping[str, Any] = base.SLICES[self.concern](item)  # type: ignore[arg-type]
        return result

    def apply(self, server: str | None, changes: Sequence[base.Change[Any]]) -> list[base.Result]:
        with self.lock:
            for action in sorted({c.action for c in changes}):
                self.calls.append((action, sorted(c.name for c in changes if c.action == action)))
        return [base.Result(c.name, "failed", self.fail[c.name]) if c.name in self.fail
                else base.Result(c.name, "provisioned") for c in changes]

    def names(self, action: str = "ensure") -> list[str]:
        with self.lock:
            return sorted(n for a, names in self.calls if a == action for n in names)


class Fakes:
    def __init__(self) -> None:
        self.drivers = {c: FakeDriver(c) for c in base.CONCERNS}

    def wiring(self, ds: model.DesiredState) -> tuple[dict[str, base.Driver], None]:
        return dict(self.drivers), None  # type: ignore[arg-type]


def serve_kinds(api: kmock_lib.KubernetesEmulator) -> kmock_lib.KubernetesEmulator:
    """Make the MOCK API server (kmock) serve the six kinds, Leases and what kopf's
    discovery waits for (namespaces, CRDs)."""
    for kind, plural in index.PLURALS.items():
        api.resources[f"{GROUP_VERSION}/{plural}"] = kmock_lib.ResourceInfo(
            kind=kind, namespaced=True, subresources={"status"},
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
    api.resources["v1/namespaces"] = kmock_lib.ResourceInfo(kind="Namespace", namespaced=False,
                                                            verbs={"get", "list", "watch"})
    api.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock_lib.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"get", "list", "watch"})
    api.resources["coordination.k8s.io/v1/leases"] = kmock_lib.ResourceInfo(
        kind="Lease", namespaced=True, verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
    return api


def example_resources() -> list[dict[str, Any]]:
    """Every example document as the custom resource the API server would store."""
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append(stored(resource.to_resource(doc, namespace=NS)))
    return out


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API server adds on create: uid, generation, resourceVersion."""
    meta = obj["metadata"]
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("generation", 1)
    meta.setdefault("resourceVersion", "1")
    return obj


def res(kind: str) -> str:
    return f"{GROUP_VERSION}/{index.PLURALS[kind]}"


def seed(api: kmock_lib.KubernetesEmulator, objs: list[dict[str, Any]]) -> None:
    """Objects that exist before the operator starts."""
    for obj in objs:
        api.objects[res(obj["kind"]), NS, obj["metadata"]["name"]] = obj


def patches(api: kmock_lib.KubernetesEmulator, since: int = 0, *, subresource: str | None = "status",
            name: str | None = None) -> list[Any]:
    """The PATCH requests of tenantctl objects the mock received (of ``subresource``;
    of ``name``)."""
    return [r for r in list(api)[since:]
            if str(r.method).lower().endswith("patch") and r.subresource == subresource
            and r.resource is not None and r.resource.group == "tenantctl.io"
            and (name is None or r.name == name)]


class Replica:
    """One operator process: ``main.run`` on its own thread and event loop."""

    def __init__(self, api: kmock_lib.KubernetesEmulator, state_dir: Path, fakes: Fakes, identity: str,
                 background: bool | None = None, **opts: Any) -> None:
        """``background``: ``main.run``'s ``with_background`` (None: off, the drivers
        being fakes)."""
        self.options = Options(namespace=NS, identity=identity, timing=FAST, server=str(api.url),
                               health_addr="127.0.0.1:0", metrics_addr="127.0.0.1:0", resync=3600.0,
                               watch_timeout=30.0, exit_timeout=None, **opts)
        self.control = main.Control()
        self.state_dir = state_dir
        self.fakes = fakes
        self.background = background
        self.result: int | None = None
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._main, name=f"replica-{identity}", daemon=True)

    def _main(self) -> None:
        async def go() -> int:
            self.loop = asyncio.get_running_loop()
            self.result = await main.run(self.options, state_dir=self.state_dir, control=self.control,
                                         wiring=self.fakes.wiring, clock=lambda: T0,
                                         with_background=self.background)
            return self.result
        try:
            self.result = asyncio.run(go())
        except BaseException as exc:  # reported by the test
            self.error = exc

    def start(self) -> Replica:
        self.thread.start()
        return self

    def enqueue_all(self) -> None:
        """A full re-run (what the resync timer does)."""
        rec = self.control.reconciler
        assert rec is not None and self.loop is not None
        self.loop.call_soon_threadsafe(rec.enqueue, None)

    @property
    def passes(self) -> list[Any]:
        rec = self.control.reconciler
        return list(rec.passes) if rec is not None else []

    async def returned(self, timeout: float = 20.0) -> int:
        """``main.run``'s exit code, as soon as it returned (the real process exits then:
        ``os._exit``; here the loop's teardown may still wait for a pass in flight)."""
        deadline = time.monotonic() + timeout
        while self.result is None and self.error is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert self.result is not None, f"main.run did not return ({self.error!r})"
        return self.result

    async def join(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not self.thread.is_alive(), "the replica did not stop"
        assert self.error is None, self.error


async def until(cond: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``cond`` (letting the mock server's loop run) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or cond}")


def has_finalizer(api: kmock_lib.KubernetesEmulator, name: str) -> bool:
    o = api.objects[res("Subscription"), NS, name]
    return index.FINALIZER in ((o.get("metadata") or {}).get("finalizers") or [])


def gone(api: kmock_lib.KubernetesEmulator, kind: str, name: str) -> bool:
    try:
        return bool(api.objects[res(kind), NS, name].deleted)
    except KeyError:
        return True


async def settled(api: kmock_lib.KubernetesEmulator, r: Replica, names: Collection[str],
                  quiet: float = 0.6) -> None:
    """Until every subscription of ``names`` carries the finalizer and no pass ran for
    ``quiet`` seconds (the finalizers' MODIFIED events are through)."""
    await until(lambda: r.passes and all(has_finalizer(api, n) for n in names), what="every finalizer")
    while True:
        n = len(r.passes)
        await asyncio.sleep(quiet)
        if len(r.passes) == n:
            return
