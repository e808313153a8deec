"""What the live access tests share (tests/access): the module's server and plan
(``AccessEnv``, ``sub``), requests through curl (``fetch``, ``Traffic``) and the
subscription's logs on the server (``access_log``, ``rotate``, ``rotated``)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from typing import Any

import yaml
from drivers.test_hosting import Env, until

from controller import model
from controller.drivers import naming
from controller.drivers.hosting import render
from controller.effective import spec

SERVER, ADDRESS = "acc-live", "127.0.109.1"
DOC = {"apiVersion": "tenantctl.io/v1"}


class AccessEnv(Env):
    """tests/drivers' Env on this module's server, with a plan selling 2 FTP accounts
    whose logs rotate daily, compressed (``delaycompress``: templates/logrotate)."""

    def desired(self) -> model.DesiredState:
        plan = {**DOC, "kind": "ServicePlan", "metadata": {"name": "acc"}, "spec": {
            "resources": {"diskMB": 1024, "ftpAccounts": 2},
            "permissions": {"backups": False},
            "hosting": {"enabled": True, "ssl": False, "webStats": True, "php": {"handler": "fpm", "version": "8.2"}},
            "logs": {"retainMonths": 3, "rotate": "daily", "compress": True},
        }}
        customer = {**DOC, "kind": "Customer", "metadata": {"name": "acc-tests"},
                    "spec": {"email": "t@example.org", "state": "active"}}
        path = self.tmp / "desired.yaml"
        path.write_text(yaml.safe_dump_all([plan, customer, *self.subs]))
        return model.load_desired([self.cluster.servers_file, path])

    def item(self, name: str) -> spec.Item:
        """The subscription's planned item (what the engine hands the drivers)."""
        return self.engine.plan(self.desired()).subscriptions[name].typed


def sub(name: str, **body: Any) -> dict[str, Any]:
    """A Subscription document of the module's customer and plan, on its server."""
    return {**DOC, "kind": "Subscription", "metadata": {"name": name},
            "spec": {"customer": "acc-tests", "plan": "acc", "region": "eu-west", "server": SERVER, **body}}


def fetch(name: str, path: str = "/", curl_args: Sequence[str] = ()) -> tuple[int, bytes]:
    """One request to the site ``name`` on the server: (status, body as received; no
    compression asked, so its length is nginx's ``$body_bytes_sent``)."""
    out = subprocess.run(["curl", "-sS", "-m", "10", *curl_args, "-o", "-", "-w", "\n%{http_code}", "--resolve",
                          f"{name}:80:{ADDRESS}", f"http://{name}{path}"], capture_output=True, check=True).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


class Traffic:
    """Requests to one site, each body's size kept: what its access log must add up to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sizes: list[int] = []

    def get(self, path: str = "/") -> int:
        """One request; its status."""
        code, body = fetch(self.name, path)
        self.sizes.append(len(body))
        return code

    def until_logged(self, env: Env, path: str) -> bool:
        """Request ``path`` until it shows in the current access log (after a rotation:
        nginx reopened its logs; its workers take a moment)."""
        def logged() -> bool:
            self.get(path)
            return path in access_log(env, self.name)
        return until(logged, timeout=10)

    @property
    def totals(self) -> tuple[int, int]:
        """(requests, bytes) sent so far."""
        return len(self.sizes), sum(self.sizes)


def access_log(env: Env, name: str) -> str:
    """The subscription's current access log on the server."""
    done = env.ssh(SERVER, "cat", f"{naming.logs_dir(name)}/access.log")
    assert done.returncode == 0, done.error
    return done.text


def rotate(env: Env, name: str) -> None:
    """The server's logrotate on the subscription's file, forced (as the daily run would)."""
    done = env.ssh(SERVER, "logrotate", "-f", "-v", render.logrotate_path(name))
    assert done.returncode == 0, done.text + done.error


def rotated(env: Env, name: str) -> list[str]:
    """The subscription's rotated access logs (``access.log-<dateext>[.gz]``), by name."""
    done = env.ssh(SERVER, "sh", "-c", f"cd {shlex.quote(naming.logs_dir(name))} && ls -1")
    assert done.returncode == 0, done.error
    return sorted(f for f in done.text.split() if f.startswith("access.log-"))
