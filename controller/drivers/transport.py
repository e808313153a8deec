"""Commands on a server over SSH as root, with tenantctl's key: the one way drivers
reach a server's shell.

* The OpenSSH client runs with argument lists; the remote command line is always built
  with ``shlex.join`` from a list, never by pasting text into a string.
* ``BatchMode=yes`` (no prompt ever). Host keys: ``accept-new`` against
  ``<state>/ssh/known_hosts`` for real hosts; embedded (``provider: docker``) servers
  regenerate their host key whenever their container is recreated on the same loopback
  address, so their key is not pinned.
* A ControlMaster socket per server under the state dir (or a private directory under
  /tmp when the state dir's path is too long for a socket): a batch pays the SSH
  handshake once; the master lingers ``persist`` seconds, ``close()`` ends it.
* Files go as ONE in-memory tar stream on the command's stdin (``ship``).

Errors: exit status 255 (the client could not connect) is retried with backoff, then
raised as ``TemporaryError``; any other non-zero status of the remote command is the
caller's to judge (``Completed``) or ``PermanentError`` via ``check``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import tenacity

from controller import errors
from controller.drivers.context import Context

#: ssh's exit status when the connection itself failed
SSH_FAILED = 255

#: every process this module spawned (benchmarks check that a no-op resync spawns one
#: per server, never one per subscription)
spawned = 0
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class File:
    """One file of a tar stream; ``data is None`` makes a directory."""

    path: str
    data: bytes | None
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclasses.dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def error(self) -> str:
        return self.stderr.decode(errors="replace").strip()


class _Unreachable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def tar(files: Iterable[File]) -> bytes:
    """An uncompressed tar of ``files`` (relative paths, owners and modes as given),
    with a fixed mtime so identical inputs give identical bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for f in files:
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.mode, info.uid, info.gid, info.mtime = f.mode, f.uid, f.gid, 0
            info.uname = info.gname = ""
            if f.data is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                info.size = len(f.data)
                tf.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()


class Transport:
    """SSH to one server as root."""

    def __init__(
        self, state_dir: Path, key: Path, address: str, *, pin_host_key: bool = True,
        connect_timeout: float = 5.0, persist: int = 60, attempts: int = 3,
    ) -> None:
        self.address = address
        self.key = key
        self.attempts = attempts
        #: seconds of the last ``ship``: building the tar, and the SSH command (benchmarks)
        self.last_timings: dict[str, float] = {}
        ssh_dir = state_dir / "ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Unix socket paths are limited to ~104 bytes and ssh adds "/<40 hex %C>" plus a
        # 17-byte temporary suffix: always use a short directory named after the state dir.
        tag = hashlib.blake2b(str(state_dir.resolve()).encode(), digest_size=6).hexdigest()
        control_dir = Path(tempfile.gettempdir()) / f"tenantctl-cm-{tag}"
        control_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        control_dir.chmod(0o700)
        hosts = (["-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={ssh_dir / 'known_hosts'}"]
                 if pin_host_key else
                 ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        self._base = [
            "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", *hosts,
            "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={int(connect_timeout)}",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C", "-o", f"ControlPersist={persist}",
            "-o", "ServerAliveInterval=10", f"root@{address}",
        ]

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 300.0) -> Completed:
        """Run ``argv`` on the server (quoted with shlex.join); retry connection failures."""
        if not argv:
            raise ValueError("empty remote command")
        command = shlex.join(argv)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential(multiplier=0.2, max=2.0),
            retry=tenacity.retry_if_exception_type(_Unreachable),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(command, stdin, timeout)
        except _Unreachable as exc:
            raise errors.TemporaryError(f"{self.address}: unreachable over SSH: {exc}", delay=10.0) from exc
        raise AssertionError("unreachable")  # pragma: no cover  (tenacity re-raises)

    def _once(self, command: str, stdin: bytes | None, timeout: float) -> Completed:
        global spawned
        with _lock:
            spawned += 1
        try:
            proc = subprocess.run([*self._base, command], input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise _Unreachable(f"no answer in {timeout:.0f}s") from exc
        except OSError as exc:
            raise errors.PermanentError(f"cannot run the ssh client: {exc}") from exc
        if proc.returncode == SSH_FAILED:
            raise _Unreachable(proc.stderr.decode(errors="replace").strip() or "ssh exited 255")
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def check(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 300.0) -> Completed:
        """``run``, and a non-zero remote status is a ``PermanentError`` carrying stderr."""
        done = self.run(argv, stdin=stdin, timeout=timeout)
        if done.returncode != 0:
            raise errors.PermanentError(f"{self.address}: {argv[0]} exited {done.returncode}: {done.error[-2000:]}")
        return done

    def ship(self, files: Iterable[File], then: Sequence[str], *, timeout: float = 300.0) -> Completed:
        """Extract ``files`` into a fresh private directory on the server, then run
        ``then`` with that directory appended as its last argument (the directory is
        removed afterwards). One SSH command, one tar stream."""
        script = ('set -e; umask 077; mkdir -p -m 0711 /var/lib/tenantctl; '
                  'd=$(mktemp -d /var/lib/tenantctl/batch.XXXXXX); trap \'rm -rf "$d"\' EXIT; '
                  'tar -x --no-same-owner -p -C "$d"; umask 022; "$@" "$d"')
        started = time.perf_counter()
        stream = tar(files)
        built = time.perf_counter()
        try:
            return self.run(["sh", "-c", script, "tenantctl-batch", *then], stdin=stream, timeout=timeout)
        finally:
            self.last_timings = {"tar": built - started, "ssh": time.perf_counter() - built,
                                 "tar_bytes": float(len(stream))}

    def fetch(self, argv: Sequence[str], dest: Path, *, timeout: float = 3600.0) -> int:
        """Run ``argv`` and stream its stdout into ``dest`` (written to a ``.part`` file,
        renamed on success). Returns the remote exit status (255 raises TemporaryError)."""
        global spawned
        part = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with _lock:
            spawned += 1
        try:
            with part.open("wb") as out:
                proc = subprocess.run([*self._base, shlex.join(argv)], stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.PIPE, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            part.unlink(missing_ok=True)
            raise errors.TemporaryError(f"{self.address}: fetch failed: {exc}") from exc
        if proc.returncode == SSH_FAILED:
            part.unlink(missing_ok=True)
            raise errors.TemporaryError(f"{self.address}: unreachable over SSH: {proc.stderr.decode(errors='replace')}")
        if proc.returncode != 0:
            part.unlink(missing_ok=True)
            return proc.returncode
        part.chmod(0o600)
        part.rename(dest)
        return 0

    def close(self) -> None:
        """End the ControlMaster of this server, if one runs."""
        subprocess.run([*self._base[:-1], "-O", "exit", self._base[-1]], capture_output=True, check=False, timeout=10)


class Pool:
    """One ``Transport`` per server of a driver's context, made on first use (SSH
    multiplexing then serves every batch to that server)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._open: dict[str, Transport] = {}

    def get(self, server: str) -> Transport:
        t = self._open.get(server)
        if t is None:
            srv = self.ctx.servers[server]
            # embedded containers get a new host key whenever they are recreated
            t = Transport(self.ctx.state_dir, self.ctx.ssh_key(), srv.address, pin_host_key=srv.provider != "docker")
            self._open[server] = t
        return t

    def __setitem__(self, server: str, t: Transport) -> None:
        """Use ``t`` for ``server`` (tests hand in a transport of their own)."""
        self._open[server] = t

    def close(self) -> None:
        for t in self._open.values():
            t.close()
        self._open.clear()
