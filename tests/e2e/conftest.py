"""End-to-end tests: the real ``tenantctl`` (subprocesses), the real drivers, and the
embedded servers of ``desired/`` (two regions, two servers), up once for the package in an
environment of their own and destroyed when its last test is done.

The tests of this folder run in file order and build on each other (apply, then faults
under ``run``, then a replaced server): each leaves the environment converged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller import model, provisioning
from controller.drivers import embedded, transport
from controller.drivers.embedded import engine, servers

HERE = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).parent / "tenantctl")


@dataclass(frozen=True)
class Done:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class E2E:
    state: Path
    desired: Path
    specs: list[embedded.ServerSpec]
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, check: int | None = 0, timeout: float = 600) -> Done:
        p = subprocess.run([CLI, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        done = Done(p.returncode, p.stdout, p.stderr)
        if check is not None:
            assert p.returncode == check, f"tenantctl {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        return done

    def files(self) -> list[str]:
        return ["-f", str(self.desired)]

    def status(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self("status", "-o", "json").json()["subscriptions"]}

    def spec(self, name: str) -> embedded.ServerSpec:
        return next(s for s in self.specs if s.name == name)

    def container(self, name: str) -> str:
        return servers.container_name(embedded.env_id(self.state), self.spec(name))

    def docker(self, *args: str) -> None:
        eng = engine.find_engine()
        assert eng is not None, "no docker engine"
        eng.client.close()
        subprocess.run(["docker", "-H", eng.base_url, *args], check=True, capture_output=True, timeout=120)

    def on(self, server: str, *argv: str, stdin: bytes | None = None) -> transport.Completed:
        """Run a command as root on an embedded server, over SSH (tenantctl's key)."""
        t = transport.Transport(self.state, provisioning.ssh_key(self.state), self.spec(server).address,
                                pin_host_key=False)
        try:
            return t.run(list(argv), stdin=stdin, timeout=120)
        finally:
            t.close()

    def edit(self, file: str, old: str, new: str) -> None:
        path = self.desired / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new, 1))


def wait_for(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:  # the condition may raise while it is not true yet
            last = exc
        else:
            if last:
                return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def curl(url: str, resolve: str, cacert: Path | None = None, timeout: float = 10) -> str:
    argv = ["curl", "-sS", "--fail", "--max-time", str(timeout), "--resolve", resolve, url]
    if cacert is not None:
        argv[1:1] = ["--cacert", str(cacert)]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout + 5).stdout


@contextlib.contextmanager
def environment(tmp_path_factory: pytest.TempPathFactory, source: Path, name: str) -> Iterator[E2E]:
    """The servers of the documents in ``source`` (copied: tests edit them), up in an
    environment of their own for the block, destroyed with their data after it."""
    root = tmp_path_factory.mktemp(name)
    state, desired = root / "state", root / "desired"
    shutil.copytree(source, desired)
    ds = model.load_desired([desired])
    specs = [embedded.ServerSpec.from_dict({"name": n, **s.model_dump(mode="json")}) for n, s in ds.servers.items()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    env.update(TENANTCTL_STATE_DIR=str(state), COLUMNS="200")
    with contextlib.ExitStack() as stack:
        stack.enter_context(embedded.hold(state))
        embedded.remove_abandoned(specs, prefix=str(tmp_path_factory.getbasetemp().parent) + "/")
        try:
            embedded.env_up(specs, state)  # inside: a half-made environment is removed too
            yield E2E(state, desired, specs, env)
        finally:
            embedded.env_down(state, only=specs, destroy_data=True)


@pytest.fixture(scope="package")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    with environment(tmp_path_factory, HERE / "desired", "e2e") as env:
        yield env
