"""Stopping the host processes the embedded environment starts (Pebble, Prometheus,
Alertmanager): one way, for all of them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def stop(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, reap it if it is our child, SIGKILL it after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)
    if Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
