"""Failure modes of the hosting path without a server: every backend exception of the
SSH transport and of the agent's answer is mapped to ``TemporaryError`` or
``PermanentError`` (chained with ``raise ... from``), and every error names the server
and its address (issue 7 point 8). The agent's own behaviour (journal, transaction,
reloads) is tested in tests/agent/."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from controller import errors
from controller.agent import bundle, jobs
from controller.drivers import base, transport
from controller.drivers.context import Context
from controller.drivers.hosting import PhpDriver, WebDriver

# --- the transport ----------------------------------------------------------------------


class FakeRun:
    """Stands in for ``subprocess.run`` in the transport: one outcome per call."""

    def __init__(self, *outcomes: int | BaseException, stderr: bytes = b"boom on stderr") -> None:
        self.outcomes = list(outcomes)
        self.stderr = stderr
        self.calls = 0

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        stdout = kw.get("stdout")
        if stdout is not None and hasattr(stdout, "write"):
            stdout.write(b"partial")
        return subprocess.CompletedProcess(argv, outcome, b"out", self.stderr)


@pytest.fixture
def remote(tmp_path: Path) -> transport.Transport:
    return transport.Transport(tmp_path, tmp_path / "key", "192.0.2.1", name="web-1", attempts=2)


TIMEOUT = subprocess.TimeoutExpired(["ssh"], 300)


REFUSED = b"ssh: connect to host 192.0.2.1 port 22: Connection refused\n"
CUT = b"Connection to 192.0.2.1 closed by remote host.\n"


@pytest.mark.parametrize(("outcome", "stderr", "kind", "retried", "root"), [
    pytest.param(transport.SSH_FAILED, REFUSED, errors.TemporaryError, True, None, id="ssh-255-never-connected"),
    # a session cut, or a master ended under it, after the command may have started:
    # running the job again could run it twice at once (two `restic init` of a repository)
    pytest.param(transport.SSH_FAILED, CUT, errors.TemporaryError, False, None, id="ssh-255-session-cut"),
    pytest.param(transport.SSH_FAILED, b"", errors.TemporaryError, False, None, id="ssh-255-silent"),
    pytest.param(TIMEOUT, b"", errors.TemporaryError, False, subprocess.TimeoutExpired, id="no-answer-in-time"),
    pytest.param(FileNotFoundError(2, "ssh"), b"", errors.PermanentError, False, FileNotFoundError,
                 id="no-ssh-client"),
    pytest.param(PermissionError(13, "ssh"), b"", errors.PermanentError, False, PermissionError,
                 id="ssh-not-executable"),
])
def test_run_maps_every_failure_of_the_ssh_client(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport, outcome: int | BaseException, stderr: bytes,
        kind: type[errors.DriverError], retried: bool, root: type[BaseException] | None) -> None:
    fake = FakeRun(outcome, stderr=stderr)
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
    assert str(info.value).startswith("server web-1 (192.0.2.1): ssh: "), str(info.value)


def test_a_refused_connection_reads_like_ssh_said_it_naming_the_server(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport) -> None:
    def refused(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 255, b"", b"ssh: connect to host 192.0.2.1 port 22: Connection refused\n")
    monkeypatch.setattr(subprocess, "run", refused)
    with pytest.raises(errors.TemporaryError) as info:
        remote.run(["true"])
    assert str(info.value) == "server web-1 (192.0.2.1): ssh: connect to host 192.0.2.1 port 22: Connection refused"


def test_a_failed_connection_is_retried_and_a_later_success_returned(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport) -> None:
    fake = FakeRun(transport.SSH_FAILED, 0, stderr=REFUSED)
    monkeypatch.setattr(subprocess, "run", fake)
    assert remote.run(["true"]).returncode == 0 and fake.calls == 2


def test_a_remote_command_failing_is_the_callers_and_check_makes_it_permanent(
        monkeypatch: pytest.MonkeyPatch, remote: transport.Transport) -> None:
    monkeypatch.setattr(subprocess, "run", FakeRun(3))
    assert remote.run(["false"]).returncode == 3
    with pytest.raises(errors.PermanentError, match=r"^server web-1 \(192\.0\.2\.1\): false exited 3: boom on stderr"):
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
    assert str(info.value).startswith("server web-1 (192.0.2.1): ssh: ")
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
    """Stands in for a ``Transport``: the agent is installed, ``ship`` answers ``result``."""

    address = "192.0.2.1"
    label = "server s1 (192.0.2.1)"

    def __init__(self, result: transport.Completed | BaseException) -> None:
        self.result = result
        self.last_timings: dict[str, float] = {}
        self.jobs: list[dict[str, Any]] = []
        self.runs: list[list[str]] = []

    def run(self, argv: list[str], **kw: Any) -> transport.Completed:
        self.runs.append(argv)
        return transport.Completed(0, b"", b"")

    def ship(self, files: list[transport.File], then: list[str], **kw: Any) -> transport.Completed:
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


def answer(results: dict[str, Any] | None = None, **more: Any) -> bytes:
    return json.dumps({"version": 1, "results": results or {}, **more}).encode()


@pytest.mark.parametrize(("answer", "kind", "cause"), [
    pytest.param(done(1, stderr=b"Traceback ...\nOSError: [Errno 28] No space left"), errors.PermanentError, None,
                 id="agent-crashed"),
    pytest.param(done(2, stderr=b"tenantctl agent: refusing the job: job version 9"), errors.PermanentError, None,
                 id="agent-refuses-the-job"),
    pytest.param(done(127, stderr=b"sh: python3: not found"), errors.PermanentError, None, id="no-python-on-server"),
    pytest.param(done(137, stderr=b"Killed"), errors.TemporaryError, None, id="agent-sigkilled"),
    pytest.param(done(143), errors.TemporaryError, None, id="agent-sigtermed"),
    pytest.param(done(0, b"not json"), errors.PermanentError, ValueError, id="garbage-answer"),
    pytest.param(done(0, b""), errors.PermanentError, ValueError, id="empty-answer"),
    pytest.param(done(0, b"null"), errors.PermanentError, TypeError, id="json-null"),
    pytest.param(done(0, b"[1, 2]"), errors.PermanentError, TypeError, id="json-list"),
    pytest.param(done(0, b'{"results": {}}'), errors.PermanentError, TypeError, id="no-version"),
    pytest.param(done(0, answer(reloaded="nginx")), errors.PermanentError, TypeError, id="reloaded-not-a-list"),
    pytest.param(done(0, b'{"version": 1, "results": []}'), errors.PermanentError, TypeError,
                 id="results-not-object"),
    pytest.param(done(0, answer(seconds="soon")), errors.PermanentError, TypeError, id="seconds-not-a-number"),
    pytest.param(done(0, answer(phases={"x": None})), errors.PermanentError, TypeError, id="phase-not-a-number"),
    pytest.param(done(0, answer({"a.test": "yes"})), errors.PermanentError, TypeError, id="result-not-an-object"),
    pytest.param(done(0, answer({"a.test": {"message": "?"}})), errors.PermanentError, TypeError,
                 id="result-without-ok"),
    pytest.param(done(0, answer(surprise=1)), errors.PermanentError, ValueError, id="unknown-field"),
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
    if isinstance(answer, transport.Completed):
        assert str(info.value).startswith("server s1 (192.0.2.1): hosting agent"), str(info.value)
        if answer.stderr:
            assert answer.stderr.decode().splitlines()[-1] in str(info.value)
    if kind is errors.TemporaryError and isinstance(answer, transport.Completed):
        assert f"killed by signal {answer.returncode - 128}" in str(info.value)


def test_the_agent_is_installed_once_per_server_and_sent_again_only_if_the_server_lost_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_installed", set())

    class Fresh(FakeRemote):
        """A server without the agent at first."""

        def __init__(self) -> None:
            super().__init__(done(0, answer({"a.test": {"ok": True}})))
            self.has = False
            self.installs = 0

        def run(self, argv: list[str], **kw: Any) -> transport.Completed:
            self.runs.append(argv)
            return transport.Completed(0 if self.has else 1, b"", b"")

        def check(self, argv: list[str], **kw: Any) -> transport.Completed:
            assert kw["stdin"] == bundle.current().data and argv[-1] == bundle.current().remote_path
            self.has, self.installs = True, self.installs + 1
            return transport.Completed(0, b"", b"")

        def ship(self, files: list[transport.File], then: list[str], **kw: Any) -> transport.Completed:
            assert bundle.current().remote_path in then
            return super().ship(files, then) if self.has else done(transport.AGENT_MISSING)

    fake = Fresh()
    driver = PhpDriver(cast(Context, object()))
    driver._transports["s1"] = cast(transport.Transport, fake)
    for i in range(3):
        if i == 2:
            fake.has = False  # the server was rebuilt: the launcher says the agent is missing
        (res,) = driver.apply("s1", [change()])
        assert res.outcome == "provisioned", res
    # checked and installed on first use, not again, and once more when the server lost it
    assert (fake.installs, len(fake.runs), len(fake.jobs)) == (2, 2, 3)
    assert all(j["version"] == jobs.VERSION and j["op"] == "apply" for j in fake.jobs)


def test_drift_check_answers_are_checked_too() -> None:
    with pytest.raises(errors.PermanentError):
        php_with(done(0, b'{"version": 1, "drift": []}')).drifted("s1", [change()])
    assert php_with(done(0, answer(drift={"a.test": "x missing"}))).drifted("s1", [change()]) == {
        "a.test": "x missing"}


@pytest.mark.parametrize(("entry", "outcome", "message"), [
    pytest.param({"ok": True, "message": ""}, "provisioned", "", id="ok"),
    pytest.param({"ok": False, "message": "php-fpm: [pool wa] bad"}, "failed", "php-fpm: [pool wa] bad", id="failed"),
    pytest.param(None, "failed", "the agent returned no result", id="missing"),
])
def test_each_subscription_gets_its_own_result(entry: object, outcome: str, message: str) -> None:
    out = answer({} if entry is None else {"a.test": entry}, seconds=0.1)
    (res,) = php_with(done(0, out)).apply("s1", [change()])
    assert (res.outcome, res.message) == (outcome, message)


def test_web_deletes_map_driver_errors_to_a_failed_result_not_an_exception(tmp_path: Path) -> None:
    ctx = cast(Context, type("Ctx", (), {"state_dir": tmp_path})())
    web = WebDriver(ctx)
    web._transports["s1"] = cast(transport.Transport, FakeRemote(errors.TemporaryError("unreachable")))
    (res,) = web.apply("s1", [base.Change("a.test", "delete", {"name": "a.test"})])
    assert res.outcome == "failed" and "nothing removed" in res.message


@pytest.mark.parametrize(("os_", "expect"), [
    pytest.param("debian-12", ["8.2"], id="bookworm"),
    pytest.param("debian-13", ["8.4"], id="trixie"),
])
def test_a_deleted_pool_is_looked_for_under_the_php_of_the_servers_release(
        tmp_path: Path, os_: str, expect: list[str]) -> None:
    """Deleting a subscription validates with ``php-fpmX -t`` and reloads ``phpX-fpm``
    of the version the role installed there (``kinds.RELEASES``): a trixie server has
    no 8.2."""
    from controller import model
    from controller.drivers.hosting import drivers as hosting_drivers

    doc = tmp_path / "servers.yaml"
    doc.write_text(
        "apiVersion: tenantctl.io/v1\nkind: Region\nmetadata: {name: eu}\nspec: {timezone: UTC}\n---\n"
        "apiVersion: tenantctl.io/v1\nkind: Server\nmetadata: {name: web-1}\n"
        f"spec: {{region: eu, provider: docker, os: {os_}, address: 127.0.0.9,"
        " ips: [{address: 127.0.0.9, type: shared}], roles: [web]}\n")
    ctx = Context.of(model.load_desired([doc]), tmp_path)
    assert hosting_drivers._versions(ctx, "web-1") == expect
