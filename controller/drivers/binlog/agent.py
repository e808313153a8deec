"""The ``binlog`` entry of the agent (standard library and ``controller.agent`` only)."""

from __future__ import annotations

from controller.agent import binlogjobs, jobs


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    if job.binlog is None:
        raise ValueError(f"{job.op}: the job has no binlog section")
    return jobs.Outcome(jobs.VERSION, binlog=binlogjobs.BinlogOutcome(False, f"unknown action {job.binlog.action!r}"))
