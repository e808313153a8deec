"""The job format: versioned dataclasses, decoded strictly (a malformed or foreign job
is refused before anything is touched)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.agent import jobs, main

from .conftest import stage_job


def test_a_job_survives_json_both_ways() -> None:
    job = jobs.Job(jobs.VERSION, "apply", items=[
        jobs.Item("a.test", "ensure", files=[jobs.File("/etc/x.conf", "files/x", 0o600)],
                  prune=[jobs.Prune("/etc/t", "wa.", ["/etc/t/wa.a.conf"])], user=jobs.User("wa", "/srv/www/a.test"))],
        validate=[["nginx", "-t"]], reload=[jobs.Service("nginx", "/run/nginx.pid", "SIGHUP", "workers", ["true"])])
    assert jobs.decode(jobs.Job, json.loads(json.dumps(jobs.encode(job)))) == job


@pytest.mark.parametrize(("doc", "problem"), [
    pytest.param({"version": 1, "op": "apply", "items": [{"name": "a", "files": [{"dest": "/x"}]}]}, "src",
                 id="missing-field"),
    pytest.param({"version": 1, "op": "apply", "items": [{"name": "a", "action": "explode"}]}, "action",
                 id="unknown-action"),
    pytest.param({"version": 1, "op": "format-disk"}, "op", id="unknown-op"),
    pytest.param({"version": 1, "op": "check", "expect": [{"name": "a", "expect": {"/x": 3}}]}, "expect",
                 id="digest-not-text"),
    pytest.param({"version": 1, "op": "check", "extra": True}, "extra", id="unknown-field"),
    pytest.param({"version": 1, "op": "apply", "items": [{"name": "a", "files": [{"dest": "/x", "src": None,
                                                                                  "mode": True}]}]}, "mode",
                 id="bool-is-not-a-mode"),
])
def test_a_malformed_job_is_refused_naming_the_field(doc: dict[str, object], problem: str) -> None:
    with pytest.raises((TypeError, ValueError), match=problem):
        jobs.decode(jobs.Job, doc)


@pytest.mark.parametrize(("doc", "message"), [
    pytest.param({"version": 99, "op": "check"}, f"job version 99, this agent speaks {jobs.VERSION}", id="another-version"),
    pytest.param({"op": "check"}, "job version None", id="no-version"),
    pytest.param({"version": jobs.VERSION, "op": "check", "expect": "all"}, "expected a list", id="malformed"),
])
def test_the_agent_refuses_a_job_it_does_not_speak_with_exit_2(tmp_path: Path, doc: dict[str, object],
                                                                 message: str) -> None:
    (tmp_path / "job.json").write_text(json.dumps(doc))
    proc = subprocess.run([sys.executable, "-I", "-c", "import sys; from controller.agent import main; "
                           "sys.exit(main.cli(sys.argv))", "tls", str(tmp_path)],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and proc.stdout == ""
    assert message in proc.stderr


def test_an_unknown_entry_is_refused(tmp_path: Path) -> None:
    stage_job(tmp_path, jobs.Job(jobs.VERSION, "check"))
    assert main.main("backup-of-everything", str(tmp_path)) == 2


def test_a_check_prints_one_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    present = tmp_path / "present.conf"
    present.write_text("x")
    stage_job(tmp_path / "stage", jobs.Job(jobs.VERSION, "check", expect=[
        jobs.Expect("a", {str(present): "0" * 64, str(tmp_path / "gone"): None}),
        jobs.Expect("b", {str(tmp_path / "missing"): "0" * 64}),
        jobs.Expect("c", {str(tmp_path / "none"): None}, user=jobs.User("root", str(tmp_path))),
    ]))
    assert main.main("hosting", str(tmp_path / "stage")) == 0
    out = jobs.decode(jobs.Outcome, json.loads(capsys.readouterr().out))
    assert out.drift == {"a": f"{present} changed", "b": f"{tmp_path / 'missing'} missing"}
