"""The MariaDB PITR agent's part of the job format (``jobs.Job.binlog``,
``jobs.Outcome.binlog``): what the controller asks of the ``binlog`` entry
(``controller/drivers/binlog/agent.py``, binary-log archiving and replay) and what it
answers. Plain frozen dataclasses, decoded by ``jobs.decode``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BinlogJob:
    #: what to do (the entry's own op names)
    action: str


@dataclass(frozen=True)
class BinlogOutcome:
    ok: bool
    message: str = ""
