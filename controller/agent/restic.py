"""Running restic 0.14 on a server for the backup agent: one ``Restic`` per repository.

* No secret on a command line (``ps``): a client repository's URL (it holds the REST
  login) and password go to 0600 files in the job's private stage directory
  (``--repository-file``/``--password-file``, ``--from-...`` for ``copy`` and ``init
  --from-repo``). An owner-side repository (a local path on the repository server) runs
  as Unix user ``OWNER_USER`` (``runuser``), which cannot read the root-only stage
  directory: its password goes on restic's standard input.
* ``--cacert`` (0.14 ignores ``RESTIC_CACERT``), ``--cache-dir CACHE_DIR`` (owner side:
  ``--no-cache``).
* ``probe`` answers fast whether a repository exists, before restic's own retries
  (~43 s on a refused connection or a 403): HTTP ``HEAD config`` for REST repositories,
  the config file for local ones; an unreachable server or a refused login is
  ``Failed`` naming it. ``ensure`` initialises a missing repository.
* ``backup_stdin`` is the 0.14 guard for streamed dumps: whatever feeds restic's stdin
  (``pump``) reports a problem (the dump failed, was killed, or lacks its completion
  marker) -> restic gets SIGINT *before* its stdin closes, so it saves no snapshot.

Errors are ``Failed`` with restic's own message (its last lines); the entry turns them
into failed results.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from controller.agent import backupjobs, lock

BIN = "restic"
#: restic's cache for client repositories
CACHE_DIR = "/var/cache/tenantctl-backup"
#: the Unix user owning the repositories on a repository server ("" runs owner-side
#: restic as the agent itself: tests)
OWNER_USER = "tenantctl-backup"
#: seconds a repository server has to answer the probe
PROBE_TIMEOUT = 10.0
#: seconds restic has to stop after SIGINT (then SIGKILL: still no snapshot)
GRACE = 60.0
#: characters of restic's error output kept in messages
TAIL = 2000


_FROM_STDIN = "reading repository password from stdin\n"
#: restic 0.14 has no --retry-lock: a command that needs the repository's exclusive lock
#: (forget, prune) waits this long for another restic on it (a copy, a check, a restore
#: drill of another server or thread) to finish, instead of failing at once
LOCK_WAIT = 120.0
_LOCKED = "repository is already locked"


def env() -> dict[str, str]:
    """restic's environment: ``--time`` is read in local time, so UTC."""
    return {**os.environ, "TZ": "UTC"}


class Failed(Exception):
    """A restic run (or a probe) failed; the message says what and why."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def message(self) -> str:
        text = self.err.strip() or self.out.strip()
        return text[-TAIL:] if text else f"exit status {self.code}"


@dataclass(frozen=True)
class Summary:
    """``backup --json``'s summary line."""

    snapshot: str
    added: int
    total: int


Pump = Callable[[Callable[[bytes], None]], str]


def tag_args(tags: list[str]) -> list[str]:
    """One ``--tag`` per tag: 0.14's backup splits ``--tag a,b`` into two tags, and a
    filter's ``--tag a,b`` means a AND b while repeated flags mean OR."""
    out: list[str] = []
    for t in tags:
        if not t or "," in t or t != t.strip():
            raise ValueError(f"not a tag: {t!r}")
        out += ["--tag", t]
    return out


def snapshot_of(doc: dict[str, Any]) -> backupjobs.Snapshot:
    return backupjobs.Snapshot(
        id=str(doc.get("id", "")), time=str(doc.get("time", "")), host=str(doc.get("hostname", "")),
        tags=[str(t) for t in doc.get("tags") or []], paths=[str(p) for p in doc.get("paths") or []],
        original=str(doc.get("original") or ""))


class _Gone(Exception):
    """restic stopped reading its stdin."""


