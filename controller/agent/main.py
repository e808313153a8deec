"""One agent run: ``python3 -I AGENT.pyz ENTRY DIR`` (or ``main(entry, dir)``).

DIR holds ``job.json`` and the staged files it names. The entry (one of ``ENTRIES``)
is the concern's module ``controller.drivers.<entry>.agent``; its ``handle(job, stage)``
does the job. Transactions (``op: apply``) hold the server's lock; the ``backup`` and
``drdrill`` entries' ops never do (they change no served configuration of a tenant, and
backups of several tenants run on one server at once). Fencing (``fence``, DR-1): the
generations a job carries are checked (and the higher ones recorded) before the entry
runs, under the server's lock for transactions; the parts of subscriptions the server has
seen a newer generation of are taken out of the job and answered as refused
(``Outcome.fenced``). Prints one JSON ``Outcome`` on stdout; exit status 0 whenever it
printed one, 2 for a job it refuses (another version, a malformed file, an unreadable
fence file).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

from controller.agent import fence, jobs, lock, phases

ENTRIES = ("hosting", "tls", "backup", "drdrill", "pgpitr", "binlog", "usage")


def handler(entry: str) -> Any:
    if entry not in ENTRIES:
        raise ValueError(f"unknown agent entry {entry!r}")
    return importlib.import_module(f"controller.drivers.{entry}.agent").handle


def main(entry: str, stage: str) -> int:
    started = time.monotonic()
    os.umask(0o022)
    try:
        with open(os.path.join(stage, "job.json")) as fh:
            raw = json.load(fh)
        if not isinstance(raw, dict) or raw.get("version") != jobs.VERSION:
            got = raw.get("version") if isinstance(raw, dict) else None
            raise ValueError(f"job version {got!r}, this agent speaks {jobs.VERSION}")
        job = jobs.decode(jobs.Job, raw)
        handle = handler(entry)
    except (OSError, TypeError, ValueError) as exc:
        sys.stderr.write(f"tenantctl agent: refusing the job: {exc}\n")
        return 2
    if job.op == "apply" and entry in ("hosting", "tls"):
        lock.hold()
    try:
        refused = fence.admit(job.generations)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"tenantctl agent: refusing the job: {exc}\n")
        return 2
    todo = fence.split(job, refused)
    out: jobs.Outcome = fence.merge(job, refused, handle(todo, stage) if todo is not None else None)
    doc = jobs.encode(out)
    doc["seconds"] = round(time.monotonic() - started, 3)
    doc["phases"] = phases.report()
    json.dump(doc, sys.stdout)
    return 0


def cli(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: agent.pyz ENTRY DIR\n")
        return 2
    return main(argv[1], argv[2])
