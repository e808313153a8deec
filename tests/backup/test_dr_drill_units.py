"""The disaster-recovery drill's decisions without servers (DR-1): the nightly sample,
where a subscription is drilled from and into, what the ledger keeps, what status and the
metrics show; and the agent's names and vhost checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import types
from pathlib import Path
from typing import Any, cast

import pytest

from controller import metrics, model, provisioning
from controller.agent import backupjobs, jobs
from controller.drivers import context, naming, transport
from controller.drivers.backup import agent as backup_agent
from controller.drivers.backup import drdrill, units, view
from controller.drivers.backup import topology as topology_mod
from controller.drivers.drdrill import agent
from controller.state import backups as ledger
from controller.state import drills
from controller.state import store as state_store

T0 = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)
SUB = "shop.example"
DB = naming.database(SUB, "shop")


def server(name: str, region: str, roles: tuple[str, ...], n: int, *, spare: bool = False) -> context.Server:
    return context.Server(name, region, "docker", f"127.0.{n}.1", roles, ((f"127.0.{n}.1", "shared"),), spare=spare)


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


SPARE_US = server("spare-us", "us-east", ("web", "db-mariadb"), 4, spare=True)
SPARE_AP = server("spare-ap", "ap-south", ("web", "db-mariadb", "db-postgresql"), 5, spare=True)
SPARE_EU = server("spare-eu", "eu-west", ("web", "db-mariadb", "db-postgresql"), 6, spare=True)


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
    with pytest.raises((backup_agent.Problem, ValueError)):
        agent.dr_vhost(domain, address, docroot, "x")


@pytest.mark.parametrize(("job", "problem"), [
    pytest.param(jobs.Job(jobs.VERSION, "drill", backup=backupjobs.BackupJob(scratch="abc", dr="nuke")),
                 "unknown dr phase", id="unknown-dr-phase"),
    pytest.param(jobs.Job(jobs.VERSION, "drill", backup=backupjobs.BackupJob(scratch="abc")), "unknown dr phase",
                 id="a-backup-drill"),
    pytest.param(jobs.Job(jobs.VERSION, "drill", backup=backupjobs.BackupJob(scratch="../x", dr="restore")),
                 "not a scratch name", id="scratch-path"),
    pytest.param(jobs.Job(jobs.VERSION, "restore", backup=backupjobs.BackupJob()), "does not do 'restore'",
                 id="a-backup-op"),
    pytest.param(jobs.Job(jobs.VERSION, "drill"), "no backup section", id="no-backup-section"),
])
def test_the_drdrill_entry_refuses_a_job_it_cannot_do(job: jobs.Job, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        agent.handle(job, "/nonexistent")


def test_the_drill_runs_on_the_spares_drdrill_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller side asks the ``drdrill`` entry (the backup entry refuses DR phases)."""
    asked: list[tuple[str, str, jobs.Job]] = []

    class FakeAgent:  # records the job instead of running it over SSH
        def __init__(self, remote: Any, entry: str) -> None:
            self.remote, self.entry = remote, entry

        def run(self, job: jobs.Job, files: Any, *, timeout: float) -> jobs.Outcome:
            asked.append((self.remote, self.entry, job))
            return jobs.Outcome(jobs.VERSION, backup=backupjobs.BackupOutcome(repos=[
                backupjobs.RepoResult("", True)]))

    class FakePool:
        ctx = types.SimpleNamespace(state_dir=Path("/nonexistent"))

        def get(self, server: str) -> str:
            return server
    monkeypatch.setattr(transport, "Agent", FakeAgent)
    monkeypatch.setattr(provisioning.backup, "ca_pem", lambda _state_dir: "CA")
    dr = drdrill.DrDrill(cast(Any, None), cast(Any, None), cast(transport.Pool, FakePool()), ["spare-us"])
    monkeypatch.setattr(dr, "engines", lambda _spare: ["mariadb"])
    assert dr.clean("spare-us") == []
    (remote, entry, job), = asked
    assert (remote, entry, job.op) == ("spare-us", "drdrill", "drill")
    assert job.backup is not None and job.backup.dr == "clean" and job.backup.dr_engines == ["mariadb"]


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


