"""The embedded multi-server environment: ``Server``s with ``provider: docker``.

Each such server is a container on this machine (host network, services bound to the
server's own loopback address), reached and configured like a real server: SSH with
tenantctl's key, then the ``playbooks/bootstrap.yml`` playbook. What belongs here: the
engine (``engine``), the registry-free image (``image``), the containers (``servers``),
Ansible runs (``ansible``) and the three entry points ``env up|down|status`` use. What
does not: per-tenant provisioning (other drivers), the desired-state model (``model``).

State dir layout: ``ssh/`` (key pair, 0600), ``secrets/<server>.json`` (generated
credentials, 0600), ``ansible/`` (runner data and artifacts), ``bootstrap/<server>``
(fingerprint of the last successful bootstrap), ``pebble/`` (the test ACME CA on the
host, see ``pebble``; its ``ca-bundle.pem`` is status's ``caBundle``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import string
import time
from pathlib import Path
from typing import Any

from rich import console as rich_console

from controller.drivers.embedded import ansible, engine, errors, image, pebble, servers
from controller.drivers.embedded.servers import ServerSpec

__all__ = [
    "ServerSpec",
    "bootstrap",
    "credentials",
    "env_down",
    "env_status",
    "env_up",
    "errors",
]

BOOTSTRAP_PLAYBOOK = "bootstrap.yml"
_ALPHABET = string.ascii_letters + string.digits
_console = rich_console.Console(stderr=True)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def credentials(state_dir: Path, server: str) -> dict[str, str]:
    """Generated credentials of one server (created on first use, kept 0600)."""
    path = _private_dir(state_dir / "secrets") / f"{server}.json"
    creds: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = ("mariadb_admin_password", "postgresql_admin_password", "pdns_api_key")
    if any(k not in creds for k in wanted):
        for key in wanted:
            creds.setdefault(key, "".join(secrets.choice(_ALPHABET) for _ in range(32)))
        creds.setdefault("mariadb_admin_user", "tenantctl")
        creds.setdefault("postgresql_admin_user", "tenantctl")
        path.touch(mode=0o600)
        path.write_text(json.dumps(creds, indent=2, sort_keys=True) + "\n")
    path.chmod(0o600)
    return creds


def _hostvars(state_dir: Path, server: ServerSpec) -> dict[str, Any]:
    creds = credentials(state_dir, server.name)
    return {
        "tenantctl_mariadb_admin_user": creds["mariadb_admin_user"],
        "tenantctl_mariadb_admin_password": creds["mariadb_admin_password"],
        "tenantctl_postgresql_admin_user": creds["postgresql_admin_user"],
        "tenantctl_postgresql_admin_password": creds["postgresql_admin_password"],
        "tenantctl_pdns_api_key": creds["pdns_api_key"],
    }


def _fingerprint(server: ServerSpec, container_id: str, started_at: str) -> str:
    """What a bootstrap depends on: the container's life, the server's fields, the role's files."""
    h = hashlib.sha256(json.dumps([container_id, started_at, server.address, sorted(server.roles)]).encode())
    root = ansible.PLAYBOOKS_DIR
    for path in sorted([root / BOOTSTRAP_PLAYBOOK, *(root / "roles" / "tenantctl_server").rglob("*")]):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def bootstrap(targets: list[ServerSpec], state_dir: Path) -> dict[str, ansible.HostStats]:
    """Run the bootstrap playbook on ``targets`` (all at once) and return per-host counts."""
    if not targets:
        return {}
    hostvars = {s.name: _hostvars(state_dir, s) for s in targets}
    return ansible.run_playbook(BOOTSTRAP_PLAYBOOK, targets, state_dir, hostvars=hostvars)


def _dns_server(servers_: list[ServerSpec]) -> str | None:
    """``address:53`` of the first dns server: where Pebble resolves names to validate."""
    return next((f"{s.address}:53" for s in servers_ if "dns" in s.roles), None)


def env_up(servers_: list[ServerSpec], state_dir: Path) -> None:
    """Bring every docker server up and bootstrapped, and the ACME CA (Pebble) up on the
    host; a no-op when all already are."""
    wanted = servers.docker_servers(servers_)
    if not wanted:
        return
    _private_dir(state_dir)
    pebble.up(state_dir, _dns_server(wanted))
    eng = engine.ensure_engine()
    with contextlib.closing(eng.client):
        ref = image.ensure_server_image(eng)
        started = time.monotonic()
        servers.up(wanted, state_dir, client=eng.client, image=ref)
        _console.log(f"servers up in {time.monotonic() - started:.1f}s")
        marks = _private_dir(state_dir / "bootstrap")
        pending: list[tuple[ServerSpec, str]] = []
        for server in wanted:
            attrs = eng.client.containers.get(server.container_name).attrs
            fingerprint = _fingerprint(server, str(attrs["Id"]), str(attrs["State"]["StartedAt"]))
            mark = marks / server.name
            if not mark.exists() or mark.read_text() != fingerprint:
                pending.append((server, fingerprint))
    if not pending:
        return
    started = time.monotonic()
    with _console.status(f"bootstrap {', '.join(s.name for s, _ in pending)}"):
        stats = bootstrap([s for s, _ in pending], state_dir)
    _console.log(f"bootstrap in {time.monotonic() - started:.1f}s: "
                 + ", ".join(f"{h} ok={s.ok} changed={s.changed}" for h, s in stats.items()))
    for server, fingerprint in pending:
        (marks / server.name).write_text(fingerprint)


def env_down(state_dir: Path, only: list[ServerSpec] | None = None) -> bool:
    """Remove the server containers (every tenantctl one, or ``only`` these) and stop the
    dockerd tenantctl started once no tenantctl container is left. True if it stopped."""
    eng = engine.find_engine()
    remaining = 0
    if eng is not None:
        with contextlib.closing(eng.client):
            if only is None:
                servers.down(state_dir, client=eng.client)
            else:
                names = {s.container_name for s in only}
                for container in eng.client.containers.list(all=True, filters={"label": servers.LABEL}):
                    if container.name in names:
                        container.remove(force=True, v=True)
            remaining = len(eng.client.containers.list(all=True, filters={"label": servers.LABEL}))
    ansible.forget(state_dir)
    pebble.down(state_dir)  # one Pebble per environment (state directory): its owner is done with it
    marks = state_dir / "bootstrap"
    if marks.is_dir():
        for mark in marks.iterdir():
            if only is None or mark.name in {s.name for s in only}:
                mark.unlink()
    if remaining:
        return False
    engine.stop_engine()
    return True


def env_status(servers_: list[ServerSpec], state_dir: Path) -> dict[str, Any]:
    """``{"servers": [...], "caBundle": path | None, "acme": {...}}`` as in ``env status
    -o json``; never starts an engine. ``caBundle`` verifies the embedded CA's directory
    and the certificates it issued (None while Pebble is not running)."""
    acme = pebble.status(state_dir)
    return {"servers": servers.status(servers_), "caBundle": acme["caBundle"], "acme": acme}
