"""The disaster-recovery drill's decisions without servers (DR-1): the nightly sample,
where a subscription is drilled from and into, what the ledger keeps, what status and the
metrics show; and the agent's names and vhost checks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from controller import metrics
from controller.agent import backupjobs
from controller.drivers import context, naming
from controller.drivers.backup import agent, drdrill, units, view
from controller.drivers.backup import topology as topology_mod
from controller.state import backups as ledger
from controller.state import drills
from controller.state import store as state_store

T0 = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)
SUB = "shop.example"
DB = naming.database(SUB, "shop")


def server(name: str, region: str, roles: tuple[str, ...], n: int) -> context.Server:
    return context.Server(name, region, "docker", f"127.0.{n}.1", roles, ((f"127.0.{n}.1", "shared"),))


def topo(tmp_path: Path, *extra: context.Server) -> topology_mod.Topology:
    all_roles = ("web", "db-mariadb", "db-postgresql")
    servers = [server("eu-1", "eu-west", (*all_roles, "backup"), 1), server("us-1", "us-east", ("backup",), 2),
               server("ap-1", "ap-south", ("backup",), 3), *extra]
    ctx = context.Context(tmp_path, {s.name: s for s in servers},
                          {r: context.Region(r) for r in ("eu-west", "us-east", "ap-south")})
    return topology_mod.Topology.of(ctx)


def item(name: str = SUB) -> dict[str, object]:
    return {"name": name, "server": "eu-1", "region": "eu-west", "state": "active",
            "effective": {"backup": {"schedule": "0 2 * * *", "keepDaily": 15, "content": "settingsAndData"},
                          "hosting": {"enabled": True},
                          "databases": [{"name": "shop", "engine": "mariadb", "server": None}]}}


def snaps(region: str, at: dt.datetime, prefix: str) -> list[ledger.Snapshot]:
    """One copy of each part of SUB in ``region`` (originals in eu-west)."""
    out = []
    for kind, name in (("settings", "settings"), ("files", "webspace"), ("db", DB)):
        original = None if region == "eu-west" else f"eu-{kind}"
        out.append(ledger.Snapshot(region=region, id=f"{prefix}-{kind}", subscription=SUB, server="eu-1", kind=kind,
                                   name=name, taken_at=at, original=original,
                                   sums={"digest": "d"} if original is None else None))
    return out


SPARE_US = server("spare-us", "us-east", ("web", "db-mariadb"), 4)
SPARE_AP = server("spare-ap", "ap-south", ("web", "db-mariadb", "db-postgresql"), 5)
SPARE_EU = server("spare-eu", "eu-west", ("web", "db-mariadb", "db-postgresql"), 6)


# --- the nightly sample -------------------------------------------------------------------


def drill(sub: str, at: dt.datetime, ok: bool = True) -> drills.Drill:
    return drills.Drill(sub, at, ok, None if ok else "boom", 12.5 if ok else None, 3600.0, "us-east", "spare-us",
                        "us-east", at - dt.timedelta(hours=1))


def test_the_sample_takes_never_drilled_first_then_the_longest_ago() -> None:
    latest = {"a.example": drill("a.example", T0), "b.example": drill("b.example", T0 - dt.timedelta(days=3)),
              "c.example": drill("c.example", T0 - dt.timedelta(days=1))}
    subs = ["a.example", "b.example", "c.example", "d.example", "e.example"]
    assert drdrill.sample(subs, latest, 3) == ["d.example", "e.example", "b.example"]
    assert drdrill.sample(subs, latest, 0) == []
    # night after night every subscription comes round
    seen: set[str] = set()
    night = T0
    for _ in range(3):
        night += dt.timedelta(days=1)
        for s in drdrill.sample(subs, latest, 2):
            latest[s] = drill(s, night)
            seen.add(s)
    assert seen == set(subs)


# --- the plan: from another region's repository into a spare of another region -------------


@pytest.mark.parametrize(("spares", "held", "want"), [
    pytest.param((SPARE_US,), ("us-east", "ap-south"), ("us-east", "spare-us"), id="spare-in-the-repo-region"),
    pytest.param((SPARE_US, SPARE_AP), ("us-east", "ap-south"), ("ap-south", "spare-ap"), id="copy-order"),
    pytest.param((SPARE_AP,), ("us-east",), ("us-east", "spare-ap"), id="spare-of-a-third-region"),
    pytest.param((SPARE_US, SPARE_AP), ("ap-south",), ("ap-south", "spare-ap"), id="only-one-region-holds-a-copy"),
])
def test_plan_reads_another_region_and_prefers_its_spare(tmp_path: Path, spares: tuple[context.Server, ...],
                                                         held: tuple[str, ...], want: tuple[str, str]) -> None:
    t = topo(tmp_path, *spares)
    ledger_rows = snaps("eu-west", T0, "eu") + [s for r in held for s in snaps(r, T0, r)]
    p = drdrill.plan(t, [s.name for s in spares], ledger_rows, item())
    assert isinstance(p, drdrill.Plan), p
    assert (p.source_region, p.spare) == want
    assert {s.region for s in p.used} == {want[0]}
    assert sorted(pt.kind for pt in p.parts["eu-1"]) == ["db", "files", "settings"]
    # what the restore must match is what the backup recorded (the eu-west originals)
    assert p.expected[("db", DB)].id == "eu-db" and p.expected[("db", DB)].sums == {"digest": "d"}


def test_plan_never_uses_the_own_region_nor_a_spare_there(tmp_path: Path) -> None:
    t = topo(tmp_path, SPARE_EU)
    assert "no spare server outside eu-west" in str(drdrill.plan(t, ["spare-eu"], snaps("eu-west", T0, "eu"), item()))
    t = topo(tmp_path, SPARE_US)
    assert str(drdrill.plan(t, ["spare-us"], snaps("eu-west", T0, "eu"), item())).startswith("no settings settings")


def test_plan_needs_a_spare_with_the_roles_of_the_parts(tmp_path: Path) -> None:
    web_only = server("spare-web", "us-east", ("web",), 7)
    t = topo(tmp_path, web_only)
    problem = drdrill.plan(t, ["spare-web"], snaps("us-east", T0, "us"), item())
    assert isinstance(problem, str) and "db-mariadb" in problem


def test_a_non_spare_server_is_never_drilled_into(tmp_path: Path) -> None:
    t = topo(tmp_path, SPARE_US)
    assert isinstance(drdrill.plan(t, [], snaps("us-east", T0, "us"), item()), str)


# --- the ledger, status and metrics ---------------------------------------------------------


@pytest.fixture()
def store(tmp_path: Path) -> state_store.Store:
    return state_store.Store(tmp_path / "state.db", now=lambda: T0)


def test_the_latest_drill_replaces_the_previous_and_reads_back(store: state_store.Store) -> None:
    drills.record(store, drill(SUB, T0 - dt.timedelta(days=1)))
    drills.record(store, drill(SUB, T0, ok=False))
    (got,) = drills.latest(store).values()
    assert got == drill(SUB, T0, ok=False)
    assert got.as_dict()["at"] == "2026-11-30T03:00:00Z" and got.as_dict()["ok"] is False
    drills.forget(store, SUB)
    assert drills.latest(store) == {}


def test_status_and_figures_carry_the_drill(store: state_store.Store) -> None:
    drills.record(store, drill(SUB, T0))
    drills.record(store, drill("other.example", T0 - dt.timedelta(hours=2), ok=False))
    drills.record(store, drill("gone.example", T0))  # deleted since: counted nowhere
    facts = view.Facts.read(store)
    obj = view.subscription(facts, SUB)
    assert obj is not None and obj["drDrill"]["rtoSeconds"] == 12.5 and obj["drDrill"]["rpoSeconds"] == 3600.0
    items = [item(), item("other.example")]
    f = view.dr_figures(facts, items, True)
    assert f == {"dr_enabled": True, "dr_rto": {"eu-west": 12.5}, "dr_rpo": {"eu-west": 3600.0},
                 "dr_failed": {"eu-west": 1}, "dr_last": T0.timestamp()}


def test_dr_series_are_per_region_and_absent_without_a_spare() -> None:
    base = dict(last_success={}, last_duration={}, stale={}, failed={}, added_bytes={}, drill_failed=0,
                drill_last=None, drill_seconds=None, repo_ok={}, repo_checked={})
    m = metrics.Metrics(version="t")
    m.set_backup(metrics.BackupFigures(**base))  # type: ignore[arg-type]
    assert b"tenantctl_dr_" not in m.exposition()
    m.set_backup(metrics.BackupFigures(**base, dr_enabled=True, dr_rto={"eu-west": 12.5},  # type: ignore[arg-type]
                                       dr_rpo={"eu-west": 60.0}, dr_failed={"eu-west": 0}))
    get = m.registry.get_sample_value
    assert get("tenantctl_dr_drill_rto_seconds", {"region": "eu-west"}) == 12.5
    assert get("tenantctl_dr_drill_rpo_seconds", {"region": "eu-west"}) == 60.0
    assert get("tenantctl_dr_drill_failed_subscriptions", {"region": "eu-west"}) == 0
    assert get("tenantctl_dr_drill_last_timestamp_seconds", {}) == 0.0  # never: DRDrillNotRun fires


# --- the agent's scratch names -----------------------------------------------------------------


def test_scratch_names_cannot_be_a_tenants() -> None:
    assert agent.DR_USER.match(agent.dr_user("0123456789"))
    assert not agent.DR_USER.match(naming.system_user(SUB))
    assert not agent.DR_DB.match(DB) and agent.DR_DB.match("tenantctl_dr_0123456789_0")
    assert agent.DR_VHOST.match("tenantctl-dr-0123456789.conf")
    assert not agent.DR_VHOST.match("tenantctl.conf") and not agent.DR_VHOST.match("tenantctl-status.conf")


@pytest.mark.parametrize(("domain", "address", "docroot"), [
    pytest.param("shop.example; include /etc/passwd", "127.0.0.1", "/srv/tenantctl-dr/x/httpdocs", id="domain"),
    pytest.param(SUB, "127.0.0.1; root /", "/srv/tenantctl-dr/x/httpdocs", id="address"),
    pytest.param(SUB, "127.0.0.1", "/srv/tenantctl-dr/x/../../etc", id="docroot-dotdot"),
    pytest.param(SUB, "127.0.0.1", "/srv/x y;", id="docroot-chars"),
])
def test_the_vhost_refuses_unchecked_text(domain: str, address: str, docroot: str) -> None:
    with pytest.raises((agent.Problem, ValueError)):
        agent._dr_vhost(domain, address, docroot, "x")


def test_an_unknown_dr_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown dr phase"):
        agent.drill(backupjobs.BackupJob(scratch="abc", dr="nuke"), "/nonexistent")


def test_wanted_subscriptions_only_are_drilled() -> None:
    assert set(units.wanted([item(), {**item("gone.example"), "state": "deleted"}])) == {SUB}


def test_the_drill_fetches_the_index_else_the_first_static_file(tmp_path: Path) -> None:
    root = tmp_path / "httpdocs"
    (root / "b" / "c").mkdir(parents=True)
    (root / "index.php").write_text("<?php echo 1;")
    (root / ".hidden.html").write_text("x")
    (root / "b" / "c" / "logo.png").write_bytes(b"png")
    (root / "b" / "style.css").write_text("a{}")
    assert agent.probe_file(str(root)) == "b/style.css"
    (root / "index.htm").write_text("<p>")
    assert agent.probe_file(str(root)) == "index.htm"
    assert agent.probe_file(str(tmp_path / "none")) == ""