# --- spares are no backup sources; the drill reads with the sources' logins ------------------


def test_a_spare_gets_no_login_and_the_drill_reads_with_the_sources(tmp_path: Path) -> None:
    assert "spare-us" in topo(tmp_path, dataclasses.replace(SPARE_US, spare=False)).sources()
    spared = topo(tmp_path, SPARE_US)
    assert spared.sources() == ["eu-1"]
    p = drdrill.plan(spared, ["spare-us"], snaps("us-east", T0, "us"), item())
    assert isinstance(p, drdrill.Plan) and p.spare == "spare-us" and set(p.parts) == {"eu-1"}
    # the spare restores from eu-1's repository with eu-1's login, never one of its own
    url = spared.repo("eu-1", p.source_region).url
    assert url.startswith("rest:https://eu-1:") and "spare-us" not in url


# --- PHP on the spare ----------------------------------------------------------------------------


@pytest.mark.parametrize(("wanted", "offered", "used", "note"), [
    pytest.param("8.2", ("8.2",), "8.2", "", id="its-own"),
    pytest.param("8.2", ("8.4",), "8.4", "PHP 8.2 is not on the spare: the probe ran on PHP 8.4", id="another"),
    pytest.param("8.2", ("8.4", "8.10"), "8.10", "PHP 8.2 is not on the spare: the probe ran on PHP 8.10",
                 id="the-newest-numerically"),
    pytest.param("8.2", (), "", "the spare has no PHP-FPM: PHP 8.2 not tried", id="none-on-the-spare"),
    pytest.param(None, ("8.2",), "", "", id="no-php-wanted"),
])
def test_the_scratch_copy_runs_its_php_version_else_says_which(wanted: str | None, offered: tuple[str, ...],
                                                                used: str, note: str) -> None:
    assert drdrill.php_version(wanted, offered) == (used, note)


def test_the_php_version_wanted_comes_from_the_effective_hosting() -> None:
    php = {**item(), "effective": {"hosting": {"enabled": True, "php": {"version": "8.4", "handler": "fpm"}}}}
    assert drdrill.DrDrill.php_wanted(php) == "8.4"
    assert drdrill.DrDrill.php_wanted({**item(), "effective": {"hosting": {"enabled": False,
                                                                            "php": {"version": "8.4"}}}}) is None
    assert drdrill.DrDrill.php_wanted(item()) is None


def test_only_the_probe_runs_php_every_other_script_is_refused() -> None:
    conf = agent.dr_vhost(SUB, "127.0.0.1", "/srv/tenantctl-dr/abc/var/www/httpdocs", "abc",
                          "/srv/tenantctl-dr/abc/tenantctl-dr-probe.php")
    probe = conf.index(f"location = {agent.PROBE_URL} {{")
    assert conf.count("fastcgi_pass") == 1 and f"fastcgi_pass unix:{agent.dr_socket('abc')};" in conf
    assert "SCRIPT_FILENAME /srv/tenantctl-dr/abc/tenantctl-dr-probe.php;" in conf
    assert probe < conf.index("location ~ \\.php$ { return 403; }")
    assert "fastcgi" not in agent.dr_vhost(SUB, "127.0.0.1", "/srv/tenantctl-dr/abc/httpdocs", "abc")
    with pytest.raises(backup_agent.Problem):
        agent.dr_vhost(SUB, "127.0.0.1", "/srv/tenantctl-dr/abc/httpdocs", "abc", "/srv/x;\n fastcgi_pass evil")


