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

import base64
import contextlib
import errno
import fcntl
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


_dirs: set[str] = set()


def write(path: str, data: bytes | None, mode: int = 0o644, staged: str | None = None) -> None:
    """Atomically replace (or remove, when ``data`` is None) a root-owned file.

    ``staged``: the same bytes, already extracted from the batch's tar on this
    filesystem; it is renamed into place (creating a file costs ~0.7 ms on an overlay
    filesystem: 500 pools, 0.35 s) and so can be used once; later writes of the same
    content (restore, bisect) write ``data``."""
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    parent = os.path.dirname(path)
    if parent not in _dirs:
        os.makedirs(parent, mode=0o755, exist_ok=True)
        _dirs.add(parent)
    if staged is not None:
        try:
            os.chown(staged, 0, 0)
            os.chmod(staged, mode)
            os.replace(staged, path)
            return
        except FileNotFoundError:  # used already: write the bytes
            pass
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # another filesystem: write the bytes
                raise
    tmp = f"{path}.tenantctl-new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
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


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, waiting for its parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


#: how long a reload may take before it counts as failed: php-fpm lets old workers
#: finish their requests for up to process_control_timeout (20 s) before it re-executes
RELOAD_TIMEOUT = 45.0


def reload(service: dict[str, Any], sockets: list[str]) -> str:
    """Reload once; "" once the service runs the new configuration, else what went wrong.

    Waits until the master has loaded the new configuration, not until old workers have
    finished their requests (they finish them; new connections queue on the listening
    sockets meanwhile):

    * ``ready: pidfile`` (php-fpm, USR2): the master re-executes itself once its old
      workers are gone and writes its pidfile again when every pool is set up; a master
      that died instead is a failed reload.
    * ``ready: workers`` (nginx, HUP): the master started a new generation of workers
      (a configuration it cannot load starts none).

    Then every socket of ``sockets`` must exist."""
    name, pidfile = service["name"], service["pidfile"]
    master = pid_of(pidfile)
    if master is None or not alive(master):
        with timed(f"{name}.start"):
            code, out = run(service["start"])
        if code != 0:
            return f"start failed: {out}"
    else:
        with timed(f"{name}.signal"):
            before, old = stamp(pidfile), children(master)
            os.kill(master, getattr(signal, service["signal"]))
        with timed(f"{name}.wait_ready"):
            problem = wait_ready(service, master, before, old)
        if problem:
            return problem
    with timed(f"{name}.wait_sockets"):
        deadline = time.monotonic() + 5.0
        missing = [s for s in sockets if not os.path.exists(s)]
        while missing and time.monotonic() < deadline:
            time.sleep(0.01)
            missing = [s for s in missing if not os.path.exists(s)]
    if missing:
        return f"reloaded, but {len(missing)} socket(s) missing, e.g. {missing[0]}"
    return ""


def wait_ready(service: dict[str, Any], master: int, before: tuple[int, int] | None, old: set[int]) -> str:
    deadline = time.monotonic() + float(service.get("timeout", RELOAD_TIMEOUT))
    gone_since: float | None = None
    while time.monotonic() < deadline:
        if service.get("ready") == "pidfile":
            now = stamp(service["pidfile"])
            if now is not None and now != before:
                pid = pid_of(service["pidfile"])
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
            if children(master) - old:
                return ""
        time.sleep(0.01)
    return f"no new configuration loaded after {service.get('timeout', RELOAD_TIMEOUT):.0f}s"


# --- crash safety: one agent at a time, a journal of what an unfinished batch replaced ---

STATE_DIR = "/var/lib/tenantctl"
JOURNAL = os.path.join(STATE_DIR, "journal.json")


def lock() -> int:
    """Hold the server's agent lock until this process ends (a SIGKILLed agent releases
    it): an agent left running by a controller that died finishes before the next starts."""
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(STATE_DIR, "agent.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with timed("lock"):
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def journal(old: dict[str, bytes | None], validate: list[list[str]], services: list[dict[str, Any]]) -> None:
    """Before the first managed file is replaced: what each one held, and how to validate
    and reload what reads them (atomically written; removed once the batch is through)."""
    doc = {"files": {d: None if b is None else base64.b64encode(b).decode() for d, b in old.items()},
           "validate": validate, "reload": services}
    tmp = f"{JOURNAL}.tenantctl-new"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, JOURNAL)


