"""The evacuation's restore without servers (issue 10 item 4, DR-1, BKP-4): for a plan
with ``backup.pitr`` the databases come from the archives in the target region
(``pitr.recover_latest``), everything else from the newest snapshots there; a database
the archive cannot serve falls back to its snapshot (a note); the recovery point is
measured against the archive. The restore and the recovery are FAKES that record what
they were asked (the live drill in test_evacuate_live.py runs the real ones)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

import pytest

from controller import errors
from controller.agent import backupjobs
from controller.drivers import context, naming, transport
from controller.drivers.backup import pitr, restore
from controller.drivers.backup import topology as topology_mod
from controller.reconcile import evacuate
from controller.state import backups as ledger
from controller.state import store as state_store

SUB = "shop.example"
T0 = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
NIGHT = T0 - dt.timedelta(hours=5)
APP, LEDGER = naming.database(SUB, "app"), naming.database(SUB, "ledger")


def topo(tmp_path: Path) -> topology_mod.Topology:
    roles = ("web", "db-mariadb", "db-postgresql", "dns", "backup")
    servers = {n: context.Server(n, r, "docker", f"127.0.{i}.1", roles, ((f"127.0.{i}.1", "shared"),))
               for i, (n, r) in enumerate((("ev-a", "eu-west"), ("ev-b", "us-east")), start=1)}
    return topology_mod.Topology.of(context.Context(tmp_path, servers, {r: context.Region(r)
                                                                        for r in ("eu-west", "us-east")}))


def item(pitr_on: bool) -> dict[str, Any]:
    """SUB after the evacuation's engine pass: placed on ev-b, its databases too."""
    return {"name": SUB, "server": "ev-b", "region": "us-east", "state": "active",
            "effective": {"backup": {"schedule": "0 2 * * *", "keepDaily": 15, "content": "settingsAndData",
                                     "pitr": pitr_on},
                          "hosting": {"enabled": True},
                          "databases": [{"name": "app", "engine": "mariadb", "server": "ev-b"},
                                        {"name": "ledger", "engine": "postgresql", "server": "ev-b"}]}}


def store_with_snapshots(tmp_path: Path) -> state_store.Store:
    store = state_store.Store(tmp_path / "state.db", now=lambda: T0)
    ledger.add_snapshots(store, [
        ledger.Snapshot(region=region, id=f"{region}-{kind}-{name}", subscription=SUB, server="ev-a", kind=kind,
                        name=name, taken_at=NIGHT, original=None if region == "eu-west" else f"eu-west-{kind}-{name}")
        for region in ("eu-west", "us-east")
        for kind, name in (("settings", "settings"), ("files", "webspace"), ("db", APP), ("db", LEDGER))])
    return store


