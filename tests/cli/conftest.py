"""Fixtures for end-to-end tests of the real ``tenantctl`` CLI (subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "tenantctl")
NOW = "2026-11-22T12:00:00+00:00"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    def __init__(self, state: Path, desired: Path) -> None:
        self.state = state
        self.desired = desired
        # Planning mode: these tests are about decisions and the state store, not servers
        # (every concern reports "not provisioned"; tests/drivers cover the servers).
        self.env = dict(os.environ, TENANTCTL_STATE_DIR=str(state), TENANTCTL_NOW=NOW, COLUMNS="200",
                        TENANTCTL_DRIVERS="none")

    def __call__(self, *args: str, check: int | None = 0) -> Result:
        p = subprocess.run([CLI, *args], capture_output=True, text=True, env=self.env, timeout=120)
        res = Result(p.returncode, p.stdout, p.stderr)
        if check is not None:
            assert p.returncode == check, f"tenantctl {' '.join(args)}: exit {p.returncode}\n{p.stderr}"
        return res

    def status(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self("status", "-o", "json").json()["subscriptions"]}

    def plan(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self("plan", "-f", str(self.desired), "-o", "json").json()["subscriptions"]}

    def apply(self, check: int | None = 0) -> Result:
        return self("apply", "-f", str(self.desired), check=check)

    def edit(self, file: str, old: str, new: str) -> None:
        path = self.desired / file
        text = path.read_text()
        assert old in text, f"{old!r} not in {file}"
        path.write_text(text.replace(old, new, 1))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    desired = tmp_path / "desired"
    shutil.copytree(ROOT / "examples", desired)
    return Cli(tmp_path / "state", desired)
