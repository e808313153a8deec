"""PLAT-4 in the engine's pass: a PHP version change of a running subscription is backed
up first, the ``php`` concern applies it only after that backup succeeded, and a failed
backup leaves the old version applied (a failure of the pass, retried). The drivers are
in-memory ones (``memdriver``) and the backup concern a fake that answers as told: the
engine's contract, not the backup path (that is tests/backup's)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller import model
from controller.drivers import base
from controller.reconcile import engine
from controller.state import events
from controller.state import store as state_store

from .conftest import Clock
from .memdriver import MemDriver

DOCS = """\
apiVersion: tenantctl.io/v1
kind: Region
metadata: {name: eu-west}
spec: {timezone: Europe/Paris}
---
apiVersion: tenantctl.io/v1
kind: Server
metadata: {name: web-1}
spec:
  region: eu-west
  provider: docker
  address: 127.0.250.1
  ips: [{address: 127.0.250.1, type: shared}]
  roles: [web]
  capacity: {sites: 10, diskMB: 10000}
  offers: {php: {versions: ["8.2", "8.3"], handlers: [fpm]}}
---
apiVersion: tenantctl.io/v1
kind: ServicePlan
metadata: {name: basic}
spec:
  hosting: {enabled: true, php: {handler: fpm, version: "8.2"}}
---
apiVersion: tenantctl.io/v1
kind: Customer
metadata: {name: acme}
spec: {email: ops@acme.example.org, state: active}
---
apiVersion: tenantctl.io/v1
kind: Subscription
metadata: {name: paris.example.org}
spec: {customer: acme, plan: basic, region: eu-west}
"""


class FakeBackup(MemDriver):
    """The backup concern as the engine sees it, with a backup now that answers
    ``errors`` (a fake: the real one is ``drivers.backup.driver.BackupDriver``)."""

    def __init__(self) -> None:
        super().__init__("backup")
        self.errors: dict[str, str] = {}
        self.asked: list[tuple[list[str], list[str]]] = []

    def has_repository(self, server: str) -> bool:
        return True

    def backup_now(self, items: Sequence[Mapping[str, Any]], now: dt.datetime) -> Mapping[str, str | None]:
        # the items are as last applied: the version they run, not the one they move to
        self.asked.append(([i["name"] for i in items],
                           [i["effective"]["hosting"]["php"]["version"] for i in items]))
        return {i["name"]: self.errors.get(i["name"]) for i in items}


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    d = tmp_path / "desired"
    d.mkdir()
    (d / "all.yaml").write_text(DOCS)
    return d


def setup(store: state_store.Store, clock: Clock) -> tuple[engine.Engine, MemDriver, FakeBackup]:
    drivers: dict[str, base.Driver] = {c: MemDriver(c) for c in engine.ORDER if c != "backup"}
    backup = FakeBackup()
    drivers["backup"] = backup
    return engine.Engine(store, drivers, clock=clock), drivers["php"], backup  # type: ignore[return-value]


def php_batches(php: MemDriver) -> list[str]:
    return [n for _s, names in php.batches for n in names]


def test_a_version_change_is_backed_up_first_and_a_failed_backup_holds_it(
        desired: Path, store: state_store.Store, clock: Clock) -> None:
    eng, php, backup = setup(store, clock)
    assert eng.reconcile(model.load_desired([desired])).ok
    assert backup.asked == []  # a first placement is no migration
    applied = len(php.batches)

    (desired / "all.yaml").write_text(DOCS.replace('version: "8.2"', 'version: "8.3"'))
    backup.errors["paris.example.org"] = "files webspace: restic exited 1"
    report = eng.reconcile(model.load_desired([desired]))
    assert not report.ok and backup.asked == [(["paris.example.org"], ["8.2"])]
    assert len(php.batches) == applied, "the php driver ran although the backup first failed"
    assert "PHP 8.2 -> 8.3 waits for the backup taken first (PLAT-4)" in report.failed["paris.example.org"][0]
    status = {d["name"]: d for d in store.get_status()}
    assert status["paris.example.org"]["concerns"]["php"] == "failed"
    # the status says the version that runs, so the retry is still a migration
    assert status["paris.example.org"]["effective"]["hosting"]["php"]["version"] == "8.2"

    backup.errors.clear()
    clock.now += dt.timedelta(hours=1)  # past the failure's backoff
    report = eng.reconcile(model.load_desired([desired]))
    assert report.ok, report.failed
    assert backup.asked == [(["paris.example.org"], ["8.2"])] * 2  # backed up first again
    assert php_batches(php)[-1] == "paris.example.org"
    status = {d["name"]: d for d in store.get_status()}
    assert status["paris.example.org"]["effective"]["hosting"]["php"]["version"] == "8.3"
    said = [e.message for e in events.list_events(store, subject="paris.example.org", limit=None)]
    assert any("PHP 8.2 -> 8.3: backed up first (PLAT-4)" in m for m in said), "\n".join(said)

    # applied: the next pass has nothing to migrate and takes no backup
    asked = len(backup.asked)
    assert eng.reconcile(model.load_desired([desired])).ok and len(backup.asked) == asked
