"""The usage agent's part of the job format (``jobs.Job.usage``, ``jobs.Outcome.usage``):
what the controller asks of the ``usage`` entry (``controller/drivers/usage/agent.py``)
and what it answers (OPS-4, RES-2). Plain frozen dataclasses, decoded by ``jobs.decode``.

One job per server and collection: for each subscription on it, the directory of its
nginx access logs and the cursor where the last collection stopped (kept in the
controller's state store, ``controller.state.usage``); optionally its web space to
measure with ``du``. The answer: requests and bytes per UTC day read since the cursor,
the new cursor, and the web space's size. The controller stores counts and cursor in
one transaction, so a line is counted once even when a collection is lost half-way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the access log's name in a subscription's logs directory; rotated files are
#: ``access.log-<suffix>`` (logrotate's ``dateext``), possibly ``.gz``
ACCESS_LOG = "access.log"
#: bytes of log read at most per subscription and run (the rest waits for the next run)
BUDGET = 256 * 1024 * 1024


@dataclass(frozen=True)
class Cursor:
    """Where counting stopped: in the file with this inode (the current log when it was
    read) whose first line hashes to ``head``, after ``offset`` bytes (a line boundary);
    ``last``: the newest log time counted (ISO 8601, UTC), the fallback when the file
    cannot be found any more (compressed or removed since). A cursor with only ``last``
    comes from another server (the subscription moved, its logs restored with its web
    space): only newer lines count."""

    inode: int = 0
    head: str = ""
    offset: int = 0
    last: str = ""


@dataclass(frozen=True)
class Site:
    """One subscription's logs (and web space) on the server."""

    subscription: str
    logs: str
    #: the web space to measure (``du``) when the job asks for disk figures
    home: str = ""
    cursor: Cursor | None = None


@dataclass(frozen=True)
class UsageJob:
    sites: list[Site] = field(default_factory=list)
    #: measure every web space with ``du`` in this run
    disk: bool = False
    budget: int = BUDGET


@dataclass(frozen=True)
class Day:
    requests: int = 0
    #: nginx's ``$body_bytes_sent`` summed (the ``combined`` log format)
    bytes: int = 0


@dataclass(frozen=True)
class SiteUsage:
    subscription: str
    #: ``YYYY-MM-DD`` (UTC) -> what was read for that day in this run
    days: dict[str, Day] = field(default_factory=dict)
    cursor: Cursor = field(default_factory=Cursor)
    #: lines counted, lines that did not parse (skipped), bytes of log read
    lines: int = 0
    skipped: int = 0
    read: int = 0
    #: ``du`` of the web space in bytes (-1: not measured in this run)
    disk: int = -1
    #: what happened out of the ordinary (cursor lost, truncated log, budget reached)
    note: str = ""
    error: str = ""


@dataclass(frozen=True)
class UsageOutcome:
    sites: list[SiteUsage] = field(default_factory=list)
