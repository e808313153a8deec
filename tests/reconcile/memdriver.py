"""An in-memory driver for unit tests of the engine (not a mock of a component: the
engine's contract with any driver). It records every batch it is given and can be told
to fail, or to crash the process, on chosen subscriptions."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.drivers import base


class MemDriver:
    def __init__(self, concern: str, log: Path | None = None) -> None:
        self.concern = concern
        self.batches: list[tuple[str | None, list[str]]] = []
        self.fail: dict[str, str] = {}
        self.kill_after_batches: int | None = None
        self.log = log

    def slice(self, item: Mapping[str, Any]) -> Mapping[str, Any]:
        result: Mapping[str, Any] = base.SLICES[self.concern](item)
        return result

    def apply(self, server: str | None, changes: Sequence[base.Change]) -> list[base.Result]:
        names = [c.name for c in changes]
        self.batches.append((server, names))
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(json.dumps({"server": server, "names": names}) + "\n")
        if self.kill_after_batches is not None and len(self.batches) >= self.kill_after_batches:
            os.kill(os.getpid(), signal.SIGKILL)
        return [
            base.Result(c.name, "failed", self.fail[c.name]) if c.name in self.fail
            else base.Result(c.name, "provisioned")
            for c in changes
        ]
