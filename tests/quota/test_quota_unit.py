"""RES-3 without a server: the hard quota file the web driver renders (from
``resources.diskMB`` when the effective spec asks for a hard quota, none otherwise) and
the ``setquota`` calls the hosting agent makes of it (set, kept, lifted when the file
goes, one failing item only). The kernel side cannot run here: see README, "Hard disk
quotas" (the test machine's kernel has no quota support)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.agent import files as agent_files
from controller.agent import jobs
from controller.drivers import naming
from controller.drivers.context import Context
from controller.drivers.hosting import WebDriver, render
from controller.drivers.hosting import agent as hosting_agent
from controller.effective import spec

SUB = "ex.com"


def web_slice(hard: bool = True, disk: Any = 1024, **over: Any) -> Any:
    it = spec.sketch({"name": SUB, "region": "eu", "server": "web-1", "ip": "192.0.2.10",
                      "effective": {"hosting": {"hardQuota": hard}, "resources": {"diskMB": disk}}, **over})
    return WebDriver(Context(state_dir=Path("/nonexistent"), servers={})).slice(it)


def test_a_hard_quota_is_diskmb_in_kib() -> None:
    text = render.quota(SUB, web_slice())
    assert text is not None
    assert [ln for ln in text.splitlines() if not ln.startswith("#")] == [str(1024 * 1024)]
    assert hosting_agent.quota_limit(text.encode()) == 1024 * 1024
    assert render.quota_path(SUB) == f"{hosting_agent.QUOTA_DIR}/{naming.system_user(SUB)}"


@pytest.mark.parametrize("sl", [
    pytest.param(dict(hard=False), id="not-asked"),
    pytest.param(dict(disk="unlimited"), id="unlimited-disk"),
    pytest.param(dict(effective={"hosting": {"hardQuota": True, "enabled": False}, "resources": {"diskMB": 5}}),
                 id="hosting-off-HOST-1"),
])
def test_no_quota_file_without_a_hard_limit(sl: dict[str, Any]) -> None:
    assert render.quota(SUB, web_slice(**sl)) is None


def test_kept_while_suspended_data_stays() -> None:
    assert render.quota(SUB, web_slice(state="suspended")) is not None


class FakeRun:
    """Records the agent's commands; ``setquota`` fails for ``failing`` users (a file
    system without quotas answers like this)."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.failing = failing

    def __call__(self, argv: list[str], timeout: float | None = None) -> tuple[int, str]:
        self.calls.append(argv)
        if argv[0] == "findmnt":
            return 0, "/srv/www\n"
        if argv[0] == "setquota" and argv[2] in self.failing:
            return 1, "setquota: Mountpoint (or device) /srv/www not found or has no quota enabled."
        return 0, ""


def item(name: str, quota_src: str | None) -> jobs.Item:
    user = naming.system_user(name)
    return jobs.Item(name, files=[jobs.File(f"{hosting_agent.QUOTA_DIR}/{user}", quota_src)],
                     user=jobs.User(user, naming.home(name)))


def test_the_agent_sets_keeps_and_lifts_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosting_agent, "QUOTA_DIR", str(tmp_path))
    fake = FakeRun(failing=frozenset({naming.system_user("c.com")}))
    monkeypatch.setattr(agent_files, "run", fake)
    a, b, c, d = item("a.com", "files/a.quota"), item("b.com", None), item("c.com", "files/c.quota"), item("d.com", None)
    e = jobs.Item("e.com", "delete", files=[jobs.File(f"{tmp_path}/{naming.system_user('e.com')}", None)],
                  user=jobs.User(naming.system_user("e.com"), naming.home("e.com")))
    (tmp_path / naming.system_user("a.com")).write_text("# managed\n2048\n")
    (tmp_path / naming.system_user("c.com")).write_text("10\n")
    # b had a limit: lifted; d never had one; e is deleted: lifted before its user goes
    before = {f"{tmp_path}/{naming.system_user('b.com')}", f"{tmp_path}/{naming.system_user('e.com')}"}
    results = {n: jobs.ItemResult(True) for n in ("a.com", "b.com", "c.com", "d.com", "e.com")}
    job = jobs.Job(jobs.VERSION, "apply", items=[a, b, c, d, e])
    hosting_agent.set_quotas(job, before, results)
    setq = [argv for argv in fake.calls if argv[0] == "setquota"]
    assert setq == [["setquota", "-u", naming.system_user("a.com"), "0", "2048", "0", "0", "/srv/www"],
                    ["setquota", "-u", naming.system_user("b.com"), "0", "0", "0", "0", "/srv/www"],
                    ["setquota", "-u", naming.system_user("c.com"), "0", "10", "0", "0", "/srv/www"],
                    ["setquota", "-u", naming.system_user("e.com"), "0", "0", "0", "0", "/srv/www"]]
    assert [argv[0] for argv in fake.calls].count("findmnt") == 1
    assert results["a.com"].ok and results["b.com"].ok and results["d.com"].ok
    assert not results["c.com"].ok and "has no quota enabled" in results["c.com"].message


@pytest.mark.parametrize("data", [pytest.param(b"12\n13\n", id="two-lines"), pytest.param(b"-5\n", id="negative"),
                                  pytest.param(b"1; rm -rf /\n", id="not-a-number")])
def test_a_malformed_quota_file_is_never_passed_on(data: bytes) -> None:
    with pytest.raises(RuntimeError, match="malformed"):
        hosting_agent.quota_limit(data)
