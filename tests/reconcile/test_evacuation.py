"""The engine under a region evacuation (DR-1): the evacuated region's subscriptions are
placed and applied in the target region, and no driver is ever called for a server of
the evacuated region (fenced) until the evacuation ends."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from controller import model
from controller.drivers import base
from controller.reconcile import engine
from controller.state import regions
from controller.state import store as state_store

from .conftest import T0, Clock
from .memdriver import MemDriver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_an_evacuated_region_moves_its_tenants_and_is_never_written_to(store: state_store.Store, clock: Clock) -> None:
    ds = model.load_desired([EXAMPLES])
    web = MemDriver("web")
    drivers: dict[str, base.Driver] = {**engine.default_drivers(), "web": web}
    eng = engine.Engine(store, drivers, clock=clock)
    assert eng.reconcile(ds).ok
    eu = {n for n, s in ds.servers.items() if s.region == "eu-west"}
    moving = sorted(n for n, s in ds.subscriptions.items() if s.region == "eu-west")
    before = {r.name: r.server for r in store.list_subscriptions()}
    assert moving and all(before[n] in eu for n in moving if before.get(n))
    web.batches.clear()
    regions.start(store, "eu-west", "us-east", T0)
    report = eng.reconcile(ds)
    after = {r.name: r.server for r in store.list_subscriptions()}
    placed = [n for n in moving if after.get(n)]
    assert placed and all(ds.servers[str(after[n])].region == "us-east" for n in placed), after
    assert not any(server in eu for server, _ in web.batches), web.batches
    status = {d["name"]: d for d in store.get_status()}
    assert all(status[n]["region"] == "us-east" for n in moving)
    assert {n for n in placed if report.outcomes.get(n, {}).get("web") == "provisioned"} == set(placed)


def test_a_deletion_on_a_fenced_server_waits_and_nothing_is_sent_there(
        store: state_store.Store, clock: Clock, tmp_path: Path) -> None:
    web = MemDriver("web")
    drivers: dict[str, base.Driver] = {**engine.default_drivers(), "web": web}
    eng = engine.Engine(store, drivers, clock=clock)
    assert eng.reconcile(model.load_desired([EXAMPLES])).ok
    server = next(r.server for r in store.list_subscriptions() if r.name == "saint-ex.example.net")
    assert server == "us-east-1"
    shutil.copytree(EXAMPLES, tmp_path / "desired")
    subs = tmp_path / "desired" / "subscriptions.yaml"
    docs = subs.read_text().split("\n---\n")
    subs.write_text("\n---\n".join(d for d in docs if "name: saint-ex.example.net}" not in d))
    regions.start(store, "us-east", "eu-west", T0)
    web.batches.clear()
    report = eng.reconcile(model.load_desired([tmp_path / "desired"]), allow_mass_delete=True)
    assert not any(s == "us-east-1" for s, _ in web.batches), web.batches
    assert any("fenced: region us-east is evacuated" in m for m in report.failed["saint-ex.example.net"]), report.failed
    assert store.get_subscription("saint-ex.example.net").deleted_at is None  # not deleted while fenced
    regions.end(store, "us-east")
    clock.now += dt.timedelta(hours=1)
    done = eng.reconcile(model.load_desired([tmp_path / "desired"]), allow_mass_delete=True)
    assert "saint-ex.example.net" not in done.failed, done.failed
    assert ("us-east-1", ["saint-ex.example.net"]) in web.batches