def recover() -> dict[str, Any] | None:
    """Roll back the batch an agent did not finish (killed between replacing files and
    reloading): put every file it replaced back. The caller then re-validates and reloads
    the services it names (they may run either version) and applies its own batch anew,
    which finds those files different again. Returns the journal, or None."""
    data = read(JOURNAL)
    if data is None:
        return None
    doc: dict[str, Any] = json.loads(data)
    with timed("recover"):
        for dest, b64 in doc["files"].items():
            write(dest, None if b64 is None else base64.b64decode(b64))
    return doc


def done() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(JOURNAL)


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
    services: list[dict[str, Any]] = list(job.get("reload", []))
    validators: list[list[str]] = [job["validate"]] if job.get("validate") else []
    # an unfinished batch (its agent was killed): rolled back here; what it would have
    # reloaded is validated and reloaded below even if this batch changes nothing
    recovered = recover()
    force: list[dict[str, Any]] = []
    extra: list[dict[str, Any]] = []
    if recovered is not None:
        mine = {sv["name"] for sv in services}
        force = [sv for sv in recovered["reload"] if sv["name"] in mine]
        extra = [sv for sv in recovered["reload"] if sv["name"] not in mine]
        validators += [v for v in recovered["validate"] if v not in validators]
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
    staged: dict[str, str] = {}  # dest -> its new content, extracted from the tar
    for name, s in subs.items():
        if not results[name]["ok"]:
            continue
        for dest, src in s["files"].items():
            data = read(os.path.join(stage, src)) if src else None
            cur = read(dest)
            if cur != data:
                new.setdefault(name, {})[dest] = data
                old.setdefault(name, {})[dest] = cur
                if src:
                    staged[dest] = os.path.join(stage, src)

    PHASES["diff"] = time.monotonic() - started

    def install(names: set[str], which: dict[str, dict[str, bytes | None]]) -> None:
        with timed("install"):
            for n in names:
                for dest, data in which.get(n, {}).items():
                    write(dest, data, staged=staged.get(dest) if which is new else None)

    def valid() -> tuple[bool, str]:
        with timed("validate"):
            code, out = run(job["validate"]) if job.get("validate") else (0, "")
        PHASES["validations"] = PHASES.get("validations", 0) + 1
        return code == 0, out

    pending = set(new)
    installed: set[str] = set()
    if pending:
        journal({d: b for files in old.values() for d, b in files.items()}, validators, services + extra)
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
    if installed or force:
        sockets = [sock for n in installed for sock in subs[n].get("sockets", [])]
        for service in services:
            problem = reload(service, sockets)
            reloaded.append(service["name"])
            if problem:
                # validated, yet the service did not take it: put the previous files
                # back and bring every service up on them, so the other tenants serve
                install(installed, old)
                again = [f"{sv['name']}: {p}" for sv in job["reload"] if (p := reload(sv, []))]
                restored = "; previous files restored" + (f", but {'; '.join(again)}" if again else "")
                for n in installed:
                    results[n] = {"ok": False, "changed": False,
                                  "message": f"{service['name']}: {problem}{restored}"}
                installed = set()
                break
    recovery = ""
    if extra:  # services of the rolled-back batch that this batch does not reload
        ok, message = (True, "")
        for argv in recovered["validate"] if recovered else []:
            if ok:
                code, message = run(argv)
                ok = code == 0
        problems = [f"{sv['name']}: {p}" for sv in extra if ok and (p := reload(sv, []))]
        reloaded += [sv["name"] for sv in extra if ok]
        recovery = "; ".join(problems) if ok else f"rolled-back configuration invalid: {message}"
    if recovered is not None or new:  # a journal exists: the batch is through
        done()
    for name, s in subs.items():
        if s["action"] == "delete" and results[name]["ok"] and s.get("user"):
            try:
                with timed("remove_users"):
                    remove_user(s["user"]["name"], s["user"]["home"])
            except (OSError, RuntimeError) as exc:
                results[name] = {"ok": False, "changed": True, "message": f"removal: {exc}"}
    out: dict[str, Any] = {"results": results, "reloaded": reloaded}
    if recovered is not None:
        out["recovered"] = {"files": len(recovered["files"]), "problem": recovery}
    return out


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
    lock()
    out = apply(job, stage) if job["op"] == "apply" else check(job)
    out["seconds"] = round(time.monotonic() - started, 3)
    out["phases"] = {k: round(v, 4) for k, v in PHASES.items()}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
