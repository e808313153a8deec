"""The agent library run locally in temporary directories: its state directory (lock,
journal) is a fresh one per test, and every file it manages lives under ``tmp_path``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.agent import files, jobs, lock, phases


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "state"
    monkeypatch.setattr(lock, "STATE_DIR", str(d))
    files.forget_dirs()
    phases.PHASES.clear()
    yield d
    files.forget_dirs()


#: a validator standing in for ``nginx -t``: fails naming the first file under DIR that
#: holds "BAD" (or without naming it, when the file holds "ANON")
VALIDATE = ("import pathlib, sys\n"
            "for p in sorted(pathlib.Path(sys.argv[1]).rglob('*.conf')):\n"
            "    t = p.read_text()\n"
            "    if 'BAD' in t: sys.exit(f'invalid directive in {p}:1')\n"
            "    if 'ANON' in t: sys.exit('configuration test failed')\n")


def validator(conf: Path) -> list[str]:
    return [sys.executable, "-c", VALIDATE, str(conf)]


def stage_job(stage: Path, job: jobs.Job) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    (stage / "job.json").write_text(json.dumps(jobs.encode(job)))
