"""Issue 10 leftovers, without servers.

Fencing, the drivers' side: the hosting and tls drivers' jobs carry the generations of
the engine's view (``use_generations``), and a subscription the agent refused (its
answer's ``fenced``) is a permanent failure naming both generations; a job refused whole
is ``transport.Fenced`` (a ``PermanentError``). The agent's answers here are JSON as the
agent prints them, through a FAKE remote.

PostgreSQL archiving after an evacuation: a repository host that does not answer (the
lost region's) is left out of the db host's pgBackRest configuration, so archiving into
the repository that answers starts at once; once it answers again it is back
(``conf.without``/``answering``, ``pgpitr.ensure`` with a FAKE ``_configure``/``run``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from controller import errors
from controller.agent import jobs
from controller.agent import pgpitrjobs as pj
from controller.drivers import base, transport
from controller.drivers.backup import pgpitr, topology
from controller.drivers.context import Context, Region, Server
from controller.drivers.hosting import PhpDriver
from controller.drivers.pgpitr import conf
from controller.drivers.tls import TlsDriver
from controller.drivers.tls import settings as settings_mod


class FakeRemote:
    """FAKE ``Transport``: the agent is installed; ``ship`` records the job and answers
    ``stdout`` (an agent's printed ``Outcome``)."""

    address = "192.0.2.1"
    label = "server s1 (192.0.2.1)"

    def __init__(self, stdout: dict[str, Any]) -> None:
        self.stdout = json.dumps(stdout).encode()
        self.last_timings: dict[str, float] = {}
        self.jobs: list[dict[str, Any]] = []

    def run(self, argv: list[str], **kw: Any) -> transport.Completed:
        return transport.Completed(0, b"", b"")

    def ship(self, files: list[transport.File], then: list[str], **kw: Any) -> transport.Completed:
        self.jobs.append(json.loads(next(f.data for f in files if f.path == "job.json") or b"{}"))
        return transport.Completed(0, self.stdout, b"")

    def close(self) -> None:
        pass


def outcome(results: dict[str, tuple[bool, str]], fenced: dict[str, tuple[int, int]]) -> dict[str, Any]:
    return {"version": jobs.VERSION, "results": {n: {"ok": ok, "message": m} for n, (ok, m) in results.items()},
            "fenced": {n: {"seen": s, "sent": g} for n, (s, g) in fenced.items()}}


REFUSED = "fenced: a.test is at generation 3 on this server, the job carries generation 2 (stale)"


def php_change(name: str) -> base.Change[Any]:
    sl = {"server": "s1", "state": "active", "enabled": True, "sites": [], "permissions": {},
          "php": {"handler": "fpm", "version": "8.2", "settings": {"memory_limit": "128M"}}}
    return base.Change(name, "ensure", sl)


def php(answer: dict[str, Any]) -> tuple[PhpDriver, FakeRemote]:
    driver = PhpDriver(cast(Context, object()))
    remote = FakeRemote(answer)
    driver._transports["s1"] = cast(transport.Transport, remote)
    driver.use_generations({"a.test": 2})
    return driver, remote


def test_a_refused_subscription_of_a_batch_fails_permanently_the_others_are_provisioned() -> None:
    driver, remote = php(outcome({"a.test": (False, REFUSED), "b.test": (True, "")}, {"a.test": (3, 2)}))
    results = {r.name: r for r in driver.apply("s1", [php_change("a.test"), php_change("b.test")])}
    assert remote.jobs[0]["generations"] == {"a.test": 2, "b.test": 1}  # the view; 1: never moved
    a = results["a.test"]
    assert a.outcome == "failed" and a.permanent
    assert "a.test is at generation 3 on this server, the job carries generation 2" in a.message
    assert results["b.test"].outcome == "provisioned"


def test_a_batch_refused_whole_is_a_fenced_permanent_error() -> None:
    driver, _remote = php(outcome({"a.test": (False, REFUSED)}, {"a.test": (3, 2)}))
    with pytest.raises(transport.Fenced) as info:
        driver.apply("s1", [php_change("a.test")])
    assert isinstance(info.value, errors.PermanentError) and info.value.refused == {"a.test": jobs.Fenced(3, 2)}
    assert "server s1 (192.0.2.1): hosting agent: fenced: a.test is at generation 3" in str(info.value)


def test_a_refused_certificate_install_fails_permanently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drv = TlsDriver(Context(tmp_path, {}), settings_mod.Settings(
        directory="https://ca.invalid/dir", challenge="http-01", dns01=frozenset()))
    remote = FakeRemote(outcome({"a.test": (False, REFUSED), "b.test": (True, "")}, {"a.test": (3, 2)}))
    drv._transports["s1"] = cast(transport.Transport, remote)
    drv.use_generations({"a.test": 2, "b.test": 5})
    monkeypatch.setattr(drv, "_files", lambda c: [])
    # deletions: a stale controller removing a moved subscription's certificate
    gone = cast(Any, {})
    got = drv._install("s1", [base.Change("a.test", "delete", gone), base.Change("b.test", "delete", gone)])
    assert remote.jobs[0]["generations"] == {"a.test": 2, "b.test": 5}
    assert got["a.test"].permanent and "installing into nginx refused: fenced" in got["a.test"].message
    assert "b.test" not in got  # removed: the caller's own result stands


# --- PostgreSQL archiving into the repositories that answer ----------------------------


def topo(tmp_path: Path) -> topology.Topology:
    servers = {
        "db-us": Server("db-us", "us", "docker", "127.0.119.1", ("db-postgresql", "web"), ()),
        "bk-us": Server("bk-us", "us", "docker", "127.0.119.2", ("backup",), ()),
        "db-eu": Server("db-eu", "eu", "docker", "127.0.119.3", ("db-postgresql", "web"), ()),
        "bk-eu": Server("bk-eu", "eu", "docker", "127.0.119.4", ("backup",), ()),
    }
    return topology.Topology.of(Context(tmp_path, servers, {"eu": Region("eu"), "us": Region("us")}))


def test_a_stanza_keeps_the_repositories_that_answer_with_their_indexes(tmp_path: Path) -> None:
    every = pgpitr.stanzas(topo(tmp_path))
    us = next(s for s in every if s.name == "db-us")
    assert [(r.index, r.host) for r in us.repos] == [(1, "bk-us"), (2, "bk-eu")]
    narrowed = conf.without(us, {"bk-eu"})
    assert [(r.index, r.region, r.host) for r in narrowed.repos] == [(1, "us", "bk-us")]
    assert conf.without(us, {"bk-us"}).repos == (conf.Repo(2, "eu", "bk-eu"),)  # index 2 stays index 2
    assert conf.without(us, {"nobody"}) is us
    assert conf.without(us, {"bk-us", "bk-eu"}) is us  # nothing answers: unchanged, its archiving fails
    eu = next(s for s in every if s.name == "db-eu")
    assert eu.readers == (("db-us", 2),)
    # the lost region's own stanza (its db host down) is unchanged: bk-us keeps serving
    # its archive to the recovery on db-us
    assert conf.answering(every, {"bk-eu", "db-eu"}) == [eu, narrowed]
    # an answering stanza without the lost repository drops its readers of it
    eu_narrowed = conf.without(eu, {"bk-us"})
    assert eu_narrowed.repos == (conf.Repo(1, "eu", "bk-eu"),) and eu_narrowed.readers == ()


def test_the_db_hosts_configuration_names_only_the_repository_that_answers(tmp_path: Path) -> None:
    us = next(s for s in pgpitr.stanzas(topo(tmp_path)) if s.name == "db-us")
    full = conf.render("db-us", "127.0.119.1", [us])
    assert "repo2-host=bk-eu" in full
    narrowed = conf.render("db-us", "127.0.119.1", conf.answering([us], {"bk-eu"}))
    assert "repo1-host=bk-us" in narrowed and "repo2" not in narrowed and "bk-eu" not in narrowed


class FakeHosts:
    """FAKE ``pgpitr._configure`` and ``pgpitr.run``: records each host's rendered
    configuration and each agent job; the hosts of ``down`` do not answer (the SSH
    error of an unreachable server)."""

    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.configured: list[tuple[str, str]] = []
        self.jobs: list[tuple[str, pj.PgPitrJob]] = []

    def configure(self, topo_: topology.Topology, pool: Any, host: str, every: list[conf.Stanza]) -> bool:
        if host in self.down:
            raise errors.TemporaryError(f"server {host}: ssh: connect to host: Connection refused")
        self.configured.append((host, conf.render(host, topo_.ctx.servers[host].address, every)))
        return True

    def run(self, pool: Any, server: str, job: pj.PgPitrJob, staged: Sequence[transport.File] = (), *,
            timeout: float = 0.0) -> pj.PgPitrOutcome:
        self.jobs.append((server, job))
        return pj.PgPitrOutcome(True)


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> FakeHosts:
    fake = FakeHosts(set())
    monkeypatch.setattr(pgpitr, "_configure", fake.configure)
    monkeypatch.setattr(pgpitr, "run", fake.run)
    return fake


def test_archiving_starts_into_the_repository_that_answers_and_the_other_comes_back(
        tmp_path: Path, hosts: FakeHosts) -> None:
    t = topo(tmp_path)
    hosts.down = {"bk-eu", "db-eu"}  # eu lost: db-us holds eu's databases now
    got = pgpitr.ensure(t, None, ["db-us"])  # type: ignore[arg-type]
    assert got["db-us"].startswith("archiving into us only: the repository of eu (bk-eu: server bk-eu: ssh:")
    assert got["db-us"].endswith("does not answer; it is added when it answers")
    last = [text for host, text in hosts.configured if host == "db-us"][-1]
    assert "repo1-host=bk-us" in last and "repo2" not in last
    assert [(s, j.action) for s, j in hosts.jobs] == [("db-us", "archive")]  # archiving goes on now
    # eu answers again: both repositories, nothing left to say
    hosts.down, hosts.configured, hosts.jobs = set(), [], []
    assert pgpitr.ensure(t, None, ["db-us"]) == {"db-us": ""}  # type: ignore[arg-type]
    [(_, final)] = [(h, text) for h, text in hosts.configured if h == "db-us"]
    assert "repo1-host=bk-us" in final and "repo2-host=bk-eu" in final
    assert [(s, j.action) for s, j in hosts.jobs] == [("db-us", "archive")]


@pytest.mark.parametrize(("down", "problem"), [
    pytest.param({"db-us"}, "db-us: server db-us: ssh", id="db-host-down"),
    pytest.param({"bk-us", "bk-eu"}, "bk-eu: server bk-eu: ssh", id="every-repository-down"),
])
def test_no_archiving_without_the_db_host_or_any_repository(tmp_path: Path, hosts: FakeHosts, down: set[str],
                                                            problem: str) -> None:
    hosts.down = down
    got = pgpitr.ensure(topo(tmp_path), None, ["db-us"])  # type: ignore[arg-type]
    assert problem in got["db-us"] and not hosts.jobs


def test_a_repository_that_answers_with_an_error_is_not_left_out(tmp_path: Path, hosts: FakeHosts,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(topo_: topology.Topology, pool: Any, host: str, every: list[conf.Stanza]) -> bool:
        if host == "bk-eu":
            raise errors.PermanentError("server bk-eu: pgpitr configure: pgbackrest server did not start")
        return True
    monkeypatch.setattr(pgpitr, "_configure", broken)
    got = pgpitr.ensure(topo(tmp_path), None, ["db-us"])  # type: ignore[arg-type]
    assert got == {"db-us": "bk-eu: server bk-eu: pgpitr configure: pgbackrest server did not start"}
    assert not hosts.jobs
