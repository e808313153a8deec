"""Access logs as nginx writes them (``combined``) and rotations as logrotate makes them
(``dateext`` with ``-%Y%m%d-%s``; ``compress`` at once, or with ``delaycompress`` at the
next rotation, as templates/logrotate does): helpers of the usage tests."""

from __future__ import annotations

import datetime as dt
import gzip
import os
from pathlib import Path

T0 = dt.datetime(2026, 11, 30, 10, 0, 0, tzinfo=dt.UTC)


def line(i: int, size: int, at: dt.datetime = T0, path: str = "/p") -> str:
    """One request of the ``combined`` format, ``i`` seconds after ``at``."""
    stamp = (at + dt.timedelta(seconds=i)).strftime("%d/%b/%Y:%H:%M:%S %z")
    return f'127.0.0.1 - - [{stamp}] "GET {path}?{i} HTTP/1.1" 200 {size} "-" "curl/7.88.1 (x86_64)"\n'


class LogDir:
    """A subscription's logs directory: append, rotate (as logrotate), the truth so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.current = path / "access.log"
        self.current.touch()
        self.requests = 0
        self.bytes = 0
        self.n = 0
        self.rotations = 0
        #: the last rotated log while ``delaycompress`` leaves it as it is
        self.delayed: Path | None = None

    def write(self, count: int, size: int = 100, at: dt.datetime = T0) -> None:
        self._append(self.current, count, size, at)

    def late(self, count: int, size: int = 100, at: dt.datetime = T0) -> None:
        """Lines nginx writes into the renamed log until it reopens its logs (``delaycompress``
        keeps that file as it is until the next rotation)."""
        assert self.delayed is not None, "no log renamed by a delayed rotation"
        self._append(self.delayed, count, size, at)

    def _append(self, path: Path, count: int, size: int, at: dt.datetime) -> None:
        with path.open("a") as fh:
            for _ in range(count):
                fh.write(line(self.n, size, at))
                self.n += 1
                self.requests += 1
                self.bytes += size

    def rotate(self, *, compress: bool, delay: bool = False) -> Path:
        """Rename the current log and start a new one; ``compress``: compress it now, or
        with ``delay`` compress the one the previous rotation left and keep this one."""
        self.rotations += 1
        epoch = 1764500000 + self.rotations
        dest = self.path / f"access.log-20261130-{epoch}"
        if delay and self.delayed is not None:
            gz(self.delayed)
        os.rename(self.current, dest)
        self.current.touch()
        self.delayed = dest if compress and delay else None
        return gz(dest) if compress and not delay else dest


def gz(path: Path) -> Path:
    """``path`` compressed as logrotate does (``path.gz``, the original removed)."""
    with path.open("rb") as src, gzip.open(f"{path}.gz", "wb") as out:
        out.write(src.read())
    path.unlink()
    return Path(f"{path}.gz")
