"""PLAT-5 ("the customer must stay within the last four supported versions", issue 13):
the supported versions are defined once (``kinds.SUPPORTED_VERSIONS``); a subscription
running an older PHP or database engine version is flagged in ``status`` (its
``versions`` and the ``SupportedVersions`` False condition) and counted in the metrics by
version, with no per-subscription label. A real state store; the exposition checked with
Prometheus' own parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller import metrics
from controller.model import kinds
from controller.reconcile import status
from controller.state import store as state_store

OLD_PG = kinds.Release("bullseye", php="7.4", mariadb="10.5", postgresql="13")


def doc(name: str, php: str = "8.2", dbs: tuple[tuple[str, str], ...] = (), *, hosting: bool = True,
        state: str = "active") -> dict[str, Any]:
    return {"name": name, "customer": "c", "plan": "p", "server": "web-1", "ip": "127.0.0.1", "state": state,
            "stateReason": None, "sync": "synced", "conflicts": [], "conditions": [], "concerns": {},
            "effective": {"hosting": {"enabled": hosting, "php": {"handler": "fpm", "version": php}},
                          "databases": [{"name": f"d{i}", "engine": e, "server": s} for i, (e, s) in enumerate(dbs)]}}


@pytest.mark.parametrize(("software", "version", "old"), [
    pytest.param("php", "7.4", True, id="php-7.4"),
    pytest.param("php", "8.0", True, id="php-8.0"),
    pytest.param("php", "8.1", False, id="php-8.1-oldest-of-four"),
    pytest.param("php", "8.4", False, id="php-8.4"),
    pytest.param("php", "9.0", False, id="php-newer-than-known"),
    pytest.param("mariadb", "10.5", True, id="mariadb-10.5"),
    pytest.param("mariadb", "10.6", False, id="mariadb-10.6"),
    pytest.param("mariadb", "10.11", False, id="mariadb-10.11-numeric-not-text"),
    pytest.param("postgresql", "13", True, id="postgresql-13"),
    pytest.param("postgresql", "14", False, id="postgresql-14"),
])
def test_older_than_the_last_four_supported_is_outdated(software: str, version: str, old: bool) -> None:
    assert kinds.outdated(software, version) is old
    assert len(kinds.current_versions(software)) == kinds.SUPPORTED_WINDOW == 4


@pytest.mark.parametrize("os", list(kinds.RELEASES))
def test_every_release_ships_current_versions(os: str) -> None:
    r = kinds.RELEASES[os]
    for software, version in (("php", r.php), ("mariadb", r.mariadb), ("postgresql", r.postgresql)):
        assert version in kinds.SUPPORTED_VERSIONS[software], (os, software)
        assert not kinds.outdated(software, version), (os, software)
    for versions in kinds.SUPPORTED_VERSIONS.values():  # oldest first, as the window assumes
        assert list(versions) == sorted(versions, key=kinds.version_key)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with state_store.Store(tmp_path / "state.db") as st:
        st.put_status("old-php.example", doc("old-php.example", "7.4"))
        st.put_status("old-pg.example", doc("old-pg.example", "8.2", (("postgresql", "db-old"), ("mariadb", "db-13"))))
        st.put_status("fine.example", doc("fine.example", "8.4", (("postgresql", "db-13"),)))
        st.put_status("mail.example", doc("mail.example", "7.4", hosting=False))
        yield st


def flagged(item: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in item["conditions"] if c["type"] == status.VERSIONS_CONDITION]


def test_status_flags_an_old_php(store: state_store.Store) -> None:
    got = {i["name"]: i for i in status.items(store)}
    assert got["old-php.example"]["versions"] == {"php": "7.4"}
    [c] = flagged(got["old-php.example"])
    assert (c["status"], c["reason"]) == ("False", "Outdated")
    assert "php 7.4" in c["message"] and "8.1, 8.2, 8.3, 8.4" in c["message"] and "PLAT-5" in c["message"]
    assert not flagged(got["fine.example"]) and not flagged(got["old-pg.example"])  # no releases: PHP only
    assert got["mail.example"]["versions"] == {} and not flagged(got["mail.example"])  # no hosting, no PHP


def test_status_flags_an_old_database_engine_from_its_servers_release(store: state_store.Store) -> None:
    releases = {"db-old": OLD_PG, "db-13": kinds.RELEASES["debian-13"]}
    got = {i["name"]: i for i in status.items(store, releases=releases)}
    assert got["old-pg.example"]["versions"] == {"php": "8.2", "postgresql": "13", "mariadb": "11.8"}
    [c] = flagged(got["old-pg.example"])
    assert "postgresql 13" in c["message"] and "mariadb" not in c["message"]
    assert got["fine.example"]["versions"] == {"php": "8.4", "postgresql": "17"} and not flagged(got["fine.example"])
    assert list(status.stream(store, releases=releases)) == status.items(store, releases=releases)


def test_a_fixed_version_clears_the_flag(store: state_store.Store) -> None:
    store.put_status("old-php.example", doc("old-php.example", "8.3"))
    got = {i["name"]: i for i in status.stream(store)}
    assert got["old-php.example"]["versions"] == {"php": "8.3"} and not flagged(got["old-php.example"])


def series(m: metrics.Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    fams = {f.name: f for f in text_string_to_metric_families(m.exposition().decode())}
    return {tuple(sorted(s.labels.items())): s.value for s in fams[name].samples} if name in fams else {}


def test_metrics_count_subscriptions_by_version_without_a_subscription_label(store: state_store.Store) -> None:
    m = metrics.Metrics()
    many = [doc(f"s{i}.example", "7.4") for i in range(50)] + status.items(store)
    m.set_subscription_summary(many, {"db-old": OLD_PG, "db-13": kinds.RELEASES["debian-13"]})
    got = series(m, "tenantctl_subscription_versions")
    assert got[(("outdated", "true"), ("software", "php"), ("version", "7.4"))] == 51  # mail-only not counted
    assert got[(("outdated", "false"), ("software", "php"), ("version", "8.4"))] == 1
    assert got[(("outdated", "true"), ("software", "postgresql"), ("version", "13"))] == 1
    assert got[(("outdated", "false"), ("software", "mariadb"), ("version", "11.8"))] == 1
    assert len(got) == 6  # php 7.4, 8.2, 8.4; postgresql 13, 17; mariadb 11.8: not one per subscription
    assert all("subscription" not in dict(k) for k in got)


def test_metrics_forget_a_version_no_longer_run() -> None:
    m = metrics.Metrics()
    m.set_subscription_summary([doc("a.example", "7.4")])
    m.set_subscription_summary([doc("a.example", "8.4"), doc("b.example", "8.4", state="deleted")])
    assert series(m, "tenantctl_subscription_versions") == {
        (("outdated", "false"), ("software", "php"), ("version", "8.4")): 1}