class Fakes:
    """FAKE restore and recovery: record the calls, answer as the real ones do."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse: dict[str, Exception] | None = None) -> None:
        self.restored: list[tuple[str, str, str]] = []
        self.recovered: list[tuple[str, str]] = []
        self.refuse = refuse or {}
        monkeypatch.setattr(restore, "restore", self.restore)
        monkeypatch.setattr(pitr, "recover_latest", self.recover_latest)

    def restore(self, topo: topology_mod.Topology, pool: transport.Pool, sub: str, choice: restore.Choice
                ) -> list[backupjobs.PartResult]:
        out = []
        for server, parts in choice.parts.items():
            for p in parts:
                self.restored.append((server, p.kind, p.name))
                out.append(backupjobs.PartResult(sub, p.kind, p.name, True, snapshot=p.snapshot))
        return out

    def recover_latest(self, topo: topology_mod.Topology, pool: transport.Pool, store: state_store.Store,
                       item: dict[str, Any], db: str, region: str) -> pitr.Recovered:
        if db in self.refuse:
            raise self.refuse[db]
        self.recovered.append((db, region))
        engine = "mariadb" if db == "app" else "postgresql"
        return pitr.Recovered(engine, naming.database(SUB, db), "ev-b", "base", "mariadb-bin.000003:1234"
                              if engine == "mariadb" else "redo done at 0/3000100", region,
                              T0 - dt.timedelta(seconds=40 if engine == "mariadb" else 75))


def run(tmp_path: Path, pitr_on: bool) -> tuple[list[str], evacuate.Moved]:
    m = evacuate.Moved(SUB, server="ev-b")
    problems = evacuate._restore(topo(tmp_path), store_with_snapshots(tmp_path), cast(transport.Pool, None),
                                 item(pitr_on), "us-east", T0, m)
    return problems, m


def test_a_pitr_plans_databases_come_from_the_archive_the_rest_from_snapshots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch)
    problems, m = run(tmp_path, True)
    assert problems == []
    assert fakes.recovered == [("app", "us-east"), ("ledger", "us-east")]
    assert [(k, n) for _s, k, n in fakes.restored] == [("files", "webspace")]  # no database from its dump
    assert m.snapshots == ["us-east-files-webspace"]
    assert (m.rpo, m.rpo_basis) == (75.0, "archive")  # the worst database, not the nightly's 5 h
    assert [(p["database"], p["engine"], p["region"]) for p in m.points] == [
        (APP, "mariadb", "us-east"), (LEDGER, "postgresql", "us-east")]
    assert m.points[0]["stoppedAt"] == "mariadb-bin.000003:1234" and m.notes == []


def test_without_pitr_everything_comes_from_the_newest_snapshots(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch)
    problems, m = run(tmp_path, False)
    assert problems == [] and fakes.recovered == []
    assert sorted((k, n) for _s, k, n in fakes.restored) == [("db", APP), ("db", LEDGER), ("files", "webspace")]
    assert (m.rpo, m.rpo_basis, m.points) == (5 * 3600.0, "snapshot", [])


def test_a_database_the_archive_cannot_serve_comes_from_its_snapshot_said_in_a_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, {"ledger": pitr.OutOfRange("no base backup of ev-a in its repository in us-east")})
    problems, m = run(tmp_path, True)
    assert problems == []
    assert fakes.recovered == [("app", "us-east")]
    assert sorted((k, n) for _s, k, n in fakes.restored) == [("db", LEDGER), ("files", "webspace")]
    assert sorted(m.snapshots) == ["us-east-db-" + LEDGER, "us-east-files-webspace"]
    assert len(m.notes) == 1 and "db ledger: not from the archive (no base backup" in m.notes[0], m.notes
    # a database from its nightly snapshot: the recovery point is that snapshot's
    assert (m.rpo, m.rpo_basis) == (5 * 3600.0, "snapshot")


def test_a_failed_recovery_is_a_problem_of_the_evacuation_not_a_silent_fallback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch, {"app": errors.PermanentError("server ev-b: mariadb-binlog exited 1")})
    problems, _m = run(tmp_path, True)
    assert problems == ["recover db app from the archive in us-east: server ev-b: mariadb-binlog exited 1"]
    assert fakes.recovered == [("ledger", "us-east")]
    assert ("db", APP) not in {(k, n) for _s, k, n in fakes.restored}


@pytest.mark.parametrize(("points", "snapshot_ages", "expected"), [
    pytest.param([30, 90], [3600], (90.0, "archive"), id="the-worst-archived-database"),
    pytest.param([], [3600, 7200], (7200.0, "snapshot"), id="no-archive-the-oldest-snapshot"),
    pytest.param([], [], (None, "snapshot"), id="nothing-restored"),
    pytest.param([-5], [], (0.0, "archive"), id="a-point-after-the-start-is-no-negative-loss"),
    pytest.param([30], [3600, -7200], (7200.0, "snapshot"), id="a-database-from-its-snapshot"),
])
def test_the_recovery_point(points: list[int], snapshot_ages: list[int],
                            expected: tuple[float | None, str]) -> None:
    """Ages in seconds before the start; a negative snapshot age is a database's snapshot."""
    archived = [pitr.Recovered("mariadb", "db", "s", "b", "", "us-east", T0 - dt.timedelta(seconds=s)) for s in points]
    snaps = [ledger.Snapshot("us-east", f"s{i}", SUB, "ev-a", "db" if a < 0 else "files", "x",
                             T0 - dt.timedelta(seconds=abs(a))) for i, a in enumerate(snapshot_ages)]
    assert evacuate.rpo(T0, snaps, archived) == expected


def test_the_archive_of_a_database_is_the_server_that_dumped_it_in_that_region(tmp_path: Path) -> None:
    store = store_with_snapshots(tmp_path)
    assert pitr.source_of(store, SUB, APP, "us-east", "ev-b") == "ev-a"
    assert pitr.source_of(store, SUB, "never_dumped", "us-east", "ev-b") == "ev-b"
