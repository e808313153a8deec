"""Run the real ``tenantctl`` CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "corpus"
BASE = CORPUS / "_base"
EXAMPLES = ROOT / "examples"
#: A fixed clock, so that expiry decisions do not depend on the day the tests run.
NOW = "2026-06-01T12:00:00+00:00"


def cli_path() -> str:
    local = Path(sys.executable).parent / "tenantctl"
    if local.exists():
        return str(local)
    found = shutil.which("tenantctl")
    if found is None:  # pragma: no cover - broken install
        raise RuntimeError("tenantctl is not installed in this environment")
    return found


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(args: Sequence[str], state_dir: Path) -> Result:
    """Run ``tenantctl ARGS`` from the project root with its own state directory."""
    env = {**os.environ, "TENANTCTL_STATE_DIR": str(state_dir), "TENANTCTL_NOW": NOW}
    p = subprocess.run(
        [cli_path(), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False
    )
    return Result(p.returncode, p.stdout, p.stderr)
