"""The PostgreSQL PITR agent's part of the job format (``jobs.Job.pgpitr``,
``jobs.Outcome.pgpitr``): what the controller asks of the ``pgpitr`` entry
(``controller/drivers/pgpitr/agent.py``, pgBackRest) and what it answers.
Plain frozen dataclasses, decoded by ``jobs.decode``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PgPitrJob:
    #: what to do (the entry's own op names)
    action: str


@dataclass(frozen=True)
class PgPitrOutcome:
    ok: bool
    message: str = ""
