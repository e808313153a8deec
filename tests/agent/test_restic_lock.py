"""restic 0.14 has no ``--retry-lock``: a command that needs the repository's exclusive
lock (forget, prune) waits ``lock_wait`` seconds for another restic on the repository
(a copy, a check, a restore drill) instead of failing at once; any other failure, or a
lock that outlasts the wait, fails at once with restic's message. The restic runs are a
fake (``LockedRepo``): the real lock contention is what tests/backup/test_live.py met."""

from __future__ import annotations

import time

import pytest

from controller.agent import restic

LOCKED = ("unable to create lock in backend: repository is already locked by PID 3964 on vm by root "
          "(UID 0, GID 0)\nlock was created at 2026-12-01 03:40:05 (20.1s ago)")


class LockedRepo(restic.Restic):
    """A fake repository: each run answers the next of ``results``."""

    label = "eu-west"

    def __init__(self, results: list[restic.Result]) -> None:
        self.results = results
        self.calls = 0

    def run(self, args: list[str], *, source: restic.Restic | None = None,
            timeout: float | None = None) -> restic.Result:
        self.calls += 1
        return self.results.pop(0)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_a_locked_repository_is_tried_again_until_it_is_free(no_sleep: list[float]) -> None:
    repo = LockedRepo([restic.Result(1, "", LOCKED), restic.Result(1, "", LOCKED), restic.Result(0, "ok", "")])
    assert repo.check(["forget", "abc"], lock_wait=60).out == "ok"
    assert repo.calls == 3 and no_sleep == [3.0, 3.0]


def test_without_a_lock_wait_or_for_another_failure_it_fails_at_once() -> None:
    repo = LockedRepo([restic.Result(1, "", LOCKED)])
    with pytest.raises(restic.Failed, match=r"eu-west: restic forget failed: .*already locked"):
        repo.check(["forget", "abc"])
    repo = LockedRepo([restic.Result(1, "", "Fatal: wrong password or no key found")])
    with pytest.raises(restic.Failed, match="wrong password"):
        repo.check(["forget", "abc"], lock_wait=60)
    assert repo.calls == 1


def test_a_lock_that_outlasts_the_wait_fails_with_restic_s_message(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 50))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    repo = LockedRepo([restic.Result(1, "", LOCKED)] * 10)
    with pytest.raises(restic.Failed, match="already locked"):
        repo.check(["prune"], lock_wait=120)
    assert 2 <= repo.calls <= 4
