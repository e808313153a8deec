"""The concerns' entry points on the agent library, run locally: ``hosting`` (php-like
items without users; users need a server and are tested in tests/drivers), ``tls``
(challenge files, the transaction with pruning and clearing) and which module each entry
name runs (``drdrill``: the DR drill's server side, an entry of its own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.agent import jobs, main, services
from controller.drivers.backup import agent as backup_agent
from controller.drivers.drdrill import agent as drdrill_agent
from controller.drivers.hosting import agent as hosting_agent
from controller.drivers.tls import agent as tls_agent

from .conftest import stage_job, validator


@pytest.fixture
def no_reload(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def reload(service: jobs.Service, sockets: list[str]) -> str:
        calls.append(service.name)
        return ""
    monkeypatch.setattr(services, "reload", reload)
    return calls


SVC = jobs.Service("php8.2-fpm", "/nonexistent.pid", "SIGUSR2", "pidfile", ["true"])


def test_hosting_installs_pools_and_removes_a_deleted_ones(tmp_path: Path, no_reload: list[str]) -> None:
    conf, stage = tmp_path / "fpm", tmp_path / "stage"
    (stage / "files").mkdir(parents=True)
    (stage / "files" / "wa.conf").write_text("[pool wa]\n")
    conf.mkdir()
    (conf / "wb.conf").write_text("[pool wb]\n")
    job = jobs.Job(jobs.VERSION, "apply", validate=[validator(conf)], reload=[SVC], items=[
        jobs.Item("a.test", files=[jobs.File(str(conf / "wa.conf"), "files/wa.conf")], marks=["[pool wa]"]),
        jobs.Item("b.test", "delete", files=[jobs.File(str(conf / "wb.conf"), None)])])
    out = hosting_agent.handle(job, str(stage))
    assert out.results == {"a.test": jobs.ItemResult(True, "", True), "b.test": jobs.ItemResult(True, "", True)}
    assert sorted(p.name for p in conf.iterdir()) == ["wa.conf"] and no_reload == ["php8.2-fpm"]


@pytest.mark.parametrize(("entry", "handle"), [
    pytest.param("hosting", hosting_agent.handle, id="hosting"),
    pytest.param("tls", tls_agent.handle, id="tls"),
    pytest.param("backup", backup_agent.handle, id="backup"),
    pytest.param("drdrill", drdrill_agent.handle, id="drdrill"),
])
def test_an_entry_name_runs_its_concerns_module(entry: str, handle: object) -> None:
    assert main.handler(entry) is handle


def test_an_unknown_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown agent entry 'drill'"):
        main.handler("drill")


def test_hosting_does_no_challenges(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not do 'challenges'"):
        hosting_agent.handle(jobs.Job(jobs.VERSION, "challenges"), str(tmp_path))


def test_tls_challenges_are_written_where_nginx_serves_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls_agent, "ACME_ROOT", str(tmp_path / "acme"))
    tls_agent.handle(jobs.Job(jobs.VERSION, "challenges", put={"wabc": {"tok-1": "tok-1.thumb"}}), str(tmp_path))
    served = tmp_path / "acme" / "wabc" / ".well-known" / "acme-challenge" / "tok-1"
    assert served.read_text() == "tok-1.thumb" and served.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(("user", "token"), [
    pytest.param("../etc", "t", id="user-with-a-path"),
    pytest.param("wabc", "../../x", id="token-with-a-path"),
    pytest.param("wabc", ".hidden", id="dot-token"),
])
def test_tls_challenges_refuse_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: str, token: str) -> None:
    monkeypatch.setattr(tls_agent, "ACME_ROOT", str(tmp_path / "acme"))
    with pytest.raises(ValueError, match="not a"):
        tls_agent.handle(jobs.Job(jobs.VERSION, "challenges", put={user: {token: "x"}}), str(tmp_path))


def test_tls_apply_is_one_transaction_then_clears_the_challenges(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_reload: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tls_agent, "ACME_ROOT", str(tmp_path / "acme"))
    (tmp_path / "acme" / "wabc" / ".well-known").mkdir(parents=True)
    inc, certs, stage = tmp_path / "inc", tmp_path / "certs", tmp_path / "stage"
    inc.mkdir()
    (inc / "wabc.gone.example.conf").write_text("site removed since\n")
    (stage / "files").mkdir(parents=True)
    (stage / "files" / "0").write_text("chain+key")
    (stage / "files" / "1").write_text("listen 443 ssl;\n")
    nginx = jobs.Service("nginx", "/nonexistent.pid", "SIGHUP", "workers", ["true"])
    keep = str(inc / "wabc.example.conf")
    stage_job(stage, jobs.Job(jobs.VERSION, "apply", validate=[validator(inc)], reload=[nginx], clear=["wabc"], items=[
        jobs.Item("example", files=[jobs.File(str(certs / "bundle.pem"), "files/0", 0o600), jobs.File(keep, "files/1")],
                  prune=[jobs.Prune(str(inc), "wabc.", [keep])])]))
    assert main.main("tls", str(stage)) == 0
    out = jobs.decode(jobs.Outcome, json.loads(capsys.readouterr().out))
    assert out.results["example"] == jobs.ItemResult(True, "", True) and out.reloaded == ["nginx"]
    assert sorted(p.name for p in inc.iterdir()) == ["wabc.example.conf"]
    assert (certs / "bundle.pem").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "acme" / "wabc").exists()
    assert out.phases["validations"] == 1
