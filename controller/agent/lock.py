"""The server's agent lock: one transaction at a time on a server, whichever concern
runs it (the web, php and tls agents all change nginx or php-fpm and reload them); and
named locks for one short critical section among the agents of a server (``named``:
e.g. one ``restic init`` of a repository at a time)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator

from controller.agent import phases

STATE_DIR = "/var/lib/tenantctl"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")


def path() -> str:
    return os.path.join(STATE_DIR, "agent.lock")


def hold() -> int:
    """Take the lock until this process ends (a SIGKILLed agent releases it: the kernel
    drops its flock), waiting for an agent still running; returns the descriptor."""
    os.makedirs(STATE_DIR, mode=0o711, exist_ok=True)
    fd = os.open(path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with phases.timed("lock"):
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@contextlib.contextmanager
def named(name: str) -> Iterator[None]:
    """Hold ``<STATE_DIR>/locks/<name>.lock`` for the block (released by the kernel if
    the agent dies), waiting for the agent that holds it."""
    if not _NAME.match(name):
        raise ValueError(f"not a lock name: {name!r}")
    folder = os.path.join(STATE_DIR, "locks")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(folder, f"{name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
