"""The binlog archivers' supervisor: runs on a backup server as user tenantctl-binlog
(``/etc/init.d/tenantctl-binlog``), one ``mariadb-binlog --read-from-remote-server
--raw --stop-never`` per source MariaDB server, each restarted when it exits.

Standalone (standard library only, no ``controller`` import): the binlog agent writes
this file to ``/usr/local/lib/tenantctl-binlog/supervisor.py``. Usage:
``python3 -I supervisor.py CONFIG LOG``. CONFIG (written by the agent's ``archive``
action) is ``{"sources": [{"name", "host", "port", "defaults", "replica_id", "dir"}]}``;
``defaults`` is an option file holding the login (the password never appears on a
command line).

A streamer exits when its source shuts down (field notes, section 10): it is started
again from the newest file of its archive directory (re-fetched from its start; the
copy is overwritten with the same bytes), or, when the archive is empty or that file is
no longer on the server, from the oldest file the server still has. Restarts back off
from 1 s to 30 s while the source stays down.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

#: an archived binary log's name (``mariadb-bin.000012``)
LOG_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{6}$")
BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0
#: a streamer that ran this long resets the backoff
HEALTHY = 60.0

_stop = threading.Event()
_children: dict[str, subprocess.Popen[bytes]] = {}
_lock = threading.Lock()
_log_lock = threading.Lock()
_log_path = ""


def log(message: str) -> None:
    line = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + " " + message + "\n"
    with _log_lock:
        if _log_path:
            with open(_log_path, "a") as fh:
                fh.write(line)
        else:
            sys.stderr.write(line)


def archived(directory: str) -> list[str]:
    """The archive's binary logs, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if LOG_NAME.match(n))


def server_logs(src: dict[str, Any]) -> list[str] | None:
    """``SHOW BINARY LOGS`` on the source (names, oldest first), None when unreachable."""
    argv = ["mariadb", f"--defaults-extra-file={src['defaults']}", "--protocol=tcp", f"--host={src['host']}",
            f"--port={int(src['port'])}", "--batch", "--skip-column-names", "--connect-timeout=5",
            "--execute=SHOW BINARY LOGS"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"{src['name']}: SHOW BINARY LOGS: {exc}")
        return None
    if done.returncode != 0:
        log(f"{src['name']}: SHOW BINARY LOGS exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return None
    return [line.split("\t")[0] for line in done.stdout.splitlines() if line.strip()]


def first_file(src: dict[str, Any]) -> str | None:
    """Where the next streamer starts (see the module docstring)."""
    on_server = server_logs(src)
    if not on_server:
        return None
    have = archived(src["dir"])
    if have and have[-1] in on_server:
        return have[-1]
    if have:
        log(f"{src['name']}: {have[-1]} is no longer on the server: starting at {on_server[0]} (a gap)")
    return on_server[0]


def streamer_argv(src: dict[str, Any], start: str) -> list[str]:
    return ["mariadb-binlog", f"--defaults-extra-file={src['defaults']}", "--read-from-remote-server",
            "--protocol=tcp", f"--host={src['host']}", f"--port={int(src['port'])}", "--raw", "--stop-never",
            f"--stop-never-slave-server-id={int(src['replica_id'])}",
            f"--result-file={src['dir'].rstrip('/')}/", start]


def supervise(src: dict[str, Any]) -> None:
    backoff = BACKOFF_MIN
    os.makedirs(src["dir"], mode=0o750, exist_ok=True)
    while not _stop.is_set():
        start = first_file(src)
        if start is None or not LOG_NAME.match(start):
            _stop.wait(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)
            continue
        started = time.monotonic()
        log(f"{src['name']}: streaming from {start}")
        try:
            proc = subprocess.Popen(streamer_argv(src, start), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, cwd=src["dir"])
        except OSError as exc:
            log(f"{src['name']}: cannot run mariadb-binlog: {exc}")
            _stop.wait(backoff)
            continue
        with _lock:
            _children[src["name"]] = proc
        assert proc.stderr is not None
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
        with _lock:
            _children.pop(src["name"], None)
        if _stop.is_set():
            break
        log(f"{src['name']}: mariadb-binlog exited {code}: {err[-300:]}")
        backoff = BACKOFF_MIN if time.monotonic() - started > HEALTHY else min(BACKOFF_MAX, backoff * 2)
        _stop.wait(backoff)


def _terminate(_signo: int, _frame: Any) -> None:
    _stop.set()
    with _lock:
        for proc in _children.values():
            if proc.poll() is None:
                proc.terminate()


def main(argv: list[str]) -> int:
    global _log_path
    if len(argv) != 3:
        sys.stderr.write("usage: supervisor.py CONFIG LOG\n")
        return 2
    _log_path = argv[2]
    with open(argv[1]) as fh:
        config = json.load(fh)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    threads = [threading.Thread(target=supervise, args=(src,), name=src["name"], daemon=True)
               for src in config.get("sources", [])]
    log(f"supervising {len(threads)} source(s)")
    for t in threads:
        t.start()
    while not _stop.is_set():
        _stop.wait(3600)
    for t in threads:
        t.join(timeout=10)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
