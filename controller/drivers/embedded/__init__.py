"""The embedded multi-server environment: ``Server``s with ``provider: docker``.

Each such server is a container on this machine (host network, services bound to the
server's own loopback address), reached and configured like a real server: SSH with
tenantctl's key, then the bootstrap of ``provisioning`` (``playbooks/bootstrap.yml``).
What belongs here: the engine (``engine``), the registry-free image (``image``), the
containers (``servers``), the test CA (``pebble``) and the three entry points
``env up|down|status`` use. What does not: the SSH key, credentials and the Ansible
bootstrap (``controller.provisioning``, shared with real hosts), per-tenant provisioning
(the concern drivers), the desired-state model (``model``).

Environments are isolated: an environment is one state directory, its id
(``servers.env_id``) a digest of the directory's path. Its containers carry that id (name
and label), its Pebble listens on an address of its own (``pebble.host``); ``env_down``
touches only its own containers and keeps their data unless asked to destroy it; the
dockerd tenantctl started is stopped only when no server container of any environment
is left and nothing else runs on it.

State dir layout (beside ``provisioning``'s): ``bootstrap/<server>`` (fingerprint of the
last successful bootstrap), ``pebble/`` (the test ACME CA on the host, see ``pebble``;
its ``ca-bundle.pem`` is status's ``caBundle``), ``prometheus/`` (the environment's
Prometheus and Alertmanager, see ``monitoring``: started by ``env_up``, stopped with
Pebble).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from rich import console as rich_console

from controller import provisioning
from controller.drivers.embedded import claims, engine, errors, image, monitoring, pebble, servers
from controller.drivers.embedded.servers import ServerSpec

__all__ = [
    "Down",
    "ServerSpec",
    "bootstrap",
    "env_down",
    "env_id",
    "env_status",
    "env_up",
    "errors",
    "hold",
    "remove_abandoned",
]

_console = rich_console.Console(stderr=True)
env_id = servers.env_id
hold = claims.hold
#: kept for callers outside this package; the bootstrap lives in ``provisioning``
bootstrap = provisioning.bootstrap


def _fingerprint(server: ServerSpec, container_id: str, started_at: str) -> str:
    """What a bootstrap depends on: the container's life, the server's fields, the role's files."""
    h = hashlib.sha256(json.dumps([container_id, started_at, server.address, sorted(server.roles)]).encode())
    h.update(provisioning.roles.digest().encode())
    return h.hexdigest()


def _dns_server(servers_: list[ServerSpec]) -> str | None:
    """``address:53`` of the first dns server: where Pebble resolves names to validate."""
    return next((f"{s.address}:53" for s in servers_ if "dns" in s.roles), None)


def env_up(servers_: list[ServerSpec], state_dir: Path) -> None:
    """Bring every docker server of the environment kept in ``state_dir`` up and
    bootstrapped, and its ACME CA (Pebble) up on the host; a no-op when all already are.
    Stopped servers start again with their data. Refuses an address that a container of
    another environment uses."""
    wanted = servers.docker_servers(servers_)
    if not wanted:
        return
    provisioning.keys.private_dir(state_dir)
    env = env_id(state_dir)
    eng = engine.ensure_engine()
    with contextlib.closing(eng.client):
        servers.check_addresses_free(eng.client, env, wanted)  # before starting anything
        bundle = pebble.up(state_dir, _dns_server(wanted))
        provisioning.acme.set_default(state_dir, provisioning.acme.Ca(pebble.directory(state_dir), str(bundle)))
        ref = image.ensure_server_image(eng)
        started = time.monotonic()
        servers.up(wanted, state_dir, client=eng.client, image=ref)
        _console.log(f"servers up in {time.monotonic() - started:.1f}s")
        marks = provisioning.keys.private_dir(state_dir / "bootstrap")
        pending: list[tuple[ServerSpec, str]] = []
        for server in wanted:
            attrs = eng.client.containers.get(servers.container_name(env, server)).attrs
            fingerprint = _fingerprint(server, str(attrs["Id"]), str(attrs["State"]["StartedAt"]))
            mark = marks / server.name
            if not mark.exists() or mark.read_text() != fingerprint:
                pending.append((server, fingerprint))
    monitoring.up(wanted, state_dir)  # Prometheus and Alertmanager on the host (issue 12)
    if not pending:
        return
    started = time.monotonic()
    with _console.status(f"bootstrap {', '.join(s.name for s, _ in pending)}"):
        stats = provisioning.bootstrap([s for s, _ in pending], state_dir)
    _console.log(f"bootstrap in {time.monotonic() - started:.1f}s: "
                 + ", ".join(f"{h} ok={s.ok} changed={s.changed}" for h, s in stats.items()))
    for server, fingerprint in pending:
        (marks / server.name).write_text(fingerprint)


