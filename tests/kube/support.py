"""Helpers of the kube tests: the examples as raw documents, a validator that checks a
custom resource against its generated CRD schema, and the real ``tenantctl`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator

from controller.kube import crds

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLI = str(Path(sys.executable).parent / "tenantctl")


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, raw document) of every document in examples/."""
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return out


def schema_errors(resource: dict[str, Any]) -> list[str]:
    """Why the API server would refuse ``resource`` under its CRD's openAPIV3Schema
    (OpenAPI 3.0 semantics: ``nullable``, formats)."""
    validator = OAS30Validator(crds.spec_schema(resource["kind"]), format_checker=OAS30Validator.FORMAT_CHECKER)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(resource)]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def tenantctl(*args: str, state: Path) -> Result:
    env = {**os.environ, "TENANTCTL_STATE_DIR": str(state)}
    p = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    return Result(p.returncode, p.stdout, p.stderr)
