"""The layers of controller/ are import-linter contracts (``.importlinter``, run by
``make lint``): ``cli > reconcile | kube > drivers > provisioning > state | effective |
metrics > placement > model > base``, concern drivers independent of each other, the
agent standard-library only, the decisions free of I/O, no cycles. These tests run the
same contracts under pytest and check that they cover every package."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "controller"
LINT = Path(sys.executable).parent / "lint-imports"
#: driver packages that are not a concern: the development environment, shared clients,
#: and the agent halves of the backup concern: point-in-time recovery (pgpitr, binlog) and
#: the disaster-recovery drill on a spare (drdrill, which uses the backup agent's helpers)
SHARED = {"embedded", "powerdns", "nginx", "pgpitr", "binlog", "drdrill"}


def contracts() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter")
    return cfg


def test_every_package_and_module_of_controller_is_in_a_layer() -> None:
    layers = contracts()["importlinter:contract:layers"]["layers"]
    named = {m.strip().strip("()") for line in layers.splitlines() for m in line.split("|") if m.strip()}
    top = {f"controller.{p.name.removesuffix('.py')}" for p in PKG.iterdir()
           if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    assert top <= named, f"not in any layer: {sorted(top - named)}"


def test_every_concern_driver_is_independent_of_the_others() -> None:
    modules = {m.strip() for m in contracts()["importlinter:contract:concerns"]["modules"].split()}
    drivers = {f"controller.drivers.{p.name}" for p in (PKG / "drivers").iterdir()
               if p.is_dir() and (p / "__init__.py").exists() and p.name not in SHARED}
    assert drivers <= modules, f"concern drivers missing from the independence contract: {sorted(drivers - modules)}"


def test_the_import_contracts_hold() -> None:
    done = subprocess.run([str(LINT), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