def drain(stream: IO[bytes], into: list[bytes]) -> threading.Thread:
    """Read ``stream`` to its end into ``into`` in a thread (pipes never fill up)."""
    def run() -> None:
        with stream:
            while chunk := stream.read(65536):
                into.append(chunk)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class Restic:
    """restic on one repository (see the module docstring)."""

    _files = 0
    _files_lock = threading.Lock()

    def __init__(self, repo: backupjobs.Repo, stage: str, cacert: str = "") -> None:
        self.repo = repo
        self.stage = stage
        self.cacert = os.path.join(stage, cacert) if cacert else ""
        #: how messages name it (never the URL of a client repository: it holds the login)
        self.label = f"repository {repo.region}" + (f" ({repo.url})" if repo.owner else "")
        self._repo_file = self._password_file = ""
        if not repo.owner:
            self._repo_file = self._secret(repo.url)
            self._password_file = self._secret(repo.password)

    def _secret(self, text: str) -> str:
        d = os.path.join(self.stage, ".restic")
        os.makedirs(d, mode=0o700, exist_ok=True)
        with Restic._files_lock:
            Restic._files += 1
            n = Restic._files
        path = os.path.join(d, f"s{n}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        return path

    # --- command lines ---------------------------------------------------------------------

    def argv(self, args: list[str], source: Restic | None = None) -> list[str]:
        if self.repo.owner:
            prefix = ["runuser", "-u", OWNER_USER, "--"] if OWNER_USER else []
            where = ["-r", self.repo.url, "--no-cache"]
        else:
            prefix = []
            where = ["--repository-file", self._repo_file, "--password-file", self._password_file,
                     "--cache-dir", CACHE_DIR]
        if self.cacert:
            where += ["--cacert", self.cacert]
        if source is not None:
            if source.repo.owner:
                raise ValueError("an owner-side repository cannot be a copy source")
            args = [*args, "--from-repository-file", source._repo_file, "--from-password-file", source._password_file]
        return [*prefix, BIN, *where, *args]

    def _stdin(self) -> bytes:
        return (self.repo.password + "\n").encode() if self.repo.owner else b""

    def run(self, args: list[str], *, source: Restic | None = None, timeout: float | None = None) -> Result:
        try:
            proc = subprocess.run(self.argv(args, source), input=self._stdin(), capture_output=True, check=False,
                                  timeout=timeout, env=env())
        except subprocess.TimeoutExpired:
            return Result(124, "", f"restic {args[0]}: no answer in {timeout:.0f}s")
        except OSError as exc:
            return Result(127, "", f"cannot run restic: {exc}")
        out = proc.stdout.decode(errors="replace")
        if self.repo.owner:  # restic says so on stdout, before any JSON
            out = out.removeprefix(_FROM_STDIN)
        return Result(proc.returncode, out, proc.stderr.decode(errors="replace"))

    def check(self, args: list[str], *, source: Restic | None = None, timeout: float | None = None,
              lock_wait: float = 0.0) -> Result:
        """``run``; a non-zero status is ``Failed`` naming the repository. ``lock_wait``:
        seconds to retry (every 3 s) while the repository is locked by another restic."""
        give_up = time.monotonic() + lock_wait
        done = self.run(args, source=source, timeout=timeout)
        while done.code != 0 and _LOCKED in done.err and time.monotonic() < give_up:
            time.sleep(3.0)
            done = self.run(args, source=source, timeout=timeout)
        if done.code != 0:
            raise Failed(f"{self.label}: restic {args[0]} failed: {done.message}")
        return done

    def json(self, args: list[str], *, timeout: float | None = None, lock_wait: float = 0.0) -> Any:
        done = self.check([*args, "--json"], timeout=timeout, lock_wait=lock_wait)
        try:
            return json.loads(done.out)
        except ValueError as exc:
            raise Failed(f"{self.label}: restic {args[0]}: unreadable output: {done.out[:200]!r}") from exc

    # --- the repository ---------------------------------------------------------------------

    def _http(self, method: str, name: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request to a REST repository (``name`` relative to it): status and body;
        ``Failed`` when its server is unreachable."""
        u = urllib.parse.urlsplit(self.repo.url.removeprefix("rest:"))
        host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
        sent = dict(headers or {})
        if u.username is not None:
            login = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
            sent["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.cacert or None)
            conn = http.client.HTTPSConnection(host, port, timeout=PROBE_TIMEOUT, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT)
        try:
            conn.request(method, u.path.rstrip("/") + "/" + name, headers=sent)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Failed(f"{self.label} ({host}:{port}) unreachable: {exc}") from exc
        finally:
            conn.close()

    def _rest(self) -> bool:
        return not self.repo.owner and self.repo.url.startswith("rest:")

    def probe(self) -> bool:
        """Whether the repository exists; ``Failed`` when its server is unreachable or
        refuses the login (answers in seconds, unlike restic)."""
        if not self._rest():
            return os.path.exists(os.path.join(self.repo.url, "config"))
        status, _ = self._http("HEAD", "config")
        if status == 200:
            return True
        if status == 404:
            return False
        where = f"{self.label} ({urllib.parse.urlsplit(self.repo.url.removeprefix('rest:')).hostname})"
        if status in (401, 403):
            raise Failed(f"{where} refused the login (HTTP {status})")
        raise Failed(f"{where} answered HTTP {status}")

    def full_id(self, short: str) -> str:
        """The full id of the snapshot whose id starts with ``short`` (the backup's
        summary names only 8 hex digits); ``short`` itself when it cannot tell."""
        try:
            if self._rest():
                status, body = self._http("GET", "snapshots/", {"Accept": "application/vnd.x.restic.rest.v2"})
                names = [str(e["name"]) for e in json.loads(body)] if status == 200 else []
            else:
                names = os.listdir(os.path.join(self.repo.url, "snapshots"))
        except (Failed, OSError, ValueError, TypeError, KeyError):
            return short
        found = [n for n in names if short and n.startswith(short)]
        return found[0] if len(found) == 1 else short

    def ensure(self, source: Restic | None = None) -> bool:
        """Initialise the repository if missing (``source``: with its chunker
        parameters, for copies); True if it was created. One agent of this server at a
        time looks and creates (a named lock per repository): two ``restic init`` at
        once leave two master keys and one config, and restic may then pick the key
        the config was not written with ("config or key ... is damaged")."""
        if self.probe():
            return False
        if self.repo.owner:
            raise Failed(f"{self.label}: no repository at {self.repo.url}")
        name = "restic-init-" + hashlib.sha256(self.repo.url.encode()).hexdigest()[:24]
        with lock.named(name):
            if self.probe():  # another agent made it while this one waited
                return False
            args = ["init"] + (["--copy-chunker-params"] if source is not None else [])
            self.check(args, source=source, timeout=300)
        return True

    def snapshots(self, subscriptions: list[str] | None = None) -> list[backupjobs.Snapshot]:
        docs = self.json(["snapshots", *tag_args([f"sub={s}" for s in subscriptions or []])], timeout=600)
        return [snapshot_of(d) for d in docs or []]

    # --- backups ----------------------------------------------------------------------------

    @staticmethod
    def summary(out: str) -> Summary:
        for line in reversed(out.splitlines()):
            if line.startswith("{") and '"summary"' in line:
                doc = json.loads(line)
                return Summary(str(doc.get("snapshot_id", "")), int(doc.get("data_added", 0)),
                               int(doc.get("total_bytes_processed", 0)))
        raise Failed(f"restic backup printed no summary: {out[-300:]!r}")

    @staticmethod
    def backup_args(host: str, time: str, tags: list[str]) -> list[str]:
        return ["backup", "--json", *(["--host", host] if host else []), *(["--time", time] if time else []),
                *tag_args(tags)]

    def backup_paths(self, paths: list[str], exclude: list[str], host: str, time: str, tags: list[str],
                     timeout: float | None = None) -> Summary:
        args = [*self.backup_args(host, time, tags), *[a for e in exclude for a in ("--exclude", e)], "--", *paths]
        return self.summary(self.check(args, timeout=timeout).out)

    def backup_stdin(self, filename: str, host: str, time: str, tags: list[str], pump: Pump) -> Summary:
        """Stream what ``pump`` writes into ``restic backup --stdin``. ``pump(write)``
        returns "" when the stream is whole, else the problem: then restic is
        interrupted before its stdin closes and saves nothing (``Failed``)."""
        if "/" in filename or not filename:
            raise ValueError(f"not a stdin file name: {filename!r}")
        args = [*self.backup_args(host, time, tags), "--stdin", "--stdin-filename", filename]
        proc = subprocess.Popen(self.argv(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env())
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [drain(proc.stdout, out), drain(proc.stderr, err)]
        stdin = proc.stdin

        def write(chunk: bytes) -> None:
            try:
                stdin.write(chunk)
            except (BrokenPipeError, ValueError) as exc:
                raise _Gone from exc

        gone = False
        try:
            problem = pump(write)
        except _Gone:
            problem, gone = "restic stopped reading the stream", True
        except Exception as exc:  # the guard must hold whatever went wrong in the pump
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stdin.close()
        code = proc.wait()
        for t in readers:
            t.join()
        result = Result(code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace"))
        if problem:
            said = f"; restic: {result.message}" if gone else ""
            raise Failed(f"{problem} (restic interrupted: no snapshot){said}")
        if code != 0:
            raise Failed(f"{self.label}: restic backup failed: {result.message}")
        return self.summary(result.out)

    def dump(self, snapshot: str, path: str) -> subprocess.Popen[bytes]:
        """``restic dump SNAPSHOT PATH`` with its stdout to read (and stderr piped)."""
        proc = subprocess.Popen(self.argv(["dump", "--", snapshot, path]), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(self._stdin())
        proc.stdin.close()
        return proc
