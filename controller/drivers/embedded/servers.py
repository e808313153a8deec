"""Server containers of the embedded environment, one set per environment.

An environment is one state directory; its id (``env_id``) is a short digest of the
directory's resolved path. Each ``Server`` with ``provider: docker`` is a container
``tenantctl-<env>-<name>`` labelled ``io.tenantctl.env=<env>`` and
``io.tenantctl.server=<name>`` (plus the state directory and the addresses it uses), on
the host network, with tini as PID 1 and sshd bound only to the server's management
address, accepting only tenantctl's own key for root. Its image is the one of the
server's Debian release (``os``: ``kinds.RELEASES``; the container is labelled
``io.tenantctl.os``). ``up`` is idempotent and refuses addresses used by a container of
another environment, and a container made for another release; ``down`` stops (or, with
``destroy_data``, removes) only its own environment's containers; ``status`` probes each
service on its own address from the host (TCP connect, or an HTTP ping for PHP-FPM).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import socket
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

from controller import provisioning
from controller.drivers.embedded import engine, errors
from controller.drivers.embedded import image as image_mod
from controller.model import kinds

LABEL = "io.tenantctl.server"
ENV_LABEL = "io.tenantctl.env"
STATE_LABEL = "io.tenantctl.state-dir"
ADDRESSES_LABEL = "io.tenantctl.addresses"
OS_LABEL = "io.tenantctl.os"
PREFIX = "tenantctl-"
ROLES = ("web", "db-mariadb", "db-postgresql", "dns", "backup")
FPM_PING_PATH = "/.tenantctl/fpm-ping"
STOP_TIMEOUT = 20
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Stops the role's services cleanly (reverse start order) before the container stops:
# tini only forwards SIGTERM to sshd, and daemons would be killed with the namespace.
_STOP_SERVICES = ("[ -r /etc/tenantctl/autostart ] || exit 0; "
                  "grep -v '^#' /etc/tenantctl/autostart | tac | while read -r svc; do "
                  '[ -n "$svc" ] && service "$svc" stop >/dev/null 2>&1; done; true')

# service name -> (port, roles that run it); ssh runs everywhere.
SERVICE_PORTS: dict[str, tuple[int, str | None]] = {
    "ssh": (22, None),
    "nginx": (80, "web"),
    "php-fpm": (80, "web"),
    "mariadb": (3306, "db-mariadb"),
    "postgresql": (5432, "db-postgresql"),
    "pdns": (53, "dns"),
    "pdns-api": (8081, "dns"),
    "restic-rest": (provisioning.backup.PORT, "backup"),
    # Prometheus exporters (issue 12; the same ports as monitoring.EXPORTERS)
    "node-exporter": (9100, None),
    "nginx-exporter": (9113, "web"),
    "nginx-status": (9112, "web"),
    "mysqld-exporter": (9104, "db-mariadb"),
    "postgres-exporter": (9187, "db-postgresql"),
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
    os: str = kinds.DEFAULT_OS

    def __post_init__(self) -> None:
        if self.os not in kinds.RELEASES:
            raise ValueError(f"server {self.name}: unknown os {self.os!r} (known: {', '.join(kinds.RELEASES)})")
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
            os=str(fields.get("os") or kinds.DEFAULT_OS),
        )

    @property
    def suite(self) -> str:
        """The Debian suite of the server's image (``bookworm``, ``trixie``)."""
        return kinds.RELEASES[self.os].suite

    @property
    def addresses(self) -> list[str]:
        """Every address the server uses: its management address, then its IPs."""
        return list(dict.fromkeys([self.address, *(ip.address for ip in self.ips)]))


def env_id(state_dir: Path) -> str:
    """The id of the environment kept in ``state_dir``: 8 hex digits of its resolved path."""
    return hashlib.blake2b(str(Path(state_dir).resolve()).encode(), digest_size=4).hexdigest()


def container_name(env: str, server: ServerSpec) -> str:
    """``tenantctl-<env>-<server>``: a server's container in one environment."""
    return f"{PREFIX}{env}-{server.name}"


def docker_servers(servers: Iterable[ServerSpec]) -> list[ServerSpec]:
    """The servers this driver runs, checked for address clashes."""
    chosen = [s for s in servers if s.provider == "docker"]
    seen: dict[str, str] = {}
    for server in chosen:
        for addr in server.addresses:
            if seen.setdefault(addr, server.name) != server.name:
                raise errors.ServerError(f"servers {seen[addr]} and {server.name} both use {addr}")
    return chosen


