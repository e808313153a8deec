"""Which database servers archive for point-in-time recovery (BKP-4): those holding a
database of a subscription whose plan has ``backup.pitr`` (drivers/backup/pitr.py); and
what a recovery in another region needs after the loss of a server's region (DR-1): who
may read its stanza there, the configuration that reads it, where a recovery to the end
of the archive stopped."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest

from controller.drivers import transport
from controller.drivers.backup import pgpitr, pitr, topology
from controller.drivers.context import Context, Region, Server
from controller.drivers.pgpitr import agent as pgagent
from controller.drivers.pgpitr import conf


def item(name: str, pitr_on: bool, *dbs: tuple[str, str, str | None], state: str = "active") -> dict[str, Any]:
    return {"name": name, "state": state, "effective": {
        "backup": {"pitr": pitr_on},
        "databases": [{"name": n, "engine": e, "server": s} for n, e, s in dbs]}}


def test_only_the_servers_of_pitr_subscriptions_databases_archive() -> None:
    items = [
        item("a.example.org", True, ("shop", "mariadb", "db-1"), ("ledger", "postgresql", "db-2")),
        item("b.example.org", False, ("shop", "mariadb", "db-3")),
        item("c.example.org", True, ("x", "postgresql", "db-2"), ("unplaced", "mariadb", None)),
        item("d.example.org", True, ("gone", "mariadb", "db-4"), state="deleted"),
    ]
    assert pitr.servers(items) == {"postgresql": ["db-2"], "mariadb": ["db-1"]}
    assert pitr.wanted(items[0]) and not pitr.wanted(items[1]) and not pitr.wanted({"name": "x"})


# --- recovery in another region after the loss of a server's region (DR-1) ----------------------


def two_regions(tmp_path: Path) -> topology.Topology:
    servers = {
        "db-a": Server("db-a", "eu", "docker", "127.0.102.1", ("db-postgresql",), ()),
        "bk-a": Server("bk-a", "eu", "docker", "127.0.102.2", ("backup",), ()),
        "bk-b": Server("bk-b", "us", "docker", "127.0.103.1", ("backup",), ()),
        "db-b": Server("db-b", "us", "docker", "127.0.103.2", ("db-postgresql",), ()),
        "db-c": Server("db-c", "eu", "docker", "127.0.102.3", ("db-postgresql",), ()),
    }
    return topology.Topology.of(Context(tmp_path, servers, {"eu": Region("eu"), "us": Region("us")}))


def test_the_copy_regions_db_servers_may_read_a_stanza_from_its_repository_there(tmp_path: Path) -> None:
    t = two_regions(tmp_path)
    st = pgpitr.stanza_of(t, "db-a")
    assert st is not None and st.readers == (("db-b", 2),)  # not db-c: its region is lost with db-a
    every = pgpitr.stanzas(t)

    def auth(host: str, addr: str) -> list[str]:
        return [x for x in conf.render(host, addr, every).splitlines() if x.startswith("tls-server-auth")]
    # us-east's repository: db-b reads every eu stanza it holds, besides its own
    assert auth("bk-b", "127.0.103.1") == ["tls-server-auth=db-a=db-a", "tls-server-auth=db-b=db-a,db-b,db-c",
                                           "tls-server-auth=db-c=db-c"]
    # eu's repository: the eu servers read db-b's copy there (us lost), db-b only its own stanza
    assert auth("bk-a", "127.0.102.2") == ["tls-server-auth=db-a=db-a,db-b", "tls-server-auth=db-b=db-b",
                                           "tls-server-auth=db-c=db-b,db-c"]
    with pytest.raises(ValueError, match="reader db-b of repository 3"):
        conf.Stanza("db-a", "db-a", (conf.Repo(1, "eu", "bk-a"),), readers=(("db-b", 3),))


@pytest.mark.parametrize(("host", "expected", "absent"), [
    pytest.param("db-b", {"repo2-host=bk-b", "repo2-host-type=tls", "repo2-path=/var/lib/pgbackrest"}, "repo1",
                 id="over-tls-from-the-repository-host"),
    pytest.param("bk-b", {"repo2-path=/var/lib/pgbackrest"}, "repo2-host", id="local-on-the-repository-host"),
])
def test_a_recovery_configuration_reads_one_repository_and_no_database_host(
        tmp_path: Path, host: str, expected: set[str], absent: str) -> None:
    st = pgpitr.stanza_of(two_regions(tmp_path), "db-a")
    assert st is not None
    text = conf.recovery(st, host, 2)
    section = [x for x in text.split("[db-a]", 1)[1].splitlines() if x]
    assert expected <= set(section), section
    assert not any(x.startswith(absent) for x in section) and not any(x.startswith("pg1-") for x in section)
    with pytest.raises(ValueError):
        conf.recovery(st, "db-b\n[global]", 2)


@pytest.mark.parametrize(("log", "expected"), [
    pytest.param("redo done at 0/3000100; last completed transaction was at log time 2026-12-01 02:41:07.512334+00",
                 dt.datetime(2026, 12, 1, 2, 41, 7, 512334, tzinfo=dt.UTC), id="end-of-archive"),
    pytest.param("last completed transaction was at log time 2026-12-01 03:41:07+01", dt.datetime(
        2026, 12, 1, 2, 41, 7, tzinfo=dt.UTC), id="another-zone"),
    pytest.param("redo done at 0/3000100", None, id="no-transaction-said"),
])
def test_the_last_replayed_transaction_is_the_recovered_point(log: str, expected: dt.datetime | None) -> None:
    assert pgpitr.last_transaction(log) == expected


@pytest.mark.parametrize(("where", "latest", "ok"), [
    pytest.param("recovery stopping before commit of transaction 750", False, True, id="target-reached"),
    pytest.param("redo done at 0/3000100", False, False, id="target-never-reached"),
    pytest.param("redo done at 0/3000100; last completed transaction was at log time x", True, True,
                 id="end-of-archive"),
    pytest.param("", True, False, id="nothing-said"),
])
def test_a_recovery_is_finished_at_its_target_or_at_the_end_of_the_archive(where: str, latest: bool,
                                                                           ok: bool) -> None:
    assert pgagent.finished(where, latest) is ok


def test_an_archive_of_another_postgresql_major_version_is_refused_before_anything(tmp_path: Path) -> None:
    """A physical backup recovers with its own major version only: the evacuation then
    restores that database from its nightly dump instead (``OutOfRange``, nothing asked
    of any server: there is no pool)."""
    t = two_regions(tmp_path)
    servers = dict(t.ctx.servers)
    servers["db-b"] = dataclasses.replace(servers["db-b"], pg_version="17")
    t = topology.Topology.of(Context(tmp_path, servers, {"eu": Region("eu"), "us": Region("us")}))
    with pytest.raises(pgpitr.OutOfRange, match="archive is of PostgreSQL 15, db-b runs 17"):
        pgpitr.recover_latest(t, cast(transport.Pool, None), "db-b", "db-a", "shop_db", "us")
