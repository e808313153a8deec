"""Seconds per phase of one agent run (reported as ``phases``; benchmarks print them)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

#: phase -> seconds (or a count, e.g. ``validations``) of this run
PHASES: dict[str, float] = {}


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        PHASES[phase] = PHASES.get(phase, 0.0) + time.monotonic() - started


def count(phase: str, n: float = 1) -> None:
    PHASES[phase] = PHASES.get(phase, 0.0) + n


def report() -> dict[str, float]:
    return {k: round(v, 4) for k, v in PHASES.items()}
