"""Files on the server: read, digest, atomic write or removal with mode and owner,
directories with owner and mode, and running a command (its status and output)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess

#: directories known to exist during this run (creating them again costs a syscall each)
_dirs: set[str] = set()

#: suffix of the temporary file an atomic write renames into place
TMP_SUFFIX = ".tenantctl-new"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def forget_dirs() -> None:
    """Forget which directories exist (tests that reuse paths across runs)."""
    _dirs.clear()


def write(path: str, data: bytes | None, mode: int = 0o644, *, staged: str | None = None,
          uid: int = 0, gid: int = 0) -> None:
    """Atomically replace (or remove, when ``data`` is None) a file owned ``uid:gid``.

    ``staged``: the same bytes, already extracted on this filesystem (from the batch's
    tar); it is renamed into place (creating a file costs ~0.7 ms on an overlay
    filesystem) and so can be used once; later writes of the same content (restore,
    bisect) write ``data``. Owners are set only when running as root."""
    if data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    parent = os.path.dirname(path)
    if parent not in _dirs:
        os.makedirs(parent, mode=0o755, exist_ok=True)
        _dirs.add(parent)
    root = os.geteuid() == 0
    if staged is not None:
        try:
            if root:
                os.chown(staged, uid, gid)
            os.chmod(staged, mode)
            os.replace(staged, path)
            return
        except FileNotFoundError:  # used already: write the bytes
            pass
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # another filesystem: write the bytes
                raise
    tmp = f"{path}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        if root:
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_dir(path: str, uid: int, gid: int, mode: int) -> bool:
    """``path`` is a directory owned ``uid:gid`` with ``mode``; True if this changed it."""
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


def run(argv: list[str], timeout: float | None = None) -> tuple[int, str]:
    """Run ``argv``: (exit status, stderr + stdout); a timeout is status 124."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: no answer in {timeout:.0f}s"
    except OSError as exc:
        return 127, f"{argv[0]}: {exc}"
    return proc.returncode, (proc.stderr + proc.stdout).strip()