@dataclass(frozen=True)
class Down:
    """What ``env_down`` did."""

    env: str
    """the environment's id"""
    stopped: tuple[str, ...] = ()
    """servers stopped with their data kept (tenant files, databases, zones): ``env_up``
    starts them again as they were"""
    removed: tuple[str, ...] = ()
    """servers removed with their data (``destroy_data``)"""
    engine_stopped: bool = False
    """True when the dockerd tenantctl started was stopped (nothing else used it)"""

    def describe(self) -> list[str]:
        """One line per fact, for the CLI."""
        lines = []
        if self.stopped:
            lines.append(f"stopped {', '.join(self.stopped)}; kept their data (tenant files, databases, zones): "
                         "`tenantctl env up` starts them again as they were, "
                         "`tenantctl env down --destroy-data` removes them")
        if self.removed:
            lines.append(f"removed {', '.join(self.removed)} and their data")
        if not self.stopped and not self.removed:
            lines.append(f"no server of environment {self.env} was there")
        if self.engine_stopped:
            lines.append("stopped the Docker engine tenantctl started (no other environment uses it)")
        return lines


def _engine_idle(client: docker.DockerClient) -> bool:
    """No server container of any environment (running or not: it holds data) and no
    other running container (an image build, someone else's) on the engine."""
    return not client.containers.list(all=True, filters={"label": servers.LABEL}) and not client.containers.list()


def env_down(state_dir: Path, only: Iterable[ServerSpec] | None = None, *, destroy_data: bool = False) -> Down:
    """Stop the servers of the environment kept in ``state_dir`` (or ``only`` these),
    keeping their data, or remove them with their data when ``destroy_data``; stop its
    Pebble once none of its servers runs, and the dockerd tenantctl started once no server
    of any environment is left. Never touches another environment's containers."""
    env = env_id(state_dir)
    names = {s.name for s in only} if only is not None else None
    eng = engine.find_engine()
    if eng is None and destroy_data and (engine.engine_root() / "data").is_dir():
        eng = engine.ensure_engine()  # a stopped engine may still hold this environment's containers
    downed = servers.Downed()
    engine_stopped = False
    still_running = False
    if eng is not None:
        with contextlib.closing(eng.client):
            downed = servers.down(eng.client, state_dir, only=names, destroy_data=destroy_data)
            still_running = any(c.status == "running" for c in servers.environment_containers(eng.client, env))
            idle = _engine_idle(eng.client)
        if idle and eng.started_here:
            engine_stopped = engine.stop_engine()
    if not still_running:
        provisioning.ansible.forget(state_dir)
        pebble.down(state_dir)  # one Pebble per environment: its owner is done with it
        monitoring.down(state_dir)
        provisioning.acme.set_default(state_dir, None)
    marks = state_dir / "bootstrap"
    if marks.is_dir():
        for server in downed.removed:
            (marks / server).unlink(missing_ok=True)
    return Down(env=env, stopped=downed.stopped, removed=downed.removed, engine_stopped=engine_stopped)


def remove_abandoned(servers_: Iterable[ServerSpec], *, prefix: str) -> list[str]:
    """Remove, with their data, the containers that a dead test session or bench left on
    the addresses of ``servers_`` (see ``claims``: only environments whose state
    directory starts with ``prefix`` and that no live process holds); return their names."""
    eng = engine.find_engine()
    if eng is None:
        return []
    removed = []
    with contextlib.closing(eng.client):
        for container in claims.abandoned(eng.client, servers.docker_servers(servers_), prefix=prefix):
            state = Path(str(container.labels.get(servers.STATE_LABEL)))
            container.remove(force=True, v=True)
            removed.append(str(container.name))
            if state.is_dir():
                pebble.down(state)
                monitoring.down(state)
                provisioning.ansible.forget(state)
    return sorted(removed)


def env_status(servers_: list[ServerSpec], state_dir: Path) -> dict[str, Any]:
    """``{"environment": {...}, "servers": [...], "caBundle": path | None, "acme": {...},
    "monitoring": {...}, "healthy": bool}`` as in ``env status -o json``; never starts an engine. ``caBundle``
    verifies the embedded CA's directory and the certificates it issued (None while Pebble
    is not running); ``healthy`` is False when a server is missing or stopped or one of
    its services is down."""
    acme = pebble.status(state_dir)
    entries = servers.status(servers_, state_dir)
    return {
        "environment": {"id": env_id(state_dir), "stateDir": str(Path(state_dir).resolve())},
        "servers": entries,
        "caBundle": acme["caBundle"],
        "acme": acme,
        "monitoring": monitoring.status(state_dir),
        "healthy": servers.healthy(entries),
    }
