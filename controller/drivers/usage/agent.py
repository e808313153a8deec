"""The ``usage`` agent (standard library only; runs on web servers from the zipapp).

For each subscription of the job: reads its nginx access logs from the cursor on
(``usagejobs.Cursor``), counts requests and ``$body_bytes_sent`` per UTC day, and answers
the new cursor; with ``disk`` it also measures the web spaces with one ``du`` run. It
changes nothing on the server: the cursor lives in the controller's state store.

Rotation (logrotate, ``dateext``, compressed or not): the files of a logs directory form
a chain, rotated ones oldest first (by the rotation time in the ``dateext`` suffix, else
by modification time), the current ``access.log`` last. The cursor's file is found again
by the hash of its first line (a renamed, compressed or copied log starts with the same
line), or by its inode while nothing was read from it: reading resumes at the
cursor's offset in it, then takes every later file whole. A cursor whose file is gone
(rotated and removed between two runs) falls back to counting only lines newer than the
newest time already counted. Only complete lines of the current log are counted: a line
nginx is still writing waits for the next run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import IO

from controller.agent import jobs, usagejobs

CHUNK = 1024 * 1024
#: nginx's ``combined`` format: addr - user [time] "request" status bytes "referer" "agent"
LINE = re.compile(rb'^\S+ \S+ .*?\[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "[^"]*" \d{3} (\d+|-)(?: |$)')
_DATEEXT = re.compile(r"-(\d{8})-(\d+)(?:\.gz)?$")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                        "Dec"), start=1)}


@dataclass(frozen=True)
class Log:
    path: str
    inode: int
    size: int
    gz: bool
    current: bool


def when(stamp: bytes) -> tuple[str, str]:
    """``30/Nov/2026:19:36:52 +0100`` -> (``2026-11-30``, ``2026-11-30T18:36:52Z``): UTC."""
    s = stamp.decode("ascii")
    if s[22:] == "0000":  # UTC already (servers log in UTC by default): no date arithmetic
        day = dt.date(int(s[7:11]), _MONTHS[s[3:6]], int(s[0:2])).isoformat()  # ValueError: 31/Feb
        return day, f"{day}T{s[12:20]}Z"
    local = dt.datetime(int(s[7:11]), _MONTHS[s[3:6]], int(s[0:2]), int(s[12:14]), int(s[15:17]), int(s[18:20]))
    sign = -1 if s[21] == "-" else 1
    at = local - sign * dt.timedelta(hours=int(s[22:24]), minutes=int(s[24:26]))
    return at.strftime("%Y-%m-%d"), at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Counter:
    """What has been counted in one run (and the newest time counted, ever)."""

    last: str = ""
    #: count only lines newer than this (a lost cursor); "" counts everything
    since: str = ""
    days: dict[str, list[int]] = field(default_factory=dict)
    lines: int = 0
    skipped: int = 0
    _cache: dict[bytes, tuple[str, str]] = field(default_factory=dict)

    def add(self, line: bytes) -> None:
        self.add_lines([line])

    def add_lines(self, lines: list[bytes]) -> None:
        """Count lines (the hot loop: locals, one regex match and a cached date each)."""
        match, cache, days, since, last = LINE.match, self._cache, self.days, self.since, self.last
        skipped = counted = 0
        for line in lines:
            m = match(line)
            if m is None:
                skipped += 1
                continue
            stamp, sent = m.groups()
            got = cache.get(stamp)
            if got is None:
                if len(cache) > 4096:
                    cache.clear()
                try:
                    got = cache[stamp] = when(stamp)
                except (KeyError, ValueError):  # "31/Foo/2026", "31/Feb/2026": not a time
                    skipped += 1
                    continue
            day, iso = got
            if since and iso <= since:
                continue
            slot = days.get(day)
            if slot is None:
                slot = days[day] = [0, 0]
            slot[0] += 1
            if sent != b"-":
                slot[1] += int(sent)
            counted += 1
            if iso > last:
                last = iso
        self.skipped += skipped
        self.lines += counted
        self.last = last


def _order(name: str, mtime: float) -> tuple[float, str]:
    m = _DATEEXT.search(name)
    return (float(m.group(2)), name) if m else (mtime, name)


def chain(logs: str) -> list[Log]:
    """The access logs of a directory, oldest first, the current one last."""
    try:
        names = os.listdir(logs)
    except (FileNotFoundError, NotADirectoryError):
        return []
    base = usagejobs.ACCESS_LOG
    rotated: list[tuple[tuple[float, str], Log]] = []
    current: Log | None = None
    for name in names:
        if name != base and not name.startswith((base + "-", base + ".")):
            continue
        path = os.path.join(logs, name)
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        log = Log(path, st.st_ino, st.st_size, name.endswith(".gz"), name == base)
        if log.current:
            current = log
        else:
            rotated.append((_order(name, st.st_mtime), log))
    out = [log for _, log in sorted(rotated)]
    return [*out, current] if current is not None else out


def _open(log: Log) -> IO[bytes] | gzip.GzipFile:
    return gzip.GzipFile(log.path, "rb") if log.gz else open(log.path, "rb")


def head(log: Log) -> str:
    """Hash of the file's first complete line ("" while it has none)."""
    try:
        with _open(log) as fh:
            first = fh.readline(65536)
    except (OSError, EOFError):
        return ""
    return hashlib.sha256(first).hexdigest()[:32] if first.endswith(b"\n") else ""


