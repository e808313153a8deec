"""Reloading a service and knowing it took: a new generation of workers, not a signal
sent and hoped for. A reload that does not load the new configuration in time is a
failure (the caller rolls back), never a success.

* ``ready: workers`` (nginx, HUP): the master started a new generation of workers (a
  configuration it cannot load starts none), and every old worker stopped accepting
  connections (its command line says ``draining``) or is gone: until then an old
  worker may still answer a new connection with the old configuration.
* ``ready: pidfile`` (php-fpm, USR2): the master re-executes itself once its old workers
  are gone and writes its pidfile again when every pool is set up; a master that died
  instead is a failed reload.

Waits until the master has loaded the new configuration, not until old workers have
finished their requests (they finish them; new connections queue on the listening
sockets meanwhile). A service that does not run is started.
"""

from __future__ import annotations

import os
import signal
import time

from controller.agent import files, jobs, phases

#: nginx: HUP starts a new generation of workers; old ones say "is shutting down" once
#: they stopped accepting connections
NGINX = jobs.Service("nginx", "/run/nginx.pid", "SIGHUP", "workers", ["service", "nginx", "start"],
                     draining="is shutting down")


def php_fpm(version: str) -> jobs.Service:
    """php-fpm: USR2 re-executes the master, which writes its pidfile anew once set up."""
    return jobs.Service(f"php{version}-fpm", f"/run/php/php{version}-fpm.pid", "SIGUSR2", "pidfile",
                        ["service", f"php{version}-fpm", "start"])


#: seconds the sockets of the reloaded configuration may take to appear
SOCKET_WAIT = 5.0


def children(ppid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == ppid:
            found.add(int(entry))
    return found


def pid_of(pidfile: str) -> int | None:
    data = files.read(pidfile)
    try:
        return int(data.decode().strip()) if data else None
    except ValueError:
        return None


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, waiting for its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def drained(old: set[int], marker: str | None) -> bool:
    """Whether no old worker can take a new connection any more."""
    if marker is None:
        return True
    return all(not alive(pid) or marker in cmdline(pid) for pid in old)


def stamp(pidfile: str) -> tuple[int, int] | None:
    try:
        st = os.stat(pidfile)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def reload(service: jobs.Service, sockets: list[str]) -> str:
    """Reload once; "" once the service runs the new configuration and every socket of
    ``sockets`` exists, else what went wrong."""
    name = service.name
    master = pid_of(service.pidfile)
    if master is None or not alive(master):
        with phases.timed(f"{name}.start"):
            code, out = files.run(service.start, timeout=service.timeout)
        if code != 0:
            return f"start failed: {out}"
    else:
        with phases.timed(f"{name}.signal"):
            before, old = stamp(service.pidfile), children(master)
            os.kill(master, getattr(signal, service.signal))
        with phases.timed(f"{name}.wait_ready"):
            problem = wait_ready(service, master, before, old)
        if problem:
            return problem
    with phases.timed(f"{name}.wait_sockets"):
        deadline = time.monotonic() + SOCKET_WAIT
        missing = [s for s in sockets if not os.path.exists(s)]
        while missing and time.monotonic() < deadline:
            time.sleep(0.01)
            missing = [s for s in missing if not os.path.exists(s)]
    if missing:
        return f"reloaded, but {len(missing)} socket(s) missing, e.g. {missing[0]}"
    return ""


def wait_ready(service: jobs.Service, master: int, before: tuple[int, int] | None, old: set[int]) -> str:
    deadline = time.monotonic() + service.timeout
    gone_since: float | None = None
    while time.monotonic() < deadline:
        if service.ready == "pidfile":
            now = stamp(service.pidfile)
            if now is not None and now != before:
                pid = pid_of(service.pidfile)
                if pid is not None and alive(pid):
                    return ""
            if not alive(master):
                # the re-executed master's parent waits for it to be set up before it
                # exits; a short grace covers the pidfile being written just after
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > 2.0:
                    return "the master exited while reloading (see its error log)"
        else:
            if not alive(master):
                return "the master exited while reloading (see its error log)"
            if children(master) - old and drained(old, service.draining):
                return ""
        time.sleep(0.01)
    return f"no new configuration loaded after {service.timeout:g}s: reload failed"
