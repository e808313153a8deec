"""``tenantctl infra``: the Automation API front-end says exactly what is missing, and
``infra servers`` reads an inventory file or stdin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli import infra
from controller.cli.main import app

INV = {"inventory": {"version": 1, "provider": "hcloud", "servers": [
    {"name": "eu-west-1", "region": "eu-west", "ipv4": "203.0.113.10", "roles": ["web"]}]}}


@pytest.fixture
def no_pulumi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))


@pytest.mark.parametrize("command", ["preview", "up"])
def test_missing_cli_is_one_line_and_exit_2(command: str, no_pulumi: None) -> None:
    r = CliRunner().invoke(app, ["infra", command, "servers"])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1
    assert r.output.startswith(f"tenantctl: infra {command} needs the Pulumi CLI")
    assert "`pulumi` is not on PATH" in r.output


def test_unknown_stack(no_pulumi: None) -> None:
    r = CliRunner().invoke(app, ["infra", "up", "mail"])
    assert (r.exit_code, r.output) == (2, "tenantctl: unknown stack 'mail' (expected servers, dns, buckets)\n")


def test_the_automation_api_drives_the_cli_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A FAKE `pulumi` (too old) on PATH: the real Automation API runs it and refuses it,
    which shows the production path is taken when a CLI is installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text("#!/bin/sh\n[ \"$1\" = version ] && echo v1.0.0 && exit 0\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK", raising=False)
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "home"))
    r = CliRunner().invoke(app, ["infra", "preview", "dns"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("tenantctl: the Pulumi CLI on PATH is not one the SDK supports")


def test_every_stack_is_a_pulumi_project() -> None:
    for name in infra.STACKS:
        project = infra.DEFAULT_STACKS_DIR / name / "Pulumi.yaml"
        assert f"name: tenantctl-{name}" in project.read_text()
        assert (infra.DEFAULT_STACKS_DIR / name / "__main__.py").is_file()


def test_servers_from_file_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text(json.dumps(INV))
    a = CliRunner().invoke(app, ["infra", "servers", "--inventory", str(path)])
    b = CliRunner().invoke(app, ["infra", "servers", "-i", "-"], input=json.dumps(INV))
    assert a.exit_code == b.exit_code == 0
    assert a.output == b.output and "kind: Server" in a.output and "provider: ssh" in a.output


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("not json", "not JSON", id="not-json"),
    pytest.param('{"inventory": {"servers": [{"name": "x"}]}}', "server 'x': ipv4 is missing", id="incomplete"),
])
def test_servers_bad_input_is_one_line(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text(text)
    r = CliRunner().invoke(app, ["infra", "servers", "--inventory", str(path)])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and message in r.output, r.output
