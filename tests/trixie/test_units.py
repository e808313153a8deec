"""Pure parts of trixie support (issue 13): the release table, the PITR configuration of a
PostgreSQL 17 server. No engine, no servers."""

from __future__ import annotations

import pytest

from controller.agent import pgpitrjobs as pj
from controller.drivers.pgpitr import conf
from controller.model import kinds


def stanza(**kw: str) -> conf.Stanza:
    return conf.Stanza("db-a", "db-a", (conf.Repo(1, "eu", "bk-a"),), **kw)


@pytest.mark.parametrize(
    ("os", "suite", "php", "postgresql"),
    [pytest.param("debian-12", "bookworm", "8.2", "15", id="debian-12"),
     pytest.param("debian-13", "trixie", "8.4", "17", id="debian-13")],
)
def test_each_os_names_its_release(os: str, suite: str, php: str, postgresql: str) -> None:
    server = kinds.ServerSpec.model_validate({"region": "eu", "provider": "docker", "address": "127.0.115.9",
                                              "ips": [{"address": "127.0.115.9"}], "roles": ["web"], "os": os})
    assert (server.release.suite, server.release.php, server.release.postgresql) == (suite, php, postgresql)


def test_a_server_without_os_is_bookworm_and_an_unknown_os_is_refused() -> None:
    doc = {"region": "eu", "provider": "docker", "address": "127.0.115.9", "ips": [{"address": "127.0.115.9"}],
           "roles": ["web"]}
    assert kinds.ServerSpec.model_validate(doc).os == kinds.DEFAULT_OS == "debian-12"
    with pytest.raises(ValueError, match="debian-13"):
        kinds.ServerSpec.model_validate({**doc, "os": "debian-11"})


def test_the_pitr_configuration_names_the_cluster_of_the_db_hosts_version() -> None:
    assert f"pg1-path={pj.pg_data(kinds.RELEASES[kinds.DEFAULT_OS].postgresql)}\n" in conf.render(
        "db-a", "127.0.115.1", [stanza()])
    text = conf.render("db-a", "127.0.115.1", [stanza(pg_version="17")])
    assert "pg1-path=/var/lib/postgresql/17/main\n" in text and "/15/" not in text
    repo_side = conf.render("bk-a", "127.0.115.2", [stanza(pg_version="17")])
    assert "pg1-path=/var/lib/postgresql/17/main\n" in repo_side


def test_a_version_that_is_not_a_major_number_is_refused() -> None:
    with pytest.raises(ValueError, match="PostgreSQL version"):
        stanza(pg_version="17/main\npg1-path=/etc")
