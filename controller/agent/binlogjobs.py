"""The MariaDB PITR agent's part of the job format (``jobs.Job.binlog``,
``jobs.Outcome.binlog``): what the controller asks of the ``binlog`` entry
(``controller/drivers/binlog/agent.py``, binary-log archiving and replay) and what it
answers. Plain frozen dataclasses, decoded by ``jobs.decode``.

Actions: ``grant`` (source MariaDB server: the archivers' login from ``hosts``),
``archive`` (repository server: the archivers of ``sources``, started), ``archived``
(repository server: the archive's files of ``names``), ``logs`` (source: its binary logs,
and the time of its first event the archive lacks given ``archived`` sizes),
``position`` (any server: the binlog position a nightly dump recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.agent import backupjobs


@dataclass(frozen=True)
class Source:
    """One MariaDB server an archiver streams from."""

    name: str
    host: str
    port: int
    password: str
    #: the replica id the archiver presents (unique per archiver and source)
    replica_id: int


@dataclass(frozen=True)
class LogFile:
    name: str
    size: int


@dataclass(frozen=True)
class Archive:
    files: list[LogFile] = field(default_factory=list)
    #: Unix time of the newest complete event archived (0: none)
    newest: int = 0


@dataclass(frozen=True)
class BinlogJob:
    #: what to do (the entry's own op names, above)
    action: str
    #: grant: the login and its password; the addresses it may come from
    login: str = ""
    password: str = ""
    hosts: list[str] = field(default_factory=list)
    #: archive: every source this repository server archives (others are dropped)
    sources: list[Source] = field(default_factory=list)
    #: archived: the sources whose archive to list
    names: list[str] = field(default_factory=list)
    #: logs: the archive's file sizes ``{name: bytes}``
    archived: dict[str, int] = field(default_factory=dict)
    #: position: the repository, its CA (staged file name), the snapshot and database
    repo: backupjobs.Repo | None = None
    cacert: str = ""
    snapshot: str = ""
    database: str = ""


@dataclass(frozen=True)
class BinlogOutcome:
    ok: bool
    message: str = ""
    changed: bool = False
    #: logs: the server's binary logs (SHOW BINARY LOGS)
    logs: list[LogFile] = field(default_factory=list)
    #: logs: Unix time of the first event the archive lacks (0: the archive is complete)
    unarchived: int = 0
    #: archived: per source
    archives: dict[str, Archive] = field(default_factory=dict)
    #: position: the dump's binlog file and position ("" / 0: the dump recorded none)
    file: str = ""
    position: int = 0
