"""Fixtures for tests of monitoring/: where the files are and the real promtool.

promtool comes from the Debian package ``prometheus`` (``make deps``); the tests fail,
they do not skip, when it is missing. The dashboards are the generated files checked
in under ``monitoring/grafana/`` (``tenantctl dashboards``; tests/test_monitoring.py
checks that they are what the code generates).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

MON = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MON / "prometheus" / "tenantctl.rules.yml"
RULE_TESTS = MON / "prometheus" / "tenantctl.rules.test.yml"
DASHBOARDS = sorted((MON / "grafana").glob("*.json"))


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install the Debian package 'prometheus' (make deps does)")
    return path
