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
  handshake once; the master lingers ``persist`` seconds. Every ``Transport`` of a
  process to the same server shares that master (threads of ``run``: passes, backups,
  usage), so ``close()`` only asks it to stop accepting new sessions (``-O stop``): the
  sessions other threads have in flight run to their end, then it exits. (``-O exit``
  killed them with status 255, which read as "could not connect" and was retried: a
  backup job ran twice at once and two ``restic init`` of one repository left it
  unreadable.)
* Files go as ONE in-memory tar stream on the command's stdin (``ship``).

Errors name the server and its address (``server web-1 (127.0.30.1): ssh: ...``):
exit status 255 with ssh saying it could not connect is retried with backoff, then
raised as ``TemporaryError``; any other 255 (a session cut after the command may have
started) and a timeout (the command may still run there) are ``TemporaryError`` at once,
never run again here: a job is not started twice at the same time; a missing ssh client is ``PermanentError``; any
other non-zero status of the remote command is the caller's to judge (``Completed``)
or ``PermanentError`` via ``check``.

``Agent`` runs the agent (``controller.agent``) on a server: the zipapp is checked for
(and installed if missing) once per server and process, keyed by its digest; each job
is one ``ship``; a killed agent is ``TemporaryError``, a crashed one or an unreadable
answer ``PermanentError``.

Fencing (issue 10 item 4, DR-1): ``Agent.run`` stamps every job that writes a
subscription's things (``agent.fence.subscriptions``, plus the ``writes`` its caller
names) with that subscription's generation from the controller's view
(``Generations``: one per ``Pool``, set once per pass by the engine, ``use_generations``,
or per run by the backup runner; read once from the state store when nobody set it).
The agent refuses the parts of subscriptions it has seen a newer generation of
(``Outcome.fenced``); a job refused whole is ``Fenced``, a ``PermanentError`` naming each
subscription with the generation seen there and the one sent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shlex
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import tenacity

