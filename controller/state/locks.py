"""File locks around the state file: who may open, migrate or replace it.

Two BSD locks (``flock``: held per open file description, so two stores of one process
never release each other's, and independent of the POSIX locks SQLite itself takes on
the database file, which we never open ourselves):

* ``opening(directory)``: the state directory, exclusively, for the short "open" phase
  of a read-write ``Store`` (journal-mode switch and migrations) and for a restore. Any
  number of processes opening a store at once queue here instead of racing inside
  SQLite, where a journal-mode switch can fail with ``database is locked`` without
  waiting for the busy timeout.
* ``Holder``: ``<db>.lock``, shared, for as long as a read-write ``Store`` is open, so
  that ``tenantctl state restore`` (``exclusive_holder``) can tell that a controller
  holds the store and refuse.

Read-only opens take neither and create no file.

A third kind, ``exclusive(path)``, is a work lock: one process at a time does the work
it guards (a sandbox's reset or refresh), the others are told at once (``Busy``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from controller.state import errors

OPEN_TIMEOUT_S = 60.0
"""How long opening a store waits for other processes opening or restoring it."""


def lock_path(db: Path) -> Path:
    """``state.db`` -> ``state.db.lock``."""
    return db.with_name(db.name + ".lock")


def _flock(fd: int, operation: int, *, timeout: float, what: str) -> None:
    """``flock`` with a deadline (polling: ``flock`` itself cannot time out)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise errors.StoreBusy(f"{what}: still locked by another process after {timeout:.0f} s") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


@contextlib.contextmanager
def opening(directory: Path, *, timeout: float = OPEN_TIMEOUT_S) -> Iterator[None]:
    """Hold the state directory's exclusive lock for the block."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _flock(fd, fcntl.LOCK_EX, timeout=timeout, what=str(directory))
        yield
    finally:
        os.close(fd)  # releases the lock


class Holder:
    """A shared lock on ``<db>.lock`` held by one open read-write store."""

    def __init__(self, db: Path, *, timeout: float = OPEN_TIMEOUT_S) -> None:
        path = lock_path(db)
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _flock(self._fd, fcntl.LOCK_SH, timeout=timeout, what=str(path))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Drop the lock; idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def exclusive_holder(db: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``<db>.lock`` exclusively, or raise ``StoreInUse`` at once if any
    read-write store (of any process, this one included) has the file open."""
    return exclusive(lock_path(db), busy=lambda: errors.StoreInUse(
        f"{db}: another process holds the state store for writing (tenantctl run, apply or the "
        f"operator); stop it first"))


@contextlib.contextmanager
def exclusive(path: Path, what: str = "", *, busy: Callable[[], Exception] | None = None) -> Iterator[None]:
    """Hold ``path`` (created with its directory) exclusively for the block, or raise at
    once if another holder (of any process, this one included) has it: ``busy()``, by
    default ``Busy`` naming ``what``. Released when the block ends or the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise (busy() if busy is not None else
                   errors.Busy(f"{what} is under way in another process; nothing was changed")) from None
        yield
    finally:
        os.close(fd)