def find(logs: list[Log], cursor: usagejobs.Cursor) -> int | None:
    """The index of the cursor's file in the chain, newest first; None when it is gone."""
    for i in range(len(logs) - 1, -1, -1):
        log = logs[i]
        if cursor.head:
            if head(log) == cursor.head:  # renamed, compressed or copied (copytruncate)
                return i
        elif not log.gz and log.inode == cursor.inode:  # nothing read from it yet
            return i
    return None


def read(log: Log, start: int, budget: int, counter: Counter) -> tuple[int, int, bool]:
    """Count ``log`` from ``start``: (offset reached, bytes read, whole file read). The
    current log stops after its last complete line; a rotated one is read to its end."""
    pos, used = start, 0
    with _open(log) as fh:
        if start:
            fh.seek(start)
        buf = b""
        while True:
            want = min(CHUNK, budget - used)
            if want <= 0:
                return pos, used, False
            data = fh.read(want)
            if not data:
                break
            used += len(data)
            buf += data
            cut = buf.rfind(b"\n")
            if cut < 0:
                continue
            block, buf = buf[:cut + 1], buf[cut + 1:]
            counter.add_lines(block.splitlines())
            pos += len(block)
        if buf and not log.current:  # a finished file's last line without its newline
            counter.add(buf)
            pos += len(buf)
    return pos, used, True


def collect(site: usagejobs.Site, budget: int) -> usagejobs.SiteUsage:
    """One subscription's traffic since its cursor (see the module docstring)."""
    logs = chain(site.logs)
    old = site.cursor or usagejobs.Cursor()
    counter = Counter(last=old.last)
    first, offset, notes = 0, 0, []
    if old.inode or old.head or old.offset:
        found = find(logs, old)
        if found is None:
            counter.since = old.last
            notes.append(f"the log read up to {old.last or 'the start'} is gone: counted only newer lines")
        else:
            first, offset = found, old.offset
            if not logs[found].gz and logs[found].size < offset:
                offset = 0
                notes.append(f"{logs[found].path} is shorter than what was read: truncated, read again")
    elif old.last:  # read up to then on another server (moved, restored): only newer lines
        counter.since = old.last
    cursor, used = old, 0
    for i in range(first, len(logs)):
        log = logs[i]
        end, n, whole = read(log, offset if i == first else 0, budget - used, counter)
        used += n
        cursor = usagejobs.Cursor(inode=log.inode, head=head(log) if end else "", offset=end, last=counter.last)
        if not whole:
            notes.append(f"read budget of {budget} bytes reached in {log.path}: the rest next run")
            break
    days = {d: usagejobs.Day(requests=r, bytes=b) for d, (r, b) in sorted(counter.days.items())}
    return usagejobs.SiteUsage(subscription=site.subscription, days=days, cursor=cursor, lines=counter.lines,
                               skipped=counter.skipped, read=used, note="; ".join(notes))


def disk(homes: list[str]) -> dict[str, int]:
    """Bytes allocated under each web space: one ``du`` for all (``-x``: its own file
    system; hard links counted once). A web space that does not exist is left out."""
    present = [h for h in homes if os.path.isdir(h)]
    if not present:
        return {}
    done = subprocess.run(["du", "-s", "-x", "-B1", "--", *present], capture_output=True, timeout=3600,
                          check=False)
    out: dict[str, int] = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        size, _, path = line.partition("\t")
        if size.isdigit():
            out[path] = int(size)
    return out


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    del stage
    if job.op != "usage" or job.usage is None:
        raise ValueError(f"the usage agent does not do {job.op!r} (or the job has no usage section)")
    results: list[usagejobs.SiteUsage] = []
    for site in job.usage.sites:
        try:
            results.append(collect(site, job.usage.budget))
        except (OSError, EOFError, ValueError, KeyError) as exc:  # an unreadable or corrupt log
            results.append(usagejobs.SiteUsage(subscription=site.subscription, cursor=site.cursor or usagejobs.Cursor(),
                                               error=f"{type(exc).__name__}: {exc}"))
    if job.usage.disk:
        try:
            sizes = disk([s.home for s in job.usage.sites if s.home])
        except (OSError, subprocess.SubprocessError) as exc:
            sizes = {}
            results = [_with(r, error=r.error or f"du: {exc}") for r in results]
        homes = {s.subscription: s.home for s in job.usage.sites}
        results = [_with(r, disk=sizes.get(homes[r.subscription], -1)) for r in results]
    return jobs.Outcome(jobs.VERSION, usage=usagejobs.UsageOutcome(sites=results))


def _with(r: usagejobs.SiteUsage, **changes: object) -> usagejobs.SiteUsage:
    return dataclasses.replace(r, **changes)  # type: ignore[arg-type]
