"""The server's agent lock: one transaction at a time on a server, whichever concern
runs it (the web, php and tls agents all change nginx or php-fpm and reload them)."""

from __future__ import annotations

import fcntl
import os

from controller.agent import phases

STATE_DIR = "/var/lib/tenantctl"


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
