"""Server containers of the embedded environment.

Each ``Server`` with ``provider: docker`` is a container ``tenantctl-<name>`` (label
``io.tenantctl.server=<name>``) on the host network, with tini as PID 1 and sshd bound only
to the server's management address, accepting only tenantctl's own key for root. ``up``
is idempotent, ``down`` removes every such container, ``status`` probes each service on
its own address from the host (TCP connect, or an HTTP ping for PHP-FPM).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import tenacity
from docker import errors as docker_errors
from docker.models import containers as docker_containers

from controller.drivers.embedded import engine, errors
from controller.drivers.embedded import image as image_mod

LABEL = "io.tenantctl.server"
PREFIX = "tenantctl-"
ROLES = ("web", "db-mariadb", "db-postgresql", "dns", "backup")
FPM_PING_PATH = "/.tenantctl/fpm-ping"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# service name -> (port, roles that run it); ssh runs everywhere.
SERVICE_PORTS: dict[str, tuple[int, str | None]] = {
    "ssh": (22, None),
    "nginx": (80, "web"),
    "php-fpm": (80, "web"),
    "mariadb": (3306, "db-mariadb"),
    "postgresql": (5432, "db-postgresql"),
    "pdns": (53, "dns"),
    "pdns-api": (8081, "dns"),
}


@dataclass(frozen=True)
class IpSpec:
    """One IP address of a server."""

    address: str
    type: str = "shared"


@dataclass(frozen=True)
class ServerSpec:
    """The fields of a ``Server`` document this driver needs (see desired-state.md)."""

    name: str
    region: str
    provider: str
    address: str
    ips: tuple[IpSpec, ...] = ()
    roles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"server name {self.name!r} is not a DNS label")
        addr = ipaddress.ip_address(self.address)  # raises ValueError on garbage
        if self.provider == "docker" and not (isinstance(addr, ipaddress.IPv4Address) and addr.is_loopback):
            raise ValueError(f"server {self.name}: a docker server's address must be in 127.0.0.0/8")
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown:
            raise ValueError(f"server {self.name}: unknown roles {unknown}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerSpec:
        """From a whole ``Server`` document or from a flat mapping of its fields."""
        if "spec" in data:
            fields = dict(data["spec"])
            fields["name"] = data["metadata"]["name"]
        else:
            fields = dict(data)
        ips = tuple(
            IpSpec(address=str(ip["address"]), type=str(ip.get("type", "shared")))
            if isinstance(ip, Mapping)
            else IpSpec(address=str(ip))
            for ip in fields.get("ips") or ()
        )
        return cls(
            name=str(fields["name"]),
            region=str(fields.get("region", "")),
            provider=str(fields.get("provider", "docker")),
            address=str(fields["address"]),
            ips=ips,
            roles=tuple(str(r) for r in fields.get("roles") or ()),
        )

    @property
    def container_name(self) -> str:
        return PREFIX + self.name


def docker_servers(servers: Iterable[ServerSpec]) -> list[ServerSpec]:
    """The servers this driver runs, checked for address clashes."""
    chosen = [s for s in servers if s.provider == "docker"]
    seen: dict[str, str] = {}
    for server in chosen:
        for addr in {server.address, *(ip.address for ip in server.ips)}:
            if seen.setdefault(addr, server.name) != server.name:
                raise errors.ServerError(f"servers {seen[addr]} and {server.name} both use {addr}")
    return chosen


def ssh_key(state_dir: Path) -> Path:
    """tenantctl's own SSH key for the servers (generated once, 0600)."""
    ssh_dir = state_dir / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ssh_dir / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tenantctl", "-f", str(key)],
            check=True, capture_output=True,
        )
    key.chmod(0o600)
    return key


def _container(client: docker.DockerClient, server: ServerSpec) -> docker_containers.Container | None:
    try:
        return client.containers.get(server.container_name)
    except docker_errors.NotFound:
        return None


