"""PostgreSQL PITR per Debian release (issue 13): a db server's PostgreSQL major version
comes from one place, its ``os``'s release (``kinds.RELEASES``), through
``context.Server.pg_version`` into its stanza and into every ``pgpitr`` job that touches
its cluster; the agent refuses a job that names none instead of guessing. No servers:
the controller's jobs are captured by a fake ``run``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.agent import jobs
from controller.agent import pgpitrjobs as pj
from controller.drivers import context, transport
from controller.drivers.backup import pgpitr, topology
from controller.drivers.pgpitr import agent, conf, info
from controller.model import kinds
from controller.model.desired import DesiredState

AT = dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC)


def fake_parse(text: str, stanza: str) -> info.Stanza:
    """A stanza with one sound full backup in repository 1, ended an hour before ``AT``."""
    full = info.Backup("20261130-080000F", "full", 1, AT - dt.timedelta(hours=2), AT - dt.timedelta(hours=1), "0/3")
    return info.Stanza(stanza, 0, "ok", (full,), {1: ("0" * 24, "0" * 23 + "9")}, {1: (0, "ok")})


def server(address: str, roles: list[str], os: str | None = None, region: str = "eu") -> kinds.ServerSpec:
    doc: dict[str, Any] = {"region": region, "provider": "docker", "address": address,
                           "ips": [{"address": address}], "roles": roles}
    if os is not None:
        doc["os"] = os
    return kinds.ServerSpec.model_validate(doc)


def topo(tmp_path: Path) -> topology.Topology:
    ds = DesiredState(
        regions={"eu": kinds.RegionSpec(), "us": kinds.RegionSpec()},
        servers={"db-12": server("127.0.116.1", ["db-postgresql"]),
                 "db-13": server("127.0.116.2", ["db-postgresql"], "debian-13"),
                 "bk-eu": server("127.0.116.3", ["backup"], "debian-13"),
                 "bk-us": server("127.0.116.4", ["backup"], "debian-12", "us")})
    return topology.Topology.of(context.Context.of(ds, tmp_path))


class FakeRun:
    """Records the jobs the controller sends (no agent); answers like a sound one."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, pj.PgPitrJob]] = []

    def __call__(self, pool: transport.Pool, host: str, job: pj.PgPitrJob,
                 staged: Sequence[transport.File] = (), *, timeout: float = 0.0) -> pj.PgPitrOutcome:
        self.sent.append((host, job))
        return pj.PgPitrOutcome(True, last_archived_time=str(AT.timestamp()), switched_at=str(AT.timestamp() + 60))


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    fake = FakeRun()
    monkeypatch.setattr(pgpitr, "run", fake)
    monkeypatch.setattr(info, "parse", fake_parse)
    return fake


@pytest.mark.parametrize(("name", "version"), [pytest.param("db-12", "15", id="bookworm"),
                                               pytest.param("db-13", "17", id="trixie")])
def test_the_version_comes_from_the_servers_release(tmp_path: Path, name: str, version: str) -> None:
    t = topo(tmp_path)
    assert t.ctx.servers[name].pg_version == version
    st = pgpitr.stanza_of(t, name)
    assert st is not None and st.pg_version == version
    for host in st.hosts():  # the db host and each repository host name the same cluster
        assert f"pg1-path=/var/lib/postgresql/{version}/main\n" in conf.render(host, "127.0.116.9", [st])


def test_every_job_on_a_trixie_cluster_names_postgresql_17(tmp_path: Path, fake_run: FakeRun) -> None:
    t = topo(tmp_path)
    pool: Any = None
    pgpitr.lag(t, pool, ["db-13", "db-12"])
    assert pgpitr.recover(t, pool, "db-13", "shop_1234abcd", AT).base_backup == "20261130-080000F"
    sent = {(host, job.action): job for host, job in fake_run.sent}
    assert sent["db-13", "lag"].pg_version == "17" and sent["db-12", "lag"].pg_version == "15"
    assert sent["db-13", "info"].pg_version == "17" and sent["db-13", "info"].switch
    assert sent["db-13", "recover"].pg_version == "17"


def test_archiving_writes_the_conf_d_of_the_servers_cluster(tmp_path: Path, fake_run: FakeRun,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgpitr, "_configure", lambda *a: True)
    assert pgpitr.ensure(topo(tmp_path), None, ["db-13"]) == {"db-13": ""}  # type: ignore[arg-type]
    [(host, job)] = [(h, j) for h, j in fake_run.sent if j.action == "archive"]
    assert host == "db-13" and job.pg_version == "17"
    assert [f.dest for f in job.files] == ["/etc/postgresql/17/main/conf.d/tenantctl-pitr.conf"]


def test_the_job_carries_the_version_through_the_wire_format() -> None:
    job = jobs.Job(jobs.VERSION, "pitr", pgpitr=pj.PgPitrJob(action="lag", stanza="db-13", pg_version="17"))
    back = jobs.decode(jobs.Job, jobs.encode(job))
    assert back.pgpitr is not None and back.pgpitr.pg_version == "17"


@pytest.mark.parametrize(("version", "message"), [
    pytest.param("", "names no PostgreSQL version", id="missing"),
    pytest.param("17/main\nx", "not a PostgreSQL major version", id="injected"),
    pytest.param("9.6", "not a PostgreSQL major version", id="not-two-digits"),
])
@pytest.mark.parametrize("action", ["archive", "info", "lag", "recover"])
def test_the_agent_refuses_a_cluster_job_without_a_valid_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str, version: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)  # handle() moves to / (restored after the test)
    monkeypatch.setattr(agent, "_ids", lambda: (0, 0))  # no postgres user needed
    job = pj.PgPitrJob(action=action, stanza="db-13", pg_version=version, repo=1, database="shop_1234abcd",
                       target="2026-11-30 10:00:00.000000+00", backup_set="20261130-100000F")
    out = agent.handle(jobs.Job(jobs.VERSION, "pitr", pgpitr=job), str(tmp_path)).pgpitr
    assert out is not None and not out.ok and message in out.message, out


def test_the_agent_writes_only_the_conf_d_of_the_jobs_version(tmp_path: Path) -> None:
    (tmp_path / "pitr.conf").write_text("archive_mode = on\n")
    other = pj.ConfFile(pj.pg_conf("15"), "pitr.conf")
    with pytest.raises(agent.Problem, match="not a file this agent writes"):
        agent._install(other, str(tmp_path), 0, 0, "17")
    with pytest.raises(agent.Problem, match="not a file this agent writes"):
        agent._install(other, str(tmp_path), 0, 0)  # configure (no version) never writes a cluster's file


@pytest.mark.parametrize("os", list(kinds.RELEASES))
def test_each_release_names_paths_of_its_own_cluster(os: str) -> None:
    v = kinds.RELEASES[os].postgresql
    paths = [pj.pg_data(v), pj.pg_bin(v), pj.pg_conf(v), pj.scratch(v)]
    assert all(f"/{v}/" in p for p in paths), paths
    assert agent.scratch_conf(pj.scratch(v)).decode().count(f"/{v}/tenantctl-pitr-scratch'") == 1


def test_a_stanza_without_a_version_is_the_default_releases() -> None:
    st = conf.Stanza("db-a", "db-a", (conf.Repo(1, "eu", "bk-a"),))
    assert st.pg_version == kinds.RELEASES[kinds.DEFAULT_OS].postgresql
    with pytest.raises(ValueError, match="PostgreSQL version"):
        conf.Stanza("db-a", "db-a", (conf.Repo(1, "eu", "bk-a"),), pg_version="1")