def test_the_scratch_pool_is_confined_to_its_scratch_user_and_directory() -> None:
    pool = agent.dr_pool("abc", "tdrabc", "/srv/tenantctl-dr/abc")
    assert "[tenantctl-dr-abc]" in pool and "user = tdrabc\ngroup = tdrabc\n" in pool
    assert "php_admin_value[open_basedir] = /srv/tenantctl-dr/abc/\n" in pool
    assert f"listen = {agent.dr_socket('abc')}" in pool
    assert agent.DR_VHOST.match("tenantctl-dr-abc.conf")  # dr_clean finds it by the vhosts' pattern
    with pytest.raises(backup_agent.Problem):
        agent.dr_pool("abc", "www-data", "/srv/tenantctl-dr/abc")
    with pytest.raises(backup_agent.Problem):
        agent.dr_pool_dir("8.2/../../nginx")


@pytest.mark.parametrize("target", [
    pytest.param("/srv/tenantctl-dr/abc/it's.html", id="quote"),
    pytest.param("/srv/tenantctl-dr/abc/a\\b.html", id="backslash"),
    pytest.param("/srv/tenantctl-dr/abc/../../etc/shadow", id="dotdot"),
])
def test_the_probe_refuses_a_path_it_cannot_quote(target: str) -> None:
    with pytest.raises(backup_agent.Problem):
        agent.dr_probe(target)


def test_the_probe_hashes_a_php_only_site_too(tmp_path: Path) -> None:
    root = tmp_path / "httpdocs"
    (root / "lib").mkdir(parents=True)
    (root / "index.php").write_text("<?php echo 1;")
    (root / ".env").write_text("x")
    (root / "lib" / "a.php").write_text("<?php")
    assert agent.probe_file(str(root)) == ""  # nothing static to fetch
    assert agent.first_file(str(root)) == "index.php"
    assert agent.first_file(str(tmp_path / "none")) == ""
    body = agent.dr_probe(str(root / "index.php")).decode()
    assert f"hash_file('sha256', '{root / 'index.php'}')" in body


# --- the drill's HTTP checks and cleaning, against a FAKE spare ---------------------------------

PAGE = b"<p>restored</p>"


class FakeSpareDrill(drdrill.DrDrill):
    """A FAKE spare: answers the agent's jobs with the restored copy's sums (no server),
    recording each job; what the spare serves is ``fake_fetch``."""

    def __init__(self, topo: topology_mod.Topology, store: state_store.Store) -> None:
        super().__init__(topo, store, cast(transport.Pool, None), ["spare-us"])
        self.jobs: list[dict[str, Any]] = []

    def _job(self, spare: str, **kw: Any) -> backupjobs.BackupOutcome:
        self.jobs.append(kw)
        if kw["dr"] == "clean":
            return backupjobs.BackupOutcome(repos=[backupjobs.RepoResult("", True)])
        digest = hashlib.sha256(PAGE).hexdigest()
        return backupjobs.BackupOutcome(parts=[
            backupjobs.PartResult(SUB, "settings", "settings", True, digest="d"),
            backupjobs.PartResult(SUB, "files", "webspace", True, digest="d", index="index.html", index_digest=digest,
                                  php_file="index.html", php_digest=digest, php_version=kw["dr_php"])])


def php_item() -> dict[str, Any]:
    return {**item(), "effective": {"backup": {"content": "settingsAndData"}, "databases": [],
                                    "hosting": {"enabled": True, "php": {"version": "8.2", "handler": "fpm"}}}}