def up(
    servers: Iterable[ServerSpec],
    state_dir: Path,
    *,
    client: docker.DockerClient | None = None,
    image: str | None = None,
) -> list[ServerSpec]:
    """Run (or start) every docker server; return the ones that were not already running.

    Without ``client``/``image``, the engine is ensured and the image built as needed.
    """
    if client is None or image is None:
        eng = engine.ensure_engine()
        with contextlib.closing(eng.client):
            return up(servers, state_dir, client=client or eng.client,
                      image=image or image_mod.ensure_server_image(eng))
    public_key = ssh_key(state_dir).with_suffix(".pub").read_text().strip()
    wanted = docker_servers(servers)
    _check_addresses_free(client, wanted)
    started: list[ServerSpec] = []
    for server in wanted:
        container = _container(client, server)
        if container is not None and f"TENANTCTL_AUTHORIZED_KEY={public_key}" not in (
            container.attrs.get("Config", {}).get("Env") or []
        ):
            raise errors.ServerError(
                f"server {server.name}: container {server.container_name} was made for another state directory "
                f"(its SSH key is not {state_dir}'s); run `tenantctl env down` with that state directory first"
            )
        if container is not None and container.status == "running":
            continue
        if _tcp_up(server.address, 22, timeout=0.5):
            raise errors.ServerError(f"server {server.name}: something already listens on {server.address}:22")
        try:
            if container is None:
                client.containers.run(
                    image,
                    name=server.container_name,
                    detach=True,
                    network_mode="host",
                    labels={LABEL: server.name, "io.tenantctl.region": server.region},
                    environment={"TENANTCTL_ADDRESS": server.address, "TENANTCTL_AUTHORIZED_KEY": public_key},
                    stop_signal="SIGTERM",
                )
            else:
                container.start()
        except docker_errors.APIError as exc:
            raise errors.ServerError(f"server {server.name}: {exc.explanation or exc}") from exc
        started.append(server)
    for server in started:
        try:
            wait_for_ssh(server)
        except errors.ServerError as exc:
            logs = client.containers.get(server.container_name).logs(tail=20).decode(errors="replace")
            raise errors.ServerError(f"{exc}; container log:\n{logs}") from exc
    return started


def _check_addresses_free(client: docker.DockerClient, wanted: list[ServerSpec]) -> None:
    """Refuse addresses that a running server container of another name already uses."""
    names = {s.name: s for s in wanted}
    by_address = {s.address: s.name for s in wanted}
    for container in client.containers.list(filters={"label": LABEL}):
        other = str(container.labels.get(LABEL, ""))
        env = dict(str(e).split("=", 1) for e in container.attrs["Config"].get("Env") or () if "=" in str(e))
        address = env.get("TENANTCTL_ADDRESS", "")
        if address in by_address and other != by_address[address] and other not in names:
            raise errors.ServerError(
                f"server {by_address[address]}: address {address} is used by running server {other}"
            )


def wait_for_ssh(server: ServerSpec, timeout: float = 30.0) -> None:
    """Wait until the server's sshd shows its banner on its address."""

    @tenacity.retry(stop=tenacity.stop_after_delay(timeout), wait=tenacity.wait_fixed(0.1), reraise=True)
    def banner() -> None:
        with socket.create_connection((server.address, 22), timeout=2) as sock:
            if not sock.recv(64).startswith(b"SSH-"):
                raise OSError("no SSH banner")

    try:
        banner()
    except OSError as exc:
        raise errors.ServerError(f"server {server.name}: sshd on {server.address}:22 did not answer") from exc


def down(state_dir: Path | None = None, *, client: docker.DockerClient | None = None) -> list[str]:
    """Remove every tenantctl server container (on the engine that answers); return their names."""
    del state_dir  # containers are found by label, not by what the state dir remembers
    if client is None:
        eng = engine.find_engine()
        if eng is None:
            return []
        with contextlib.closing(eng.client):
            return down(client=eng.client)
    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        container.remove(force=True, v=True)
        removed.append(str(container.labels.get(LABEL, container.name)))
    return sorted(removed)


def _tcp_up(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _fpm_up(address: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}{FPM_PING_PATH}", timeout=timeout) as resp:
            return bool(resp.status == 200 and resp.read().strip() == b"pong")
    except (OSError, urllib.error.URLError):
        return False


def services_of(server: ServerSpec) -> list[str]:
    """Names of the services a server runs, given its roles."""
    return [name for name, (_, role) in SERVICE_PORTS.items() if role is None or role in server.roles]


def probe(server: ServerSpec) -> dict[str, str]:
    """``{service: "up"|"down"}``, probed from the host on the server's own address."""
    result = {}
    for name in services_of(server):
        port = SERVICE_PORTS[name][0]
        ok = _fpm_up(server.address) if name == "php-fpm" else _tcp_up(server.address, port)
        result[name] = "up" if ok else "down"
    return result


def state_of(client: docker.DockerClient | None, server: ServerSpec) -> str:
    """``running``, ``stopped`` or ``missing``."""
    container = _container(client, server) if client is not None else None
    if container is None:
        return "missing"
    return "running" if container.status == "running" else "stopped"


def status(servers: Iterable[ServerSpec], *, client: docker.DockerClient | None = None) -> list[dict[str, Any]]:
    """One entry per docker server, shaped as ``env status -o json``'s ``servers`` items.

    Without ``client``, uses the engine that answers now (never starts one).
    """
    if client is None:
        eng = engine.find_engine()
        if eng is not None:
            with contextlib.closing(eng.client):
                return status(servers, client=eng.client)
    entries = []
    for server in docker_servers(servers):
        state = state_of(client, server)
        services = probe(server) if state == "running" else dict.fromkeys(services_of(server), "down")
        entries.append({
            "name": server.name,
            "region": server.region,
            "provider": server.provider,
            "address": server.address,
            "state": state,
            "roles": list(server.roles),
            "services": services,
        })
    return entries
