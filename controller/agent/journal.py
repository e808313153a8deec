"""The journal of an unfinished transaction, so that a killed agent's batch is rolled
back at the next run (whichever concern's agent runs next on the server).

Before the first managed file is replaced, the journal records what each file held and
how to validate and reload what reads them (written atomically); it is removed once the
transaction is through. ``recover`` puts every file back; the caller then validates and
reloads the services it names (they may run either version) and applies its own batch
anew, which finds those files different again.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass

from controller.agent import files, jobs, lock, phases


@dataclass(frozen=True)
class Entry:
    """What an unfinished transaction replaced and what reads it."""

    files: dict[str, bytes | None]
    modes: dict[str, int]
    validate: list[list[str]]
    reload: list[jobs.Service]


def path() -> str:
    return os.path.join(lock.STATE_DIR, "journal.json")


def begin(old: dict[str, bytes | None], modes: dict[str, int], validate: list[list[str]],
          reload: list[jobs.Service]) -> None:
    doc = {"files": {d: None if b is None else base64.b64encode(b).decode() for d, b in old.items()},
           "modes": modes, "validate": validate, "reload": [dataclasses.asdict(s) for s in reload]}
    os.makedirs(lock.STATE_DIR, mode=0o711, exist_ok=True)
    tmp = f"{path()}{files.TMP_SUFFIX}"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path())


def load() -> Entry | None:
    data = files.read(path())
    if data is None:
        return None
    doc = json.loads(data)
    return Entry(files={d: None if b is None else base64.b64decode(b) for d, b in doc["files"].items()},
                 modes={d: int(m) for d, m in doc.get("modes", {}).items()},
                 validate=[list(v) for v in doc["validate"]],
                 reload=[jobs.decode(jobs.Service, s) for s in doc["reload"]])


def recover() -> Entry | None:
    """Roll back the transaction an agent did not finish: every file it replaced gets its
    previous content back (removals last, in reverse order). Returns the entry, or None."""
    entry = load()
    if entry is None:
        return None
    with phases.timed("recover"):
        present = [(d, b) for d, b in entry.files.items() if b is not None]
        absent = [d for d, b in entry.files.items() if b is None]
        for dest, data in present:
            files.write(dest, data, entry.modes.get(dest, 0o644))
        for dest in reversed(absent):
            files.write(dest, None)
    return entry


def done() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path())
