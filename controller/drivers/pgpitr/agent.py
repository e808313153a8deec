"""The ``pgpitr`` entry of the agent (standard library and ``controller.agent`` only)."""

from __future__ import annotations

from controller.agent import jobs, pgpitrjobs


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    if job.pgpitr is None:
        raise ValueError(f"{job.op}: the job has no pgpitr section")
    return jobs.Outcome(jobs.VERSION, pgpitr=pgpitrjobs.PgPitrOutcome(False, f"unknown action {job.pgpitr.action!r}"))
