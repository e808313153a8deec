"""The server's agent lock: a second agent waits for the first; a SIGKILLed holder
releases it (the kernel drops the flock)."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import time
from pathlib import Path

from controller.agent import lock


def held_elsewhere() -> bool:
    """Whether another process holds the agent lock now."""
    with open(lock.path(), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False

HOLD = "import sys, time; from controller.agent import lock; lock.STATE_DIR = sys.argv[1]; lock.hold(); " \
       "print('held', flush=True); time.sleep(30)"
ROOT = Path(__file__).resolve().parents[2]


def holder(state_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(state_dir)], stdout=subprocess.PIPE, text=True, cwd=ROOT)


def test_a_second_agent_waits_until_the_holder_is_killed(state_dir: Path) -> None:
    with holder(state_dir) as first:
        try:
            assert first.stdout is not None and first.stdout.readline().strip() == "held"
            assert held_elsewhere()
            with holder(state_dir) as second:
                try:
                    time.sleep(0.3)
                    assert second.poll() is None  # waiting
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                    assert second.stdout is not None and second.stdout.readline().strip() == "held"
                finally:
                    second.kill()
        finally:
            first.kill()
    assert not held_elsewhere()
    assert Path(lock.path()).stat().st_mode & 0o777 == 0o600
