"""Failure modes of the hosting path without a server: every backend exception of the
SSH transport and of the agent's answer is mapped to ``TemporaryError`` or
``PermanentError`` (chained with ``raise ... from``), and the agent's journal rolls
back a batch whose agent was killed before it reloaded."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from controller import errors
from controller.drivers import base, transport
from controller.drivers.context import Context
from controller.drivers.hosting import PhpDriver, WebDriver, agent

# --- the transport ----------------------------------------------------------------------


class FakeRun:
    """Stands in for ``subprocess.run`` in the transport: one outcome per call."""

    def __init__(self, *outcomes: int | BaseException) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        stdout = kw.get("stdout")
        if stdout is not None and hasattr(stdout, "write"):
            stdout.write(b"partial")
        return subprocess.CompletedProcess(argv, outcome, b"out", b"boom on stderr")


@pytest.fixture
def remote(tmp_path: Path) -> transport.Transport:
    return transport.Transport(tmp_path, tmp_path / "key", "192.0.2.1", attempts=2)


TIMEOUT = subprocess.TimeoutExpired(["ssh"], 300)


@pytest.mark.parametrize(("outcome", "kind", "retried", "root"), [
    pytest.param(transport.SSH_FAILED, errors.TemporaryError, True, None, id="ssh-255-unreachable"),
    pytest.param(TIMEOUT, errors.TemporaryError, True, subprocess.TimeoutExpired, id="no-answer-in-time"),
    pytest.param(FileNotFoundError(2, "ssh"), errors.PermanentError, False, FileNotFoundError, id="no-ssh-client"),
    pytest.param(PermissionError(13, "ssh"), errors.PermanentError, False, PermissionError, id="ssh-not-executable"),
])
def test_run_maps_every_failure_of_the_ssh_client(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport, outcome: int | BaseException,
        kind: type[errors.DriverError], retried: bool, root: type[BaseException] | None) -> None:
    fake = FakeRun(outcome)
    monkeypatch.setattr(subprocess, "run", fake)
    with pytest.raises(kind) as info:
        remote.run(["true"])
    assert fake.calls == (2 if retried else 1)
    assert info.value.__cause__ is not None  # raise ... from: the backend error is kept
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:
        chain.append(type(exc))
        exc = exc.__cause__
    if root is not None:
        assert chain[-1] is root, chain
    if kind is errors.TemporaryError:
        assert cast(errors.TemporaryError, info.value).delay
        assert "192.0.2.1" in str(info.value)


def test_a_failed_connection_is_retried_and_a_later_success_returned(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport) -> None:
    fake = FakeRun(transport.SSH_FAILED, 0)
    monkeypatch.setattr(subprocess, "run", fake)
    assert remote.run(["true"]).returncode == 0 and fake.calls == 2


def test_a_remote_command_failing_is_the_callers_and_check_makes_it_permanent(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport) -> None:
    monkeypatch.setattr(subprocess, "run", FakeRun(3))
    assert remote.run(["false"]).returncode == 3
    with pytest.raises(errors.PermanentError, match="boom on stderr"):
        remote.check(["false"])


@pytest.mark.parametrize(("outcome", "kind"), [
    pytest.param(transport.SSH_FAILED, errors.TemporaryError, id="ssh-255"),
    pytest.param(TIMEOUT, errors.TemporaryError, id="timeout"),
    pytest.param(OSError(28, "No space left on device"), errors.TemporaryError, id="local-disk-full"),
])
def test_fetch_maps_failures_and_leaves_no_partial_file(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport, tmp_path: Path,
        outcome: int | BaseException, kind: type[errors.DriverError]) -> None:
    monkeypatch.setattr(subprocess, "run", FakeRun(outcome))
    dest = tmp_path / "out" / "archive.tar.gz"
    with pytest.raises(kind) as info:
        remote.fetch(["tar", "-c", "x"], dest)
    if isinstance(outcome, BaseException):
        assert info.value.__cause__ is outcome
    assert not dest.exists() and not list(dest.parent.glob("*.part"))


def test_fetch_returns_a_remote_failure_status_without_a_file(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport, tmp_path: Path) -> None:
    monkeypatch.setattr(subprocess, "run", FakeRun(2))
    dest = tmp_path / "archive.tar.gz"
    assert remote.fetch(["tar"], dest) == 2
    assert not dest.exists() and not list(tmp_path.glob("*.part"))


# --- the agent's answer, as the drivers read it -----------------------------------------------


class FakeRemote:
    def __init__(self, result: transport.Completed | BaseException) -> None:
        self.result = result
        self.last_timings: dict[str, float] = {}
        self.jobs: list[dict[str, Any]] = []

    def ship(self, files: list[transport.File], then: list[str]) -> transport.Completed:
        self.jobs.append(json.loads(next(f.data for f in files if f.path == "job.json") or b"{}"))
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result

    def fetch(self, argv: list[str], dest: Path) -> int:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result.returncode

    def close(self) -> None:
        pass


def php_with(result: transport.Completed | BaseException) -> PhpDriver:
    driver = PhpDriver(cast(Context, object()))
    driver._transports["s1"] = cast(transport.Transport, FakeRemote(result))
    return driver


def change(name: str = "a.test") -> base.Change:
    sl = {"server": "s1", "state": "active", "enabled": True, "sites": [], "permissions": {},
          "php": {"handler": "fpm", "version": "8.2", "settings": {"memory_limit": "128M"}}}
    return base.Change(name, "ensure", sl)


def done(code: int, stdout: bytes = b"", stderr: bytes = b"") -> transport.Completed:
    return transport.Completed(code, stdout, stderr)


@pytest.mark.parametrize(("answer", "kind", "cause"), [
    pytest.param(done(1, stderr=b"Traceback ...\nOSError: [Errno 28] No space left"), errors.PermanentError, None,
                 id="agent-crashed"),
    pytest.param(done(2, stderr=b"python3: can't open file"), errors.PermanentError, None, id="agent-not-runnable"),
    pytest.param(done(127, stderr=b"sh: python3: not found"), errors.PermanentError, None, id="no-python-on-server"),
    pytest.param(done(137, stderr=b"Killed"), errors.TemporaryError, None, id="agent-sigkilled"),
    pytest.param(done(143), errors.TemporaryError, None, id="agent-sigtermed"),
    pytest.param(done(0, b"not json"), errors.PermanentError, ValueError, id="garbage-answer"),
    pytest.param(done(0, b""), errors.PermanentError, ValueError, id="empty-answer"),
    pytest.param(done(0, b"null"), errors.PermanentError, ValueError, id="json-null"),
    pytest.param(done(0, b"[1, 2]"), errors.PermanentError, ValueError, id="json-list"),
    pytest.param(done(0, b'{"reloaded": []}'), errors.PermanentError, ValueError, id="no-results"),
    pytest.param(done(0, b'{"results": [], "seconds": 1}'), errors.PermanentError, ValueError, id="results-not-object"),
    pytest.param(done(0, b'{"results": {}, "seconds": "soon"}'), errors.PermanentError, ValueError,
                 id="seconds-not-a-number"),
    pytest.param(done(0, b'{"results": {}, "phases": {"x": null}}'), errors.PermanentError, TypeError,
                 id="phase-not-a-number"),
    pytest.param(errors.TemporaryError("unreachable over SSH", delay=10), errors.TemporaryError, None,
                 id="transport-temporary-passes-through"),
    pytest.param(errors.PermanentError("cannot run the ssh client"), errors.PermanentError, None,
                 id="transport-permanent-passes-through"),
])
def test_every_failure_of_the_agent_is_a_driver_error(
        answer: transport.Completed | BaseException, kind: type[errors.DriverError],
        cause: type[BaseException] | None) -> None:
    driver = php_with(answer)
    with pytest.raises(kind) as info:
        driver.apply("s1", [change()])
    assert type(info.value) is kind
    if cause is not None:
        assert isinstance(info.value.__cause__, cause)
    if isinstance(answer, transport.Completed) and answer.stderr:
        assert answer.stderr.decode().splitlines()[-1] in str(info.value)


def test_drift_check_answers_are_checked_too() -> None:
    with pytest.raises(errors.PermanentError):
        php_with(done(0, b'{"results": {}}')).drifted("s1", [change()])
    assert php_with(done(0, b'{"drift": {"a.test": "x missing"}}')).drifted("s1", [change()]) == {
        "a.test": "x missing"}


@pytest.mark.parametrize(("entry", "outcome", "message"), [
    pytest.param({"ok": True, "message": ""}, "provisioned", "", id="ok"),
    pytest.param({"ok": False, "message": "php-fpm: [pool wa] bad"}, "failed", "php-fpm: [pool wa] bad", id="failed"),
    pytest.param(None, "failed", "the agent returned no result", id="missing"),
    pytest.param("yes", "failed", "the agent returned no result", id="not-an-object"),
    pytest.param({"message": "?"}, "failed", "?", id="ok-missing"),
])
def test_each_subscription_gets_its_own_result(entry: object, outcome: str, message: str) -> None:
    answer = {"results": {} if entry is None else {"a.test": entry}, "seconds": 0.1}
    (res,) = php_with(done(0, json.dumps(answer).encode())).apply("s1", [change()])
    assert (res.outcome, res.message) == (outcome, message)


def test_web_deletes_map_driver_errors_to_a_failed_result_not_an_exception(tmp_path: Path) -> None:
    ctx = cast(Context, type("Ctx", (), {"state_dir": tmp_path})())
    web = WebDriver(ctx)
    web._transports["s1"] = cast(transport.Transport, FakeRemote(errors.TemporaryError("unreachable")))
    (res,) = web.apply("s1", [base.Change("a.test", "delete", {"name": "a.test"})])
    assert res.outcome == "failed" and "nothing removed" in res.message


# --- the agent's journal -----------------------------------------------------------------------


@pytest.fixture
def journal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    d = tmp_path / "state"
    d.mkdir()
    monkeypatch.setattr(agent, "STATE_DIR", str(d))
    monkeypatch.setattr(agent, "JOURNAL", str(d / "journal.json"))
    monkeypatch.setattr(agent, "_dirs", set())
    yield d


def test_a_batch_killed_before_its_reload_is_rolled_back_then_applied_and_reloaded_once(
        tmp_path: Path, journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "a.conf").write_bytes(b"old a\n")
    stage = tmp_path / "stage"
    (stage / "files").mkdir(parents=True)
    (stage / "files" / "a.conf").write_bytes(b"new a\n")
    (stage / "files" / "b.conf").write_bytes(b"new b\n")
    service = {"name": "svc", "pidfile": "/nonexistent", "signal": "SIGHUP", "start": ["true"]}
    job = {"op": "apply", "validate": ["true"], "reload": [service], "subs": [
        {"name": "a", "action": "ensure", "user": None, "files": {str(conf / "a.conf"): "files/a.conf"}},
        {"name": "b", "action": "ensure", "user": None, "files": {str(conf / "b.conf"): "files/b.conf"}},
    ]}
    # the killed agent: journal written, files replaced, no reload
    agent.journal({str(conf / "a.conf"): b"old a\n", str(conf / "b.conf"): None}, [["true"]], [service])
    (conf / "a.conf").write_bytes(b"new a\n")
    (conf / "b.conf").write_bytes(b"new b\n")
    reloads: list[str] = []

    def reload(sv: dict[str, Any], sockets: list[str]) -> str:
        reloads.append(sv["name"])
        return ""
    monkeypatch.setattr(agent, "reload", reload)
    out = agent.apply(job, str(stage))
    assert out["recovered"] == {"files": 2, "problem": ""}
    assert all(r["ok"] and r["changed"] for r in out["results"].values()), out
    assert reloads == ["svc"]  # exactly once, although the files were already in place
    assert (conf / "a.conf").read_bytes() == b"new a\n" and (conf / "b.conf").read_bytes() == b"new b\n"
    assert not (journal_dir / "journal.json").exists()
    # a second run (a new batch: its own staged files): nothing to do, no reload
    (stage / "files" / "a.conf").write_bytes(b"new a\n")
    (stage / "files" / "b.conf").write_bytes(b"new b\n")
    reloads.clear()
    out = agent.apply(job, str(stage))
    assert reloads == [] and "recovered" not in out and not any(r["changed"] for r in out["results"].values())


def test_a_reload_that_fails_after_validation_restores_the_previous_files(
        tmp_path: Path, journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "a.conf"
    conf.write_bytes(b"old\n")
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "a.conf").write_bytes(b"new\n")
    calls: list[list[str]] = []

    def reload(sv: dict[str, Any], sockets: list[str]) -> str:
        calls.append(sockets)
        return "the master exited while reloading" if len(calls) == 1 else ""
    monkeypatch.setattr(agent, "reload", reload)
    job = {"op": "apply", "validate": ["true"], "reload": [{"name": "svc"}], "subs": [
        {"name": "a", "action": "ensure", "user": None, "files": {str(conf): "a.conf"}, "sockets": ["/run/x.sock"]}]}
    out = agent.apply(job, str(stage))
    assert out["results"]["a"]["ok"] is False
    assert "master exited" in out["results"]["a"]["message"] and "previous files restored" in out["results"]["a"]["message"]
    assert conf.read_bytes() == b"old\n"
    assert calls == [["/run/x.sock"], []]  # the reload, then one back onto the previous files
    assert not (journal_dir / "journal.json").exists()


def test_the_journal_keeps_any_bytes(journal_dir: Path) -> None:
    agent.journal({"/x": bytes(range(256)), "/y": None}, [["nginx", "-t"]], [])
    doc = json.loads((journal_dir / "journal.json").read_text())
    assert base64.b64decode(doc["files"]["/x"]) == bytes(range(256)) and doc["files"]["/y"] is None