from controller import errors
from controller.agent import bundle, fence, jobs
from controller.drivers.context import Context
from controller.state import regions
from controller.state import store as state_store

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
    """ssh could not connect: nothing ran on the server, trying again is safe."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class _Cut(Exception):
    """The session ended without the command's own status (cut, or no answer in time):
    the command may have run, or still runs; never started again here."""


#: what OpenSSH prints when the connection was never made (nothing ran on the server)
_NOT_CONNECTED = ("connect to host", "Could not resolve hostname", "kex_exchange_identification",
                  "ssh_exchange_identification", "Connection closed by", "banner exchange")


def _never_connected(stderr: str) -> bool:
    return any(marker in stderr for marker in _NOT_CONNECTED)


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


class Fenced(errors.PermanentError):
    """Every subscription of an agent job was refused by fencing: the server has seen a
    newer generation of each (this controller's view is stale)."""

    def __init__(self, label: str, refused: Mapping[str, jobs.Fenced]) -> None:
        self.refused = dict(refused)
        super().__init__(f"{label}: " + "; ".join(fence.message(s, f) for s, f in sorted(refused.items())))


def fenced_message(out: jobs.Outcome, sub: str) -> str | None:
    """Why ``sub``'s part of a job was refused by fencing (None: it was not)."""
    f = out.fenced.get(sub)
    return None if f is None else fence.message(sub, f)


class Generations:
    """The controller's view of the subscriptions' generations (fencing): what a job
    that writes a subscription's things carries (1 for a subscription never moved:
    ``regions.generation``). ``use`` sets it (the engine, once per pass; the backup
    runner, once per run); until then it is read once from the state store of
    ``state_dir`` (``state.db``; none there: every subscription is at 1)."""

    def __init__(self, state_dir: Path | None) -> None:
        self.state_dir = state_dir
        self._known: dict[str, int] | None = None
        self._lock = threading.Lock()

    def use(self, gens: Mapping[str, int]) -> None:
        with self._lock:
            self._known = dict(gens)

    def get(self) -> Mapping[str, int]:
        with self._lock:
            if self._known is None:
                self._known = _stored_generations(self.state_dir)
            return self._known

    def of(self, subs: Iterable[str]) -> dict[str, int]:
        known = self.get()
        return {s: known.get(s, 1) for s in sorted(set(subs))}


def _stored_generations(state_dir: Path | None) -> dict[str, int]:
    path = state_dir / "state.db" if state_dir is not None else None
    if path is None or not path.exists():
        return {}
    try:
        store = state_store.Store.open_readonly(path)
    except errors.StateError as exc:
        raise errors.PermanentError(f"cannot read the subscriptions' generations (fencing): {exc}") from exc
    try:
        return regions.generations(store)
    finally:
        store.close()


@runtime_checkable
class UsesGenerations(Protocol):
    """A driver whose agent jobs carry generations: the engine hands it its view once
    per pass."""

    def use_generations(self, gens: Mapping[str, int]) -> None: ...


class Transport:
    """SSH to one server as root."""

    def __init__(
        self, state_dir: Path, key: Path, address: str, *, name: str | None = None, pin_host_key: bool = True,
        connect_timeout: float = 5.0, persist: int = 60, attempts: int = 3,
    ) -> None:
        self.address = address
        self.name = name
        #: how errors name this server: ``server web-1 (127.0.30.1)``
        self.label = f"server {name} ({address})" if name else f"server {address}"
        self.key = key
        self.attempts = attempts
        #: the generations this server's agent jobs carry (``Pool.get`` shares its pool's)
        self.generations = Generations(state_dir)
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
        except (_Unreachable, _Cut) as exc:
            raise errors.TemporaryError(f"{self.label}: ssh: {exc}", delay=10.0) from exc
        raise AssertionError("unreachable")  # pragma: no cover  (tenacity re-raises)

    def _once(self, command: str, stdin: bytes | None, timeout: float) -> Completed:
        global spawned
        with _lock:
            spawned += 1
        try:
            proc = subprocess.run([*self._base, command], input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise _Cut(f"no answer in {timeout:.0f}s (the command may still be running there)") from exc
        except OSError as exc:
            raise errors.PermanentError(f"{self.label}: ssh: cannot run the ssh client: {exc}") from exc
        if proc.returncode == SSH_FAILED:
            said = proc.stderr.decode(errors="replace").strip().removeprefix("ssh: ")
            if _never_connected(said):
                raise _Unreachable(said)
            raise _Cut(f"session ended with status 255{': ' + said[-500:] if said else ''} "
                       "(not retried: the command may have run)")
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def check(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 300.0) -> Completed:
        """``run``, and a non-zero remote status is a ``PermanentError`` carrying stderr."""
        done = self.run(argv, stdin=stdin, timeout=timeout)
        if done.returncode != 0:
            raise errors.PermanentError(f"{self.label}: {argv[0]} exited {done.returncode}: {done.error[-2000:]}")
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
            raise errors.TemporaryError(f"{self.label}: ssh: fetch failed: {exc}", delay=10.0) from exc
        if proc.returncode == SSH_FAILED:
            part.unlink(missing_ok=True)
            raise errors.TemporaryError(f"{self.label}: ssh: {proc.stderr.decode(errors='replace').strip()}",
                                        delay=10.0)
        if proc.returncode != 0:
            part.unlink(missing_ok=True)
            return proc.returncode
        part.chmod(0o600)
        part.rename(dest)
        return 0

    def close(self) -> None:
        """The ControlMaster of this server takes no new session and exits when the
        sessions in flight (other threads' too) have ended (see the module docstring)."""
        subprocess.run([*self._base[:-1], "-O", "stop", self._base[-1]], capture_output=True, check=False, timeout=10)


#: (address, digest) of agents known to be installed on a server during this process
_installed: set[tuple[str, str]] = set()
#: the launcher's exit status when the agent's zipapp is not on the server
AGENT_MISSING = 97
#: runs the agent from its zipapp (``$1`` this code, ``$2`` the zipapp, then the entry and
#: the batch directory); ``{prelude}``: test-only code run first (e.g. to inject a kill)
LAUNCH = ("import sys; sys.path.insert(0, sys.argv[1]); {prelude}"
          "from controller.agent import main; sys.exit(main.main(sys.argv[2], sys.argv[3]))")
_LAUNCHER = 'c=$1; p=$2; shift 2; test -f "$p" || exit 97; exec python3 -I -c "$c" "$p" "$@"'
_INSTALL = ('set -e; d=$(dirname "$1"); mkdir -p -m 0700 "$d"; cat > "$1.new.$$"; chmod 0600 "$1.new.$$"; '
            'mv -f "$1.new.$$" "$1"; find "$d" -name "*.pyz" ! -path "$1" -mmin +1440 -delete 2>/dev/null || true')


class Agent:
    """The agent's ``entry`` (``hosting``, ``tls``) on one server (see the module docstring)."""

    def __init__(self, remote: Transport, entry: str, *, prelude: str = "") -> None:
        self.remote = remote
        self.entry = entry
        self.prelude = prelude

    def ensure(self) -> bundle.Bundle:
        """The zipapp of this process's code is on the server (checked once per process)."""
        b = bundle.current()
        key = (self.remote.address, b.digest)
        with _lock:
            if key in _installed:
                return b
        if self.remote.run(["test", "-f", b.remote_path], timeout=60).returncode != 0:
            self.remote.check(["sh", "-c", _INSTALL, "tenantctl-agent-install", b.remote_path], stdin=b.data,
                              timeout=120)
        with _lock:
            _installed.add(key)
        return b

    def forget(self) -> None:
        with _lock:
            _installed.discard((self.remote.address, bundle.current().digest))

    def run(self, job: jobs.Job, files: Iterable[File] = (), *, timeout: float = 600.0,
            writes: Iterable[str] = ()) -> jobs.Outcome:
        """Ship ``files`` and the job, run the agent once: its ``Outcome``. ``writes``:
        subscriptions whose things the job writes beyond those the envelope lists
        (``fence.subscriptions``). The job carries their generations (the ones it already
        carries win: tests); ``Fenced`` when the agent refused every one of them."""
        job = self.stamped(job, writes)
        payload = [File("job.json", json.dumps(jobs.encode(job)).encode(), 0o600), *files]
        label = f"{self.remote.label}: {self.entry} agent"
        for attempt in (1, 2):
            b = self.ensure()
            done = self.remote.ship(payload, ["sh", "-c", _LAUNCHER, "tenantctl-agent",
                                              LAUNCH.format(prelude=self.prelude), b.remote_path, self.entry],
                                    timeout=timeout)
            if done.returncode != AGENT_MISSING or attempt == 2:
                break
            self.forget()  # the server lost it (rebuilt): install it again, once
        if done.returncode > 128:
            # killed (OOM killer, a reboot, an operator): the next agent rolls the batch
            # back from its journal and applies it again
            raise errors.TemporaryError(f"{label} killed by signal {done.returncode - 128}: {done.error[-2000:]}",
                                        delay=10.0)
        if done.returncode != 0:
            raise errors.PermanentError(f"{label} failed (exit {done.returncode}): {done.error[-2000:]}")
        try:
            out = jobs.decode(jobs.Outcome, json.loads(done.stdout))
        except (ValueError, TypeError) as exc:
            raise errors.PermanentError(f"{label}: unreadable answer ({exc}): {done.text[:500]}") from exc
        if out.fenced and set(job.generations) <= set(out.fenced):
            raise Fenced(label, out.fenced)
        return out

    def stamped(self, job: jobs.Job, writes: Iterable[str] = ()) -> jobs.Job:
        """``job`` carrying the generation of every subscription it writes."""
        subs = {*fence.subscriptions(job), *writes} - set(job.generations)
        if not subs:
            return job
        view = getattr(self.remote, "generations", None)  # a test's own remote may have none
        known = view.of(subs) if isinstance(view, Generations) else dict.fromkeys(sorted(subs), 1)
        return dataclasses.replace(job, generations={**known, **job.generations})


class Pool:
    """One ``Transport`` per server of a driver's context, made on first use (SSH
    multiplexing then serves every batch to that server)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._open: dict[str, Transport] = {}
        #: the generations every agent job through this pool carries (fencing)
        self.generations = Generations(getattr(ctx, "state_dir", None))  # tests hand in stand-ins

    def get(self, server: str) -> Transport:
        t = self._open.get(server)
        if t is None:
            srv = self.ctx.servers[server]
            # embedded containers get a new host key whenever they are recreated
            t = Transport(self.ctx.state_dir, self.ctx.ssh_key(), srv.address, name=server,
                          pin_host_key=srv.provider != "docker")
            t.generations = self.generations
            self._open[server] = t
        return t

    def __setitem__(self, server: str, t: Transport) -> None:
        """Use ``t`` for ``server`` (tests hand in a transport of their own)."""
        t.generations = self.generations
        self._open[server] = t

    def use_generations(self, gens: Mapping[str, int]) -> None:
        """The controller's view of the generations, read once for this pass or run."""
        self.generations.use(gens)

    def close(self) -> None:
        for t in self._open.values():
            t.close()
        self._open.clear()
