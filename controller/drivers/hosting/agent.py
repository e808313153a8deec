"""The remote half of the hosting drivers: ONE run per server batch (standard library
only; the server's python3 runs it). Shipped with the batch's files in one tar stream.

Usage on the server: ``python3 agent.py DIR`` where DIR holds ``job.json`` and the
staged files it names. Prints one JSON document on stdout::

    {"results": {sub: {"ok": bool, "message": str, "changed": bool}},
     "reloaded": [services], "drift": {sub: what}, "seconds": float}

Apply (``op: apply``): make users and web spaces (never overwriting what exists),
install the managed files that differ (digests: an unchanged file keeps its mtime),
validate once (``nginx -t`` / ``php-fpm -t``); on success reload once; on failure
restore the previous files, find the subscriptions whose files break validation (the
validator's message names the file; otherwise bisect), mark those failed with the
message and install the others. ``op: check`` compares the server with the expected
digests, users and homes of every subscription in one pass (drift).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

WEB_ROOT = "/srv/www"

#: seconds per phase of this run (reported as ``phases``; benchmarks print them)
PHASES: dict[str, float] = {}


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        PHASES[phase] = PHASES.get(phase, 0.0) + time.monotonic() - started


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def write(path: str, data: bytes | None, mode: int = 0o644) -> None:
    """Atomically replace (or remove, when ``data`` is None) a root-owned file."""
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = f"{path}.tenantctl-new"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, (proc.stderr + proc.stdout).strip()


# --- users and web spaces ----------------------------------------------------------


_users: set[str] = set()


def ensure_user(name: str, home: str) -> bool:
    changed = False
    if not _users:
        _users.update(p.pw_name for p in pwd.getpwall())
    if name not in _users:
        code, out = run(["useradd", "--user-group", "--no-create-home", "--home-dir", home,
                         "--shell", "/usr/sbin/nologin", name])
        if code != 0:
            raise RuntimeError(f"useradd {name}: {out}")
        _users.add(name)
        changed = True
    os.makedirs(WEB_ROOT, mode=0o711, exist_ok=True)
    if os.stat(WEB_ROOT).st_mode & 0o777 != 0o711:
        os.chmod(WEB_ROOT, 0o711)
    pw = pwd.getpwnam(name)
    www = grp.getgrnam("www-data").gr_gid
    # home: the tenant's own, traversable by nginx (group www-data) only; other
    # tenants' PHP runs under other users and cannot enter it.
    changed |= ensure_dir(home, pw.pw_uid, www, 0o750)
    changed |= ensure_dir(os.path.join(home, "tmp"), pw.pw_uid, pw.pw_gid, 0o700)
    return changed


def ensure_dir(path: str, uid: int, gid: int, mode: int) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, mode)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
        return True
    changed = False
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
        changed = True
    if st.st_mode & 0o7777 != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def copy_tree(src: str, dest: str, uid: int, gid: int) -> None:
    """Copy a skeleton entry once, owned by the tenant (never over existing files)."""
    shutil.copytree(src, dest, symlinks=False)
    for root, _dirs, files in os.walk(dest):
        os.chown(root, uid, gid)
        os.chmod(root, 0o755)
        for f in files:
            p = os.path.join(root, f)
            os.chown(p, uid, gid)
            os.chmod(p, 0o644)


def ensure_webspace(user: str, home: str, entries: list[str], docroots: list[str], skel: str) -> bool:
    pw = pwd.getpwnam(user)
    changed = False
    for entry in entries:
        dest = os.path.join(home, entry)
        if not os.path.lexists(dest):
            copy_tree(os.path.join(skel, entry), dest, pw.pw_uid, pw.pw_gid)
            changed = True
    if docroots:
        changed |= ensure_dir(os.path.join(home, "sites"), pw.pw_uid, pw.pw_gid, 0o755)
    for root in docroots:
        if not os.path.lexists(root):
            copy_tree(os.path.join(skel, "httpdocs"), root, pw.pw_uid, pw.pw_gid)
            changed = True
    return changed


def remove_user(user: str, home: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        pass
    else:
        code, out = run(["userdel", "--force", user])
        if code != 0 and "does not exist" not in out:
            raise RuntimeError(f"userdel {user}: {out}")
    try:
        grp.getgrnam(user)
        run(["groupdel", user])
    except KeyError:
        pass
    if home.startswith(WEB_ROOT + "/") and os.path.lexists(home):
        shutil.rmtree(home)


# --- services -------------------------------------------------------------------------


def children(ppid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            found.add(int(entry))
    return found


def pid_of(path: str) -> int | None:
    data = read(path)
    try:
        return int(data.decode().strip()) if data else None
    except ValueError:
        return None


def wait_gone(pids: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {p for p in pids if os.path.exists(f"/proc/{p}")}
        if pids:
            time.sleep(0.02)


def reload(service: dict[str, Any], sockets: list[str]) -> str:
    """Reload once and wait until no old worker can take a request (and new sockets exist)."""
    master = pid_of(service["pidfile"])
    if master is None or not os.path.exists(f"/proc/{master}"):
        code, out = run(service["start"])
        if code != 0:
            return f"start failed: {out}"
    else:
        with timed(f"{service['name']}.signal"):
            old = children(master)
            os.kill(master, getattr(signal, service["signal"]))
        with timed(f"{service['name']}.wait_old_workers"):
            wait_gone(old, 25.0)
    with timed(f"{service['name']}.wait_sockets"):
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not all(os.path.exists(s) for s in sockets):
            time.sleep(0.02)
    return ""


# --- apply ------------------------------------------------------------------------------


def owner_of(message: str, subs: dict[str, dict[str, Any]], among: set[str]) -> str | None:
    for name in among:
        if any(mark in message for mark in [*subs[name]["files"], *subs[name].get("marks", [])]):
            return name
    return None


def apply(job: dict[str, Any], stage: str) -> dict[str, Any]:
    subs: dict[str, dict[str, Any]] = {s["name"]: s for s in job["subs"]}
    results: dict[str, dict[str, Any]] = {}
    skel = os.path.join(stage, job.get("skel", "skel"))
    started = time.monotonic()
    for spec in job.get("common", []):
        content = read(os.path.join(stage, spec["src"]))
        if content is not None and read(spec["dest"]) != content:
            write(spec["dest"], content, spec.get("mode", 0o644))
        os.chmod(os.path.dirname(spec["dest"]), 0o755)  # nginx (www-data) reads the page
    # users and web spaces first (php pools need their users)
    for name, s in subs.items():
        results[name] = {"ok": True, "message": "", "changed": False}
        try:
            if s.get("user") and s["action"] != "delete":
                u = s["user"]
                results[name]["changed"] |= ensure_user(u["name"], u["home"])
                results[name]["changed"] |= ensure_webspace(u["name"], u["home"], s.get("webspace", []),
                                                            s.get("docroots", []), skel)
        except (OSError, RuntimeError) as exc:
            results[name] = {"ok": False, "message": f"web space: {exc}", "changed": False}
    PHASES["users"] = time.monotonic() - started
    started = time.monotonic()
    # the new content of every managed file that differs from what is on the server
    new: dict[str, dict[str, bytes | None]] = {}
    old: dict[str, dict[str, bytes | None]] = {}
    for name, s in subs.items():
        if not results[name]["ok"]:
            continue
        for dest, src in s["files"].items():
            data = read(os.path.join(stage, src)) if src else None
            cur = read(dest)
            if cur != data:
                new.setdefault(name, {})[dest] = data
                old.setdefault(name, {})[dest] = cur

    PHASES["diff"] = time.monotonic() - started

    def install(names: set[str], which: dict[str, dict[str, bytes | None]]) -> None:
        with timed("install"):
            for n in names:
                for dest, data in which.get(n, {}).items():
                    write(dest, data)

    def valid() -> tuple[bool, str]:
        with timed("validate"):
            code, out = run(job["validate"]) if job.get("validate") else (0, "")
        PHASES["validations"] = PHASES.get("validations", 0) + 1
        return code == 0, out

    pending = set(new)
    installed: set[str] = set()
    if pending:
        install(pending, new)
        ok, message = valid()
        if ok:
            installed = pending
        else:
            install(pending, old)
            base_ok, base_msg = valid()
            if not base_ok:
                for n in pending:
                    results[n] = {"ok": False, "changed": False,
                                  "message": f"server configuration invalid before this change: {base_msg}"}
                pending = set()
            while pending:
                install(pending, new)
                ok, message = valid()
                if ok:
                    installed = set(pending)
                    break
                install(pending, old)
                bad = owner_of(message, subs, pending)
                if bad is None:
                    bad = bisect(sorted(pending), new, old, install, valid) or ""
                culprits = {bad} if bad else set(pending)
                for n in culprits:
                    results[n] = {"ok": False, "changed": False, "message": message}
                pending -= culprits
    for n in installed:
        results[n]["changed"] = True
    # deletions: users and homes go once their files are gone
    reloaded: list[str] = []
    if installed:
        sockets = [sock for n in installed for sock in subs[n].get("sockets", [])]
        for service in job.get("reload", []):
            problem = reload(service, sockets)
            reloaded.append(service["name"])
            if problem:
                for n in installed:
                    results[n] = {"ok": False, "changed": True, "message": f"{service['name']}: {problem}"}
    for name, s in subs.items():
        if s["action"] == "delete" and results[name]["ok"] and s.get("user"):
            try:
                with timed("remove_users"):
                    remove_user(s["user"]["name"], s["user"]["home"])
            except (OSError, RuntimeError) as exc:
                results[name] = {"ok": False, "changed": True, "message": f"removal: {exc}"}
    return {"results": results, "reloaded": reloaded}


def bisect(names: list[str], new: dict[str, dict[str, bytes | None]], old: dict[str, dict[str, bytes | None]],
           install: Any, valid: Any) -> str | None:
    """One subscription whose new files alone break validation, or None."""
    while len(names) > 1:
        half = names[: len(names) // 2]
        install(set(half), new)
        ok, _ = valid()
        install(set(half), old)
        names = names[len(names) // 2:] if ok else half
    if not names:
        return None
    install(set(names), new)
    ok, _ = valid()
    install(set(names), old)
    return None if ok else names[0]


def check(job: dict[str, Any]) -> dict[str, Any]:
    drift: dict[str, str] = {}
    users = {p.pw_name for p in pwd.getpwall()}
    for s in job["subs"]:
        what = []
        u = s.get("user")
        if u:
            if u["name"] not in users:
                what.append(f"user {u['name']} missing")
            if not os.path.isdir(u["home"]):
                what.append(f"home {u['home']} missing")
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


def main() -> int:
    started = time.monotonic()
    os.umask(0o022)
    stage = sys.argv[1]
    with open(os.path.join(stage, "job.json")) as fh:
        job = json.load(fh)
    out = apply(job, stage) if job["op"] == "apply" else check(job)
    out["seconds"] = round(time.monotonic() - started, 3)
    out["phases"] = {k: round(v, 4) for k, v in PHASES.items()}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
