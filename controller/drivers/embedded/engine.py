"""The Docker engine behind the embedded environment.

``ensure_engine()`` returns a client for an engine that answers: the one named by
``DOCKER_HOST`` or the default socket if either answers, else a ``dockerd`` that we start
by hand in the background with a private data-root and exec-root under ``engine_root()``
(no iptables, no bridge: every server container uses the host network). ``stop_engine()``
stops only a dockerd that we started (known by its pidfile) and unmounts the nsfs mounts
dockerd may leave under ``exec-root/netns``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import psutil
import tenacity
from docker import errors as docker_errors

from controller.drivers.embedded import errors

API_VERSION = "1.41"
DEFAULT_ROOT = Path("/var/lib/tenantctl/docker")
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DOCKERD_FLAGS = ("--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                 "--bridge=none")


@dataclass(frozen=True)
class Engine:
    """A Docker engine that answered a ping."""

    client: docker.DockerClient
    """SDK client pinned to API ``API_VERSION``."""
    base_url: str
    """``unix://`` URL of the engine's socket (usable as ``DOCKER_HOST`` for the CLI)."""
    started_here: bool
    """True when tenantctl started this dockerd (and ``stop_engine`` may stop it)."""


def engine_root() -> Path:
    """Where our own dockerd keeps everything (``TENANTCTL_DOCKER_ROOT`` overrides)."""
    return Path(os.environ.get("TENANTCTL_DOCKER_ROOT", str(DEFAULT_ROOT)))


def _paths(root: Path) -> dict[str, Path]:
    return {
        "data": root / "data",
        "exec": root / "exec",
        "socket": root / "docker.sock",
        "pidfile": root / "dockerd.pid",
        "log": root / "dockerd.log",
    }


def _client(base_url: str) -> docker.DockerClient | None:
    """A client if the engine at ``base_url`` answers a ping, else None."""
    if base_url.startswith("unix://") and not _socket_accepts(base_url.removeprefix("unix://")):
        return None  # checked first: the SDK leaks its socket when connect() fails
    try:
        client = docker.DockerClient(base_url=base_url, version=API_VERSION, timeout=60)
    except (docker_errors.DockerException, OSError):
        return None
    try:
        client.ping()
    except (docker_errors.DockerException, OSError):
        client.close()
        return None
    return client


def _socket_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _answering_external() -> Engine | None:
    for url in (os.environ.get("DOCKER_HOST"), DEFAULT_SOCKET):
        if not url:
            continue
        client = _client(url)
        if client is not None:
            return Engine(client=client, base_url=url, started_here=False)
    return None


def find_engine(root: Path | None = None) -> Engine | None:
    """An engine that answers now (external first, then ours), without starting one."""
    external = _answering_external()
    if external is not None:
        return external
    paths = _paths(root or engine_root())
    url = f"unix://{paths['socket']}"
    client = _client(url) if paths["socket"].exists() else None
    return Engine(client=client, base_url=url, started_here=True) if client is not None else None


def ensure_engine(root: Path | None = None, *, timeout: float = 60.0) -> Engine:
    """Return an answering engine, starting our own dockerd under ``root`` if needed."""
    found = find_engine(root)
    if found is not None:
        return found
    paths = _paths(root or engine_root())
    url = f"unix://{paths['socket']}"
    _start_dockerd(paths, url)
    return Engine(client=_wait_for(url, paths, timeout), base_url=url, started_here=True)


def _start_dockerd(paths: dict[str, Path], url: str) -> None:
    for key in ("data", "exec"):
        paths[key].mkdir(parents=True, exist_ok=True)
    paths["socket"].unlink(missing_ok=True)
    argv = [
        "dockerd",
        f"--data-root={paths['data']}",
        f"--exec-root={paths['exec']}",
        f"--pidfile={paths['pidfile']}",
        "-H", url,
        *DOCKERD_FLAGS,
    ]
    with paths["log"].open("ab") as log:
        # setsid --fork: dockerd runs in its own session and is not our child, so it outlives
        # the `env up` that started it and is reaped by init, not left to us.
        subprocess.run(["setsid", "--fork", *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True)


def _wait_for(url: str, paths: dict[str, Path], timeout: float) -> docker.DockerClient:
    @tenacity.retry(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(0.2),
        retry=tenacity.retry_if_result(lambda c: c is None),
        retry_error_callback=lambda _state: None,
    )
    def ping() -> docker.DockerClient | None:
        return _client(url)

    client = ping()
    if client is None:
        tail = paths["log"].read_text(errors="replace")[-2000:] if paths["log"].exists() else ""
        raise errors.EngineError(f"dockerd did not answer on {url} within {timeout:.0f}s:\n{tail}")
    return client


def _our_dockerd(paths: dict[str, Path]) -> psutil.Process | None:
    """The dockerd named by our pidfile, if it is alive and really ours."""
    try:
        pid = int(paths["pidfile"].read_text().strip())
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    if cmdline and Path(cmdline[0]).name == "dockerd" and f"--exec-root={paths['exec']}" in cmdline:
        return proc
    return None


def engine_pid(root: Path | None = None) -> int | None:
    """PID of the dockerd tenantctl started under ``root``, or None."""
    proc = _our_dockerd(_paths(root or engine_root()))
    return proc.pid if proc is not None else None


def stop_engine(root: Path | None = None, *, timeout: float = 30.0) -> bool:
    """Stop the dockerd we started under ``root``; True if one was running."""
    paths = _paths(root or engine_root())
    proc = _our_dockerd(paths)
    if proc is not None:
        children = proc.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs([proc], timeout=timeout)
        for leftover in alive + [c for c in children if c.is_running()]:
            leftover.kill()
        psutil.wait_procs(children, timeout=5)
    _unmount_leftovers(paths["exec"])
    paths["socket"].unlink(missing_ok=True)
    return proc is not None


def _unmount_leftovers(exec_root: Path) -> None:
    """Unmount nsfs (and any other) mounts dockerd left under ``exec_root``, deepest first."""
    prefix = str(exec_root.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", point], check=False, capture_output=True)
        if os.path.ismount(point):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
