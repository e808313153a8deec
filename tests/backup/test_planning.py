"""The controller's backup decisions, without servers: topology (BKP-1, BKP-3), units
(BKP-6), schedule (missed nights run once), the ledger and the BackupReady view."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from controller import model
from controller.drivers import context
from controller.drivers.backup import restore, schedule, topology, units, view
from controller.state import backups as ledger
from controller.state import store as state_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def item(name: str = "shop.example", server: str = "eu-west-1", *, content: str = "settingsAndData",
         dbs: list[dict[str, object]] | None = None, state: str = "active") -> dict[str, object]:
    return {"name": name, "server": server, "region": "eu-west", "state": state,
            "effective": {"backup": {"schedule": "0 2 * * *", "keepDaily": 15, "content": content},
                          "hosting": {"enabled": True},
                          "databases": dbs if dbs is not None else [{"name": "shop", "engine": "mariadb", "server": None}]}}


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> topology.Topology:
    ds = model.load_desired([EXAMPLES])
    return topology.Topology.of(context.Context.of(ds, tmp_path_factory.mktemp("state")))


@pytest.fixture()
def store(tmp_path: Path) -> state_store.Store:
    return state_store.Store(tmp_path / "state.db", now=lambda: T0)


def test_every_region_copies_to_the_two_others(topo: topology.Topology) -> None:
    """BKP-1/BKP-3 in the bundled example: three regions, every backup in all three."""
    assert topo.repositories == {"ap-southeast": "ap-southeast-1", "eu-west": "eu-west-1", "us-east": "us-east-1"}
    assert topo.regions_of("eu-west-2") == ("eu-west", "ap-southeast", "us-east")
    assert topo.regions_of("us-east-1") == ("us-east", "eu-west", "ap-southeast")
    assert "ap-southeast-1" not in topo.sources()  # dns + backup only: holds no tenant data


def test_a_region_without_repository_has_no_local_snapshot(tmp_path: Path) -> None:
    ctx = context.Context(tmp_path, {"a": context.Server("a", "r1", "docker", "127.0.0.1", ("web",), ())},
                          {"r1": context.Region("r1")})
    topo = topology.Topology.of(ctx)
    assert topo.local_region("a") is None and topo.regions_of("a") == ()


@pytest.mark.parametrize(("content", "kinds"), [
    pytest.param("settingsAndData", ["settings", "files", "db"], id="BKP-6-settings-and-data"),
    pytest.param("settings", ["settings"], id="BKP-6-settings-only"),
])
def test_units_follow_the_content_setting(content: str, kinds: list[str]) -> None:
    got = units.by_server([item(content=content)])
    assert [p.kind for p in got["eu-west-1"][0].parts] == kinds


def test_a_database_on_another_server_is_backed_up_there() -> None:
    got = units.by_server([item(dbs=[{"name": "shop", "engine": "postgresql", "server": "us-east-1"}])])
    assert [p.kind for p in got["eu-west-1"][0].parts] == ["settings", "files"]
    (db,) = got["us-east-1"][0].parts
    assert (db.kind, db.engine) == ("db", "postgresql") and db.owner and db.name.startswith("shop_")


def test_deleted_and_unplaced_subscriptions_are_not_backed_up() -> None:
    assert units.by_server([item(state="deleted"), item("x.example", server="")]) == {}


def test_files_exclude_tmp() -> None:
    files = units.by_server([item()])["eu-west-1"][0].parts[1]
    assert files.path == "/srv/www/shop.example" and files.exclude == ["/srv/www/shop.example/tmp"]


def _attempt(at: dt.datetime) -> ledger.Attempt:
    return ledger.Attempt("shop.example", "eu-west-1", at, at, None, None, None)


@pytest.mark.parametrize(("last", "now", "due"), [
    pytest.param(None, T0, True, id="never-backed-up-is-due-at-once"),
    pytest.param(dt.datetime(2026, 11, 30, 1, 5, tzinfo=dt.UTC), T0, False, id="tonight-done"),
    pytest.param(dt.datetime(2026, 11, 29, 1, 5, tzinfo=dt.UTC), T0, True, id="last-night-missed"),
    pytest.param(dt.datetime(2026, 11, 20, 1, 5, tzinfo=dt.UTC), T0, True, id="ten-nights-missed"),
])
def test_due_is_level_triggered(last: dt.datetime | None, now: dt.datetime, due: bool) -> None:
    """02:00 Europe/Paris = 01:00 UTC in winter; missed nights give ONE run, not one per night."""
    w = units.wanted([item()])
    attempts = {} if last is None else {"shop.example": _attempt(last)}
    assert schedule.due(w, attempts, {"eu-west": "Europe/Paris"}, now) == (["shop.example"] if due else [])


def test_missed_nights_run_once(store: state_store.Store) -> None:
    w = units.wanted([item()])
    ledger.record_attempt(store, "shop.example", "eu-west-1", dt.datetime(2026, 11, 20, 1, 5, tzinfo=dt.UTC), None)
    assert schedule.due(w, ledger.attempts(store), {"eu-west": "Europe/Paris"}, T0) == ["shop.example"]
    ledger.record_attempt(store, "shop.example", "eu-west-1", T0, None)  # the catch-up run
    assert schedule.due(w, ledger.attempts(store), {"eu-west": "Europe/Paris"}, T0 + dt.timedelta(hours=1)) == []


def test_a_failed_backup_is_retried_after_a_while(store: state_store.Store) -> None:
    w = units.wanted([item()])
    ledger.record_attempt(store, "shop.example", "eu-west-1", T0, "db shop: server unreachable")
    tz = {"eu-west": "Europe/Paris"}
    assert schedule.due(w, ledger.attempts(store), tz, T0 + dt.timedelta(minutes=5)) == []
    assert schedule.due(w, ledger.attempts(store), tz, T0 + schedule.RETRY) == ["shop.example"]


def test_schedule_fires_in_the_region_time_zone() -> None:
    fired = schedule.prev_fire("0 2 * * *", "America/New_York", T0)
    assert fired == dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)


def snap(region: str, sid: str, at: dt.datetime, *, kind: str = "db", name: str = "shop_1a2b",
         original: str | None = None) -> ledger.Snapshot:
    return ledger.Snapshot(region=region, id=sid, subscription="shop.example", server="eu-west-1", kind=kind,
                           name=name, taken_at=at, original=original)


def test_ready_needs_a_fresh_success_in_every_region(store: state_store.Store) -> None:
    regions = ("eu-west", "us-east")
    facts = view.Facts.read(store)
    assert view.condition(facts, "shop.example", T0).reason == "NoBackupYet"
    ledger.record_attempt(store, "shop.example", "eu-west-1", T0, None, regions)
    ledger.add_snapshots(store, [snap("eu-west", "a1", T0)])
    c = view.condition(view.Facts.read(store), "shop.example", T0)
    assert (c.status, c.reason) == ("False", "CopyMissing") and "us-east" in c.message
    ledger.add_snapshots(store, [snap("us-east", "b1", T0, original="a1")])
    c = view.condition(view.Facts.read(store), "shop.example", T0)
    assert (c.status, c.reason) == ("True", "Ready") and "not verified" in c.message
    ledger.set_verified(store, ["a1"])
    c = view.condition(view.Facts.read(store), "shop.example", T0)
    assert c.status == "True" and "not verified" not in c.message
    assert view.condition(view.Facts.read(store), "shop.example", T0 + dt.timedelta(hours=27)).reason == "BackupTooOld"
    obj = view.subscription(view.Facts.read(store), "shop.example")
    assert obj is not None and obj["regions"] == {"eu-west": {"lastSnapshot": "2026-11-30T12:00:00Z", "verified": True},
                                                  "us-east": {"lastSnapshot": "2026-11-30T12:00:00Z", "verified": True}}


def test_a_failed_backup_is_never_ready(store: state_store.Store) -> None:
    ledger.record_attempt(store, "shop.example", "eu-west-1", T0 - dt.timedelta(days=1), None, ("eu-west",))
    ledger.record_attempt(store, "shop.example", "eu-west-1", T0, "db shop: dump exited 2", ("eu-west",))
    a = ledger.attempts(store)["shop.example"]
    assert a.succeeded_at == T0 - dt.timedelta(days=1) and a.error
    c = view.condition(view.Facts.read(store), "shop.example", T0)
    assert (c.status, c.reason) == ("False", "BackupFailed") and "dump exited 2" in c.message


def test_sync_region_drops_what_the_repository_no_longer_lists(store: state_store.Store) -> None:
    ledger.add_snapshots(store, [snap("eu-west", "a1", T0), snap("eu-west", "a2", T0 + dt.timedelta(days=1))])
    assert ledger.sync_region(store, "eu-west", "eu-west-1", ["a2"]) == 1
    assert [s.id for s in ledger.snapshots(store)] == ["a2"]


def test_sync_of_a_partial_listing_leaves_other_subscriptions_alone(store: state_store.Store) -> None:
    """A copy lists only the subscriptions it copied: the other rows of that server stay."""
    other = ledger.Snapshot(region="eu-west", id="o1", subscription="other.example", server="eu-west-1",
                            kind="files", name="webspace", taken_at=T0)
    ledger.add_snapshots(store, [snap("eu-west", "a1", T0), other])
    assert ledger.sync_region(store, "eu-west", "eu-west-1", [], ["shop.example"]) == 1
    assert [s.id for s in ledger.snapshots(store)] == ["o1"]


def test_restore_chooses_the_newest_before_the_time(topo: topology.Topology) -> None:
    it = item(dbs=[{"name": "shop", "engine": "mariadb", "server": None}])
    db = units.parts(it)["eu-west-1"][2].name
    snaps = [snap("eu-west", "new", T0, name=db), snap("eu-west", "old", T0 - dt.timedelta(days=1), name=db),
             snap("us-east", "copy", T0, name=db, original="new")]
    pick = restore.choose(topo, snaps, it, at=None, region=None, only="db:shop")
    assert (pick.region, [s.id for s in pick.snapshots]) == ("eu-west", ["new"])
    pick = restore.choose(topo, snaps, it, at=T0 - dt.timedelta(hours=1), region=None, only=None)
    assert [s.id for s in pick.snapshots] == ["old"]
    assert [s.id for s in restore.choose(topo, snaps, it, at=None, region="us-east", only=None).snapshots] == ["copy"]


@pytest.mark.parametrize(("kw", "message"), [
    pytest.param({"region": "mars"}, "no region 'mars'", id="unknown-region"),
    pytest.param({"only": "db:nosuch"}, "no database 'nosuch'", id="unknown-database"),
    pytest.param({"at": T0 - dt.timedelta(days=30)}, "no snapshot at or before", id="too-early"),
    pytest.param({"only": "mail"}, "expected files, settings or db:NAME", id="bad-only"),
])
def test_restore_that_matches_nothing_changes_nothing(topo: topology.Topology, kw: dict[str, object],
                                                      message: str) -> None:
    it = item()
    args: dict[str, object] = {"at": None, "region": None, "only": None, **kw}
    with pytest.raises(restore.NothingToRestore, match=message):
        restore.choose(topo, [snap("eu-west", "a1", T0, kind="settings", name="settings")], it, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("2026-11-30T02:00:00.123456789Z", dt.datetime(2026, 11, 30, 2, 0, 0, 123456, tzinfo=dt.UTC), id="nanos-Z"),
    pytest.param("2026-11-30T03:00:00+01:00", dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC), id="offset"),
    pytest.param("2026-11-30T03:00:00.5+01:00", dt.datetime(2026, 11, 30, 2, 0, 0, 500000, tzinfo=dt.UTC), id="frac-offset"),
])
def test_restic_times_parse(text: str, want: dt.datetime) -> None:
    from controller.drivers.backup import runner

    assert runner.parse_time(text) == want