@pytest.mark.parametrize(("spare_php", "probe_says", "ok", "error", "notes"), [
    pytest.param(("8.2",), "8.2", True, None, None, id="its-own-php"),
    pytest.param(("8.4",), "8.4", True, None, "PHP 8.2 is not on the spare: the probe ran on PHP 8.4",
                 id="another-php-is-a-note-not-an-error"),
    pytest.param(("8.2",), "8.4", False, "PHP probe: HTTP 200", None, id="the-probe-answers-another-version"),
    pytest.param(("8.2",), "", False, "PHP probe: HTTP 200", None, id="the-probe-reads-other-bytes"),
    pytest.param(("8.4",), "", False, "PHP probe: HTTP 200", "PHP 8.2 is not on the spare: the probe ran on PHP 8.4",
                 id="a-failed-drill-keeps-its-note-apart"),
])
def test_the_php_probe_decides_and_the_spare_is_cleaned_whatever_happens(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spare_php: tuple[str, ...], probe_says: str, ok: bool,
        error: str | None, notes: str | None) -> None:
    spare = context.Server("spare-us", "us-east", "docker", "127.0.4.1", ("web",), (("127.0.4.1", "shared"),),
                           spare_php, spare=True)
    t = topo(tmp_path, spare)
    digest = hashlib.sha256(PAGE if probe_says else b"other").hexdigest()

    def fake_fetch(address: str, host: str, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
        return 200, PAGE if path == "/" else f"{digest} {probe_says or '8.2'}".encode()
    monkeypatch.setattr(drdrill, "fetch", fake_fetch)
    monkeypatch.setattr(drdrill, "HTTP_WAIT", 0.0)
    d_ = FakeSpareDrill(t, state_store.Store(tmp_path / "state.db", now=lambda: T0))
    p = drdrill.plan(t, ["spare-us"], snaps("us-east", T0, "us") + snaps("eu-west", T0, "eu"), php_item())
    assert isinstance(p, drdrill.Plan), p
    d = d_.drill(php_item(), p, T0)
    assert d.ok is ok and (d.rto_seconds is not None) is ok, d
    assert (d.error or "").startswith(error or "") and (d.error is None) is (error is None), d
    assert d.notes == notes and "is not on the spare" not in (d.error or ""), d
    assert [j["dr"] for j in d_.jobs] == ["restore", "clean"]
    assert d_.jobs[0]["dr_php"] == spare_php[0]


def test_the_spare_of_the_documents_is_no_source_of_the_topology(tmp_path: Path) -> None:
    """From ``Server.spec.spare`` to the context to the topology: bk-spare of the live
    environment's documents gets no repository login and is never backed up."""
    ds = model.load_desired([Path(__file__).resolve().parent / "desired"])
    ctx = context.Context.of(ds, tmp_path)
    assert ctx.servers["bk-spare"].spare and not ctx.servers["bk-a"].spare
    sources = topology_mod.Topology.of(ctx).sources()
    assert "bk-spare" not in sources and "bk-a" in sources


# --- notes: a passed drill's remarks are no error (schema v8, dr_drills.notes) ------------------


@pytest.mark.parametrize(("ok", "error", "notes"), [
    pytest.param(True, None, "PHP 8.2 is not on the spare: the probe ran on PHP 8.4", id="passed-with-a-note"),
    pytest.param(False, "files webspace: digest differs", "PHP 8.2 is not on the spare: the probe ran on PHP 8.4",
                 id="failed-with-a-note"),
    pytest.param(True, None, None, id="passed-without"),
])
def test_notes_are_stored_apart_from_the_error_and_shown(tmp_path: Path, ok: bool, error: str | None,
                                                         notes: str | None) -> None:
    from controller.cli import backup as backup_cli

    store = state_store.Store(tmp_path / "state.db", now=lambda: T0)
    d = dataclasses.replace(drill(SUB, T0, ok), error=error, notes=notes)
    drills.record(store, d)
    back = drills.latest(store)[SUB]
    assert back == d
    doc = back.as_dict()
    assert (doc["ok"], doc["error"], doc["notes"]) == (ok, error, notes)
    line = backup_cli._dr_line(back)
    assert line.startswith(f"{doc['at']} {'ok' if ok else 'FAILED'}"), line
    assert (f"(note: {notes})" in line) is (notes is not None), line
    drills.record(store, dataclasses.replace(d, notes=None))  # the next drill replaces the note
    assert drills.latest(store)[SUB].notes is None
