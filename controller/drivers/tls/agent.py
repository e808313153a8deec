"""The remote half of the tls driver: ONE run per server batch (standard library only;
the server's python3 runs it), shipped with its files in one tar stream.

``python3 agent.py DIR``: DIR holds ``job.json`` and the staged files it names. Prints
one JSON document. Ops:

* ``challenges``: write HTTP-01 files ``{user: {token: content}}`` under
  ``ACME_ROOT/<user>/.well-known/acme-challenge/`` (nginx serves them, no reload).
* ``install``: per subscription, the managed files (certificate, key, the TLS include of
  each site) that differ; then ``nginx -t`` once and ONE reload if anything changed. If
  validation fails, the previous files are restored for everyone, and the subscriptions
  whose files break it (the validator names the file, else one by one) fail; the others
  are installed. Challenge directories of ``clear`` are emptied.
* ``check``: compare the server with expected digests (drift), one pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

ACME_ROOT = "/var/lib/tenantctl-acme"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def write(path: str, data: bytes | None, mode: int = 0o644) -> None:
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.tenantctl-new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def challenge_dir(user: str) -> str:
    if not user.isalnum():
        raise ValueError(f"not a user: {user!r}")
    return os.path.join(ACME_ROOT, user, ".well-known", "acme-challenge")


def challenges(job: dict[str, Any]) -> dict[str, Any]:
    for path in (ACME_ROOT,):
        os.makedirs(path, mode=0o755, exist_ok=True)
        os.chmod(path, 0o755)
    for user, tokens in job["put"].items():
        d = challenge_dir(user)
        os.makedirs(d, mode=0o755, exist_ok=True)
        for token, content in tokens.items():
            if "/" in token or token.startswith("."):
                raise ValueError(f"not a token: {token!r}")
            write(os.path.join(d, token), content.encode(), 0o644)
    return {"ok": True}


def children(ppid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == ppid:
                found.add(int(entry))
    return found


def reload_nginx() -> str:
    """One reload; returns once no old worker can take a request ("" on success)."""
    data = read("/run/nginx.pid")
    master = int(data.decode().strip()) if data and data.strip().isdigit() else None
    if master is None or not os.path.exists(f"/proc/{master}"):
        proc = subprocess.run(["service", "nginx", "start"], capture_output=True, text=True, check=False)
        return "" if proc.returncode == 0 else f"nginx start failed: {proc.stderr or proc.stdout}"
    old = children(master)
    os.kill(master, signal.SIGHUP)
    deadline = time.monotonic() + 25.0
    while old and time.monotonic() < deadline:
        old = {p for p in old if os.path.exists(f"/proc/{p}")}
        time.sleep(0.02)
    return ""


def validate() -> tuple[bool, str]:
    proc = subprocess.run(["nginx", "-t"], capture_output=True, text=True, check=False)
    return proc.returncode == 0, (proc.stderr + proc.stdout).strip()


def install(job: dict[str, Any], stage: str) -> dict[str, Any]:
    results: dict[str, dict[str, Any]] = {}
    new: dict[str, dict[str, tuple[bytes | None, int]]] = {}
    old: dict[str, dict[str, tuple[bytes | None, int]]] = {}
    for s in job["subs"]:
        name = s["name"]
        results[name] = {"ok": True, "message": "", "changed": False}
        for dest, spec in s["files"].items():
            data = read(os.path.join(stage, spec["src"])) if spec["src"] else None
            cur = read(dest)
            if cur != data:
                new.setdefault(name, {})[dest] = (data, spec["mode"])
                old.setdefault(name, {})[dest] = (cur, spec["mode"])

    def put(names: set[str], which: dict[str, dict[str, tuple[bytes | None, int]]]) -> None:
        for n in names:
            for dest, (data, mode) in which.get(n, {}).items():
                write(dest, data, mode)

    pending = set(new)
    installed: set[str] = set()
    if pending:
        put(pending, new)
        ok, message = validate()
        if ok:
            installed = pending
        else:
            put(pending, old)
            base_ok, base_msg = validate()
            if not base_ok:
                for n in pending:
                    results[n] = {"ok": False, "changed": False,
                                  "message": f"nginx configuration invalid before this change: {base_msg}"}
                pending = set()
            for n in sorted(pending):  # one by one: rare, and the batch is kept small
                put({n}, new)
                ok, message = validate()
                if ok:
                    installed.add(n)
                else:
                    put({n}, old)
                    results[n] = {"ok": False, "changed": False, "message": message[-2000:]}
    for n in installed:
        results[n]["changed"] = True
    problem = reload_nginx() if installed else ""
    if problem:
        for n in installed:
            results[n] = {"ok": False, "changed": True, "message": problem}
    for user in job.get("clear", []):
        shutil.rmtree(os.path.join(ACME_ROOT, user), ignore_errors=True)
    for prune in job.get("prune", []):  # includes of sites the subscription no longer has
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(prune["dir"]):
                path = os.path.join(prune["dir"], entry)
                if entry.startswith(prune["prefix"]) and path not in prune["keep"]:
                    os.unlink(path)
    return {"results": results, "reloaded": bool(installed)}


def check(job: dict[str, Any]) -> dict[str, Any]:
    drift: dict[str, str] = {}
    for s in job["subs"]:
        what = []
        for path, want in s["expect"].items():
            data = read(path)
            if want is None and data is not None:
                what.append(f"{path} should not exist")
            elif want is not None and data is None:
                what.append(f"{path} missing")
            elif want is not None and data is not None and digest(data) != want:
                what.append(f"{path} changed")
        if what:
            drift[s["name"]] = "; ".join(what)
    return {"drift": drift}


#: The hosting agent's lock (controller/drivers/hosting/agent.py): nginx reloads of the
#: web and tls concerns on one server never interleave, whoever runs them.
AGENT_LOCK = "/var/lib/tenantctl/agent.lock"


def lock() -> int:
    """Hold the server's agent lock until this process ends."""
    os.makedirs(os.path.dirname(AGENT_LOCK), mode=0o711, exist_ok=True)
    fd = os.open(AGENT_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def main() -> int:
    started = time.monotonic()
    os.umask(0o022)
    stage = sys.argv[1]
    with open(os.path.join(stage, "job.json")) as fh:
        job = json.load(fh)
    op = job["op"]
    if op == "install":
        lock()
    out = challenges(job) if op == "challenges" else install(job, stage) if op == "install" else check(job)
    out["seconds"] = round(time.monotonic() - started, 3)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
