"""Fencing by generation (issue 10 item 4, DR-1): what the agent checks before a job
writes a subscription's things on a server. Standard library and ``controller.agent``
only (it runs on the servers, from the zipapp).

A subscription's generation grows by one each time an evacuation moves it
(``controller.state.regions``). Every job that writes a subscription's things carries
that subscription's generation (``jobs.Job.generations``: the subscriptions that
``subscriptions`` lists); the server keeps, per subscription, the highest generation any
job brought (``<STATE_DIR>/fence.json``, replaced atomically, read and written under a
named lock). A subscription's part of a job whose generation is lower than the highest
seen is refused (``admit``): a controller that still believes in an older placement (a
stale process, a region that came back with its old controller) never overwrites what a
newer one wrote. The rest of the job goes ahead (``split``); the answer says what was
refused (``merge``: ``Outcome.fenced``, a failed item or part for each). An equal or
higher generation passes and raises the recorded one.

The file is ``{"version": 1, "generations": {subscription: generation}}``; one that
cannot be read refuses the whole job (``Unreadable``): never guessed, never overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping

from controller.agent import backupjobs, jobs, lock, phases

FILE = "fence.json"
FORMAT = 1
#: the backup entry's ops that write a subscription's things: its snapshots taken from
#: this server (``backup``), its web space and databases here (``restore``)
BACKUP_WRITES = ("backup", "restore")


class Unreadable(ValueError):
    """The fence file is not what this agent writes: the job is refused whole."""


def path() -> str:
    return os.path.join(lock.STATE_DIR, FILE)


def subscriptions(job: jobs.Job) -> list[str]:
    """The subscriptions whose things ``job`` writes on the server (what it must carry a
    generation for): the items of a transaction (``apply``: hosting, tls), the units of a
    backup or restore. Checks, challenges, copies, drills and the server-wide ops of the
    other entries write nothing of one subscription (their callers name one with
    ``transport.Agent.run(writes=...)`` when they do: a point-in-time recovery)."""
    if job.op == "apply":
        return sorted({i.name for i in job.items})
    if job.op in BACKUP_WRITES and job.backup is not None and not job.backup.dr:
        return sorted({u.subscription for u in job.backup.units})
    return []


def read() -> dict[str, int]:
    """The highest generation seen per subscription ({} before the first one)."""
    try:
        with open(path(), encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise Unreadable(f"fence file {path()}: {exc}") from None
    gens = doc.get("generations") if isinstance(doc, dict) and doc.get("version") == FORMAT else None
    if not isinstance(gens, dict) or not all(isinstance(k, str) and _generation(v) for k, v in gens.items()):
        raise Unreadable(f"fence file {path()}: not a fence file of format {FORMAT}")
    return dict(gens)


def write(gens: Mapping[str, int]) -> None:
    """Replace the fence file atomically: a temporary file in the same directory,
    flushed to disk, renamed over the old one, the directory flushed (a crash leaves the
    old file or the new one, never a part)."""
    folder = lock.STATE_DIR
    os.makedirs(folder, mode=0o711, exist_ok=True)
    data = json.dumps({"version": FORMAT, "generations": dict(sorted(gens.items()))}, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(prefix=f".{FILE}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _generation(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def admit(sent: Mapping[str, int]) -> dict[str, jobs.Fenced]:
    """The subscriptions of ``sent`` (subscription -> generation) refused: the server has
    seen a newer generation of each. The others are admitted and the file records their
    generation when it is higher than the one seen (written only then). Under the named
    lock ``fence`` (agents of one server check and record one at a time)."""
    for sub, gen in sent.items():
        if not _generation(gen):
            raise ValueError(f"generation of {sub!r}: {gen!r} is not a positive integer")
    if not sent:
        return {}
    with phases.timed("fence"), lock.named("fence"):
        seen = read()
        refused = {s: jobs.Fenced(seen[s], g) for s, g in sorted(sent.items()) if g < seen.get(s, 0)}
        raised = {s: g for s, g in sent.items() if s not in refused and g > seen.get(s, 0)}
        if raised:
            write({**seen, **raised})
    return refused


def message(sub: str, f: jobs.Fenced) -> str:
    return (f"fenced: {sub} is at generation {f.seen} on this server, the job carries generation {f.sent} "
            "(it was moved by a newer controller: this one is stale; nothing of it was written)")


def split(job: jobs.Job, refused: Mapping[str, jobs.Fenced]) -> jobs.Job | None:
    """``job`` without the refused subscriptions' parts; None when nothing of it is left
    to do (every part refused, or a job that cannot be split: one of the other entries'
    ops naming a refused subscription)."""
    if not refused:
        return job
    if job.op == "apply":
        items = [i for i in job.items if i.name not in refused]
        return dataclasses.replace(job, items=items) if items else None
    if job.backup is not None and job.op in BACKUP_WRITES:
        units = [u for u in job.backup.units if u.subscription not in refused]
        return dataclasses.replace(job, backup=dataclasses.replace(job.backup, units=units)) if units else None
    return None


def merge(job: jobs.Job, refused: Mapping[str, jobs.Fenced], out: jobs.Outcome | None) -> jobs.Outcome:
    """The answer to ``job``: ``out`` (the handler's, None when nothing ran) plus, for each
    refused subscription, a failed item result (transactions) or failed part results
    (backups, restores) saying why, and ``fenced``."""
    out = out if out is not None else jobs.Outcome(jobs.VERSION)
    if not refused:
        return out
    results = dict(out.results)
    for item in job.items:
        if item.name in refused:
            results[item.name] = jobs.ItemResult(False, message(item.name, refused[item.name]))
    backup = out.backup
    if job.backup is not None and job.op in BACKUP_WRITES:
        failed = [backupjobs.PartResult(u.subscription, p.kind, p.name, False, message(u.subscription, refused[u.subscription]))
                  for u in job.backup.units if u.subscription in refused for p in u.parts]
        backup = dataclasses.replace(backup or backupjobs.BackupOutcome(), parts=[*(backup.parts if backup else []),
                                                                                   *failed])
    return dataclasses.replace(out, results=results, backup=backup, fenced={**out.fenced, **refused})