def _container(client: docker.DockerClient, env: str, server: ServerSpec) -> docker_containers.Container | None:
    try:
        return client.containers.get(container_name(env, server))
    except docker_errors.NotFound:
        return None


def environment_containers(client: docker.DockerClient, env: str) -> list[docker_containers.Container]:
    """Every container (running or not) of environment ``env``."""
    return list(client.containers.list(all=True, filters={"label": f"{ENV_LABEL}={env}"}))


def _env_vars(container: docker_containers.Container) -> dict[str, str]:
    return dict(str(e).split("=", 1) for e in container.attrs["Config"].get("Env") or () if "=" in str(e))


def addresses_of(container: docker_containers.Container) -> set[str]:
    """The addresses a server container uses (its labels; the address variable for old ones)."""
    listed = str(container.labels.get(ADDRESSES_LABEL, ""))
    found = {a for a in listed.split(",") if a}
    address = _env_vars(container).get("TENANTCTL_ADDRESS", "")
    return found | ({address} if address else set())


def up(
    servers: Iterable[ServerSpec],
    state_dir: Path,
    *,
    client: docker.DockerClient | None = None,
    image: str | None = None,
) -> list[ServerSpec]:
    """Run (or start) every docker server of the environment kept in ``state_dir``;
    return the ones that were not already running.

    Without ``client``/``image``, the engine is ensured and the image built as needed.
    ``image`` is the image of the default release (bookworm); a server of another
    release gets its own (``image_mod.ensure_image``, built when missing).
    """
    if client is None or image is None:
        eng = engine.ensure_engine()
        with contextlib.closing(eng.client):
            return up(servers, state_dir, client=client or eng.client,
                      image=image or image_mod.ensure_server_image(eng))
    env = env_id(state_dir)
    public_key = provisioning.ssh_key(state_dir).with_suffix(".pub").read_text().strip()
    wanted = docker_servers(servers)
    check_addresses_free(client, env, wanted)
    images = {image_mod.SUITE: image}
    started: list[ServerSpec] = []
    for server in wanted:
        name = container_name(env, server)
        container = _container(client, env, server)
        if container is not None:
            made_for = str(container.labels.get(OS_LABEL, kinds.DEFAULT_OS))
            if made_for != server.os:
                raise errors.ServerError(
                    f"server {server.name}: container {name} runs {made_for}, not {server.os}; "
                    f"`tenantctl env down --destroy-data` recreates it without its data"
                )
            env_vars = _env_vars(container)
            if env_vars.get("TENANTCTL_AUTHORIZED_KEY") != public_key:
                raise errors.ServerError(
                    f"server {server.name}: container {name} does not accept the SSH key of {state_dir} "
                    f"(was the key replaced?); `tenantctl env down --destroy-data` recreates it without its data"
                )
            if env_vars.get("TENANTCTL_ADDRESS") != server.address:
                raise errors.ServerError(
                    f"server {server.name}: container {name} was made for address "
                    f"{env_vars.get('TENANTCTL_ADDRESS')}, not {server.address}; "
                    f"`tenantctl env down --destroy-data` recreates it without its data"
                )
            if container.status == "running":
                continue
        if _tcp_up(server.address, 22, timeout=0.5):
            raise errors.ServerError(f"server {server.name}: something already listens on {server.address}:22")
        try:
            if container is None:
                if server.suite not in images:
                    images[server.suite] = image_mod.ensure_image(client, server.suite)
                client.containers.run(
                    images[server.suite],
                    name=name,
                    detach=True,
                    network_mode="host",
                    labels={LABEL: server.name, ENV_LABEL: env, STATE_LABEL: str(Path(state_dir).resolve()),
                            ADDRESSES_LABEL: ",".join(server.addresses), "io.tenantctl.region": server.region,
                            OS_LABEL: server.os},
                    environment={"TENANTCTL_ADDRESS": server.address, "TENANTCTL_AUTHORIZED_KEY": public_key},
                    stop_signal="SIGTERM",
                    # Debian's pure-ftpd (tenants' FTPS, issue 14) exits 252 without these two,
                    # which Docker does not give by default. DAC_READ_SEARCH also lets root in
                    # the container call open_by_handle_at: fine for this development
                    # environment (its root is tenantctl), not a production isolation boundary.
                    cap_add=FTP_CAPABILITIES,
                    tmpfs={FILL_MOUNT: f"size={FILL_SIZE}"},
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
            logs = client.containers.get(container_name(env, server)).logs(tail=20).decode(errors="replace")
            raise errors.ServerError(f"{exc}; container log:\n{logs}") from exc
    return started


#: capabilities beyond Docker's default set that an embedded server is created with
FTP_CAPABILITIES = ["SYS_NICE", "DAC_READ_SEARCH"]

#: A small empty tmpfs on every embedded server, made with the container (a running
#: container cannot mount one: no CAP_SYS_ADMIN), so that a test can fill a filesystem
#: node exporter reports (ServerDiskFull) without touching the host's disk. Not under
#: /dev, /run or /mnt: node exporter's default mount-point excludes leave those out.
#: Empty it costs no memory; containers made before it have none (recreated by
#: ``env down --destroy-data``).
FILL_MOUNT = "/srv/tenantctl-fill"
FILL_SIZE = "16m"


def check_addresses_free(client: docker.DockerClient, env: str, wanted: Iterable[ServerSpec]) -> None:
    """Refuse an address that a container of another environment uses, running or stopped
    (a stopped one still holds its server's data and would clash when started again)."""
    by_address = {addr: s.name for s in wanted for addr in s.addresses}
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        other_env = str(container.labels.get(ENV_LABEL, ""))
        if other_env == env:
            continue
        for addr in sorted(addresses_of(container) & by_address.keys()):
            owner = (f"environment {other_env} (state directory {container.labels.get(STATE_LABEL, '?')})"
                     if other_env else "no environment (made by an older tenantctl)")
            raise errors.ServerError(
                f"server {by_address[addr]}: address {addr} is already used by container {container.name} "
                f"({container.status}) of {owner}; bring that environment down with "
                f"`tenantctl env down --destroy-data` (its state directory as TENANTCTL_STATE_DIR), "
                f"or give this server another address"
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


@dataclass(frozen=True)
class Downed:
    """What ``down`` did to an environment's servers (server names)."""

    stopped: tuple[str, ...] = ()
    """stopped, data kept: ``up`` starts them again with their tenants"""
    removed: tuple[str, ...] = ()
    """removed with their data (``destroy_data``)"""


def down(
    client: docker.DockerClient,
    state_dir: Path,
    *,
    only: Iterable[str] | None = None,
    destroy_data: bool = False,
) -> Downed:
    """Stop the containers of the environment kept in ``state_dir`` (or only the servers
    named in ``only``), their services first; with ``destroy_data`` remove them and their
    data instead. Containers of other environments are never touched."""
    names = set(only) if only is not None else None
    stopped, removed = [], []
    for container in environment_containers(client, env_id(state_dir)):
        server = str(container.labels.get(LABEL, container.name))
        if names is not None and server not in names:
            continue
        if destroy_data:
            container.remove(force=True, v=True)
            removed.append(server)
            continue
        if container.status == "running":
            with contextlib.suppress(docker_errors.APIError):
                container.exec_run(["sh", "-c", _STOP_SERVICES])
            container.stop(timeout=STOP_TIMEOUT)
        stopped.append(server)
    return Downed(stopped=tuple(sorted(stopped)), removed=tuple(sorted(removed)))


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


def state_of(client: docker.DockerClient | None, env: str, server: ServerSpec) -> str:
    """``running``, ``stopped`` or ``missing`` (also when no engine answers)."""
    container = _container(client, env, server) if client is not None else None
    if container is None:
        return "missing"
    return "running" if container.status == "running" else "stopped"


def status(
    servers: Iterable[ServerSpec], state_dir: Path, *, client: docker.DockerClient | None = None
) -> list[dict[str, Any]]:
    """One entry per docker server of the environment kept in ``state_dir``, shaped as
    ``env status -o json``'s ``servers`` items.

    Without ``client``, uses the engine that answers now (never starts one).
    """
    if client is None:
        eng = engine.find_engine()
        if eng is not None:
            with contextlib.closing(eng.client):
                return status(servers, state_dir, client=eng.client)
    env = env_id(state_dir)
    entries = []
    for server in docker_servers(servers):
        state = state_of(client, env, server)
        services = probe(server) if state == "running" else dict.fromkeys(services_of(server), "down")
        entries.append({
            "name": server.name,
            "region": server.region,
            "provider": server.provider,
            "address": server.address,
            "state": state,
            "roles": list(server.roles),
            "os": server.os,
            "services": services,
        })
    return entries


def healthy(entries: Iterable[Mapping[str, Any]]) -> bool:
    """True when every server of ``status`` runs and every one of its services is up."""
    return all(e["state"] == "running" and all(v == "up" for v in e["services"].values()) for e in entries)
