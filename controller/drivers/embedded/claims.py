"""Which process uses an environment, so that what a killed one left can be recognised.

A test session or a bench holds ``hold(state_dir)`` (an exclusive ``flock`` on
``<state>/env.lock``) while it uses its environment; the kernel releases the lock when
the process ends, however it ends. ``abandoned`` then tells the containers of such a
dead holder's environment apart from those of a live one, so that a new session may
remove what a killed one left on its addresses, and nothing else. Environments of the
CLI (``tenantctl env up``) are never held: ``abandoned`` only considers state
directories under a prefix its caller owns (pytest's or a bench's temporary ones).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

import docker
from docker.models import containers as docker_containers

from controller.drivers.embedded import errors, servers
from controller.state import locks

LOCK = "env.lock"


def hold(state_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Mark the environment of ``state_dir`` as in use by this process until exit."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return locks.exclusive(state_dir / LOCK, busy=lambda: errors.EmbeddedError(
        f"the environment of {state_dir} is in use by another process"))


def in_use(state_dir: Path) -> bool:
    """True while a live process holds ``hold(state_dir)``."""
    try:
        fd = os.open(state_dir / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def abandoned(
    client: docker.DockerClient, wanted: Iterable[servers.ServerSpec], *, prefix: str
) -> list[docker_containers.Container]:
    """Containers of other environments that use an address of ``wanted``, whose state
    directory starts with ``prefix`` and is held by no live process (or is gone)."""
    addresses = {a for s in wanted for a in s.addresses}
    found = []
    for container in client.containers.list(all=True, filters={"label": servers.ENV_LABEL}):
        state = str(container.labels.get(servers.STATE_LABEL, ""))
        if not state.startswith(prefix) or not servers.addresses_of(container) & addresses:
            continue
        if not in_use(Path(state)):
            found.append(container)
    return found
