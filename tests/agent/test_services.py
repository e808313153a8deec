"""Reloads verified by a new worker generation, against a fake master process (a small
Python program with the behaviour of nginx or php-fpm on their reload signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.agent import jobs, services

#: a master that writes its pidfile and runs one worker; on SIGHUP it starts a new
#: generation of workers and ends the old one ("workers", like nginx), starts a new one
#: and leaves the old one running ("lingering"; "marked": the old one's command line says
#: it is draining), re-executes itself writing its pidfile anew ("pidfile", like
#: php-fpm), ignores the signal ("hang") or exits ("die")
FAKE_MASTER = """
import os, signal, subprocess, sys, time
pidfile, mode = sys.argv[1], sys.argv[2]
workers = []
def worker(*argv):
    workers.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *argv]))
def write_pid():
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(tmp, pidfile)
def on_signal(*_):
    if mode in ("workers", "lingering", "marked"):
        old = list(workers)
        worker()
        if mode == "workers":
            for w in old:
                w.kill()
                w.wait()
    elif mode == "pidfile":
        write_pid()
    elif mode == "die":
        os._exit(1)
signal.signal(signal.SIGHUP, on_signal)
worker(*(["worker process is shutting down"] if mode == "marked" else []))
write_pid()
while True:
    time.sleep(0.02)
"""


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield tmp_path / "fake.pid", started
    for proc in started:
        with_group = os.getpgid(proc.pid) if proc.poll() is None else None
        if with_group is not None:
            os.killpg(with_group, signal.SIGKILL)
        proc.wait()


def start(pidfile: Path, mode: str, started: list[subprocess.Popen[bytes]]) -> int:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_MASTER, str(pidfile), mode], start_new_session=True)
    started.append(proc)
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and services.children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.pid


def service(pidfile: Path, ready: str, timeout: float = 1.0, start: list[str] | None = None,
            draining: str | None = "is shutting down") -> jobs.Service:
    return jobs.Service("fake", str(pidfile), "SIGHUP", ready, start or ["false"], timeout,  # type: ignore[arg-type]
                        draining)


TIMED_OUT = "no new configuration loaded after 0.5s: reload failed"


@pytest.mark.parametrize(("mode", "ready", "draining", "problem"), [
    pytest.param("workers", "workers", "is shutting down", "", id="nginx-like-new-generation-old-gone"),
    pytest.param("marked", "workers", "is shutting down", "", id="old-generation-draining"),
    pytest.param("lingering", "workers", "is shutting down", TIMED_OUT, id="old-generation-still-accepting"),
    pytest.param("lingering", "workers", None, "", id="no-draining-marker-new-generation-suffices"),
    pytest.param("pidfile", "pidfile", None, "", id="php-fpm-like-new-pidfile"),
    pytest.param("hang", "workers", "is shutting down", TIMED_OUT, id="timeout-is-failure"),
    pytest.param("hang", "pidfile", None, TIMED_OUT, id="pidfile-timeout-is-failure"),
    pytest.param("die", "workers", None, "the master exited while reloading", id="master-died"),
])
def test_a_reload_counts_only_once_the_new_generation_runs(
        master: tuple[Path, list[subprocess.Popen[bytes]]], mode: str, ready: str, draining: str | None,
        problem: str) -> None:
    pidfile, started = master
    start(pidfile, mode, started)
    started_at = time.monotonic()
    got = services.reload(service(pidfile, ready, timeout=0.5, draining=draining), [])
    assert (problem in got) if problem else got == "", got
    if problem.startswith("no new configuration"):
        assert time.monotonic() - started_at >= 0.5


def test_a_service_that_does_not_run_is_started(master: tuple[Path, list[subprocess.Popen[bytes]]],
                                                tmp_path: Path) -> None:
    pidfile, _ = master
    marker = tmp_path / "started"
    assert services.reload(service(pidfile, "workers", start=["touch", str(marker)]), []) == ""
    assert marker.exists()
    assert "start failed" in services.reload(service(pidfile, "workers", start=["false"]), [])


def test_sockets_must_appear_after_the_reload(master: tuple[Path, list[subprocess.Popen[bytes]]],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "SOCKET_WAIT", 0.3)
    pidfile, started = master
    start(pidfile, "workers", started)
    there = tmp_path / "there.sock"
    there.touch()
    assert services.reload(service(pidfile, "workers"), [str(there)]) == ""
    got = services.reload(service(pidfile, "workers"), [str(there), str(tmp_path / "never.sock")])
    assert got.startswith("reloaded, but 1 socket(s) missing") and "never.sock" in got
