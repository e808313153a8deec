"""Moves of a subscription (issue 13 item 2): the step machine of ``reconcile.move``
journaled in the state store, killed after (and before) the work of every step then run
again: the move completes with each step recorded once; the planner places the
subscription on the target from the step ``placing`` on; the checks refuse with nothing
changed. The engine runs with in-memory drivers; the steps' work is a fake that records
what it did and can simulate a SIGKILL (``FakeOpsThatDies``)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controller import model
from controller.drivers import base, slices
from controller.model.desired import DesiredState
from controller.reconcile import engine, move_live
from controller.reconcile import move as move_mod
from controller.reconcile import status as status_mod
from controller.state import events, moves, regions
from controller.state import store as state_store

from .conftest import T0, Clock
from .memdriver import MemDriver

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUB, SOURCE, TARGET = "saint-ex.example.net", "us-east-1", "eu-west-1"
WORKED = ["frozen", "backed-up", "placed", "restored", "verified", "switched"]


class Killed(BaseException):
    """What a SIGKILL leaves: nothing after it runs (not an error the mover handles)."""


class FakeOpsThatDies:
    """``move.Ops`` that records each step's work, places through the real engine (with
    in-memory drivers) and can die before or after one step's work."""

    def __init__(self, eng: engine.Engine, ds: DesiredState, die: tuple[str, str] | None = None) -> None:
        self.eng = eng
        self.ds = ds
        self.die = die
        self.calls: list[str] = []
        self.servers: dict[str, str | None] = {}

    def _do(self, step: str, mv: moves.Move) -> dict[str, Any]:
        if self.die == (step, "before"):
            raise Killed(step)
        if step in ("placed", "switched") or (step == "aborted" and mv.data.get("generation")):
            report = self.eng.reconcile(self.ds, only=[mv.subscription], force=[mv.subscription], command="move")
            assert report.ok, report.failed
            rec = self.eng.store.get_subscription(mv.subscription)
            self.servers[step] = rec.server if rec else None
        self.calls.append(step)
        if self.die == (step, "after"):
            raise Killed(step)
        return {f"{step}By": "fake"}

    def freeze(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("frozen", mv)

    def backup(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("backed-up", mv)

    def place(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("placed", mv)

    def restore(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("restored", mv)

    def verify(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("verified", mv)

    def switch(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("switched", mv)

    def remove(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("removed", mv)

    def abort(self, mv: moves.Move) -> dict[str, Any]:
        return self._do("aborted", mv)


@pytest.fixture
def ds() -> DesiredState:
    return model.load_desired([EXAMPLES])


@pytest.fixture
def eng(store: state_store.Store, clock: Clock, ds: DesiredState) -> engine.Engine:
    drivers: dict[str, base.Driver] = {**engine.default_drivers(), "web": MemDriver("web"), "db": MemDriver("db")}
    e = engine.Engine(store, drivers, clock=clock)
    assert e.reconcile(ds).ok
    assert store.get_subscription(SUB).server == SOURCE
    return e


def _steps(store: state_store.Store) -> list[str]:
    return [e.data["step"] for e in events.list_events(store, subject=SUB, concern="move", limit=None)
            if e.action in ("move", "moved") and e.data]


def test_a_move_goes_through_every_step_once_and_places_on_the_target(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine, tmp_path: Path) -> None:
    ops = FakeOpsThatDies(eng, ds)
    mover = move_mod.Mover(store, ops, clock=clock, actor="test")
    out = mover.move(ds, SUB, TARGET, substitute_days=7)
    assert out.ok, out.error
    assert out.step == "switched" and ops.calls == WORKED
    assert ops.servers == {"placed": TARGET, "switched": TARGET}
    assert out.substitute_until == clock.now + dt.timedelta(days=7)
    status = {d["name"]: d for d in store.get_status()}[SUB]
    assert (status["server"], status["region"]) == (TARGET, "eu-west")
    assert {d["name"]: d["server"] for d in status["effective"]["databases"]} == {"crm": TARGET, "wiki": TARGET}
    # while it moves, its address records carry a short TTL (the switch spreads within a minute)
    assert status["moving"] is True and slices.dns(status)["addressTtl"] == slices.MOVE_TTL  # type: ignore[arg-type]
    assert regions.generation(store, SUB) == 2
    shown = next(i for i in status_mod.items(store) if i["name"] == SUB)
    moving = [c for c in shown["conditions"] if c["type"] == "Moving"]
    assert [c["reason"] for c in moving] == ["Substitute"] and f"from {SOURCE} to {TARGET}" in moving[0]["message"]
    assert shown["move"]["step"] == "switched"
    # within the substitute period a re-run does nothing; after it, the source is removed
    again = mover.move(ds, SUB, TARGET)
    assert again.ok and again.done == [] and ops.calls == WORKED
    clock.now += dt.timedelta(days=7, seconds=1)
    assert [o.subscription for o in mover.due(ds)] == [SUB]
    assert ops.calls == [*WORKED, "removed"]
    assert _steps(store) == list(moves.STEPS)
    # across regions: placed in the target's region until the document says so
    assert moves.targets(store) == {SUB: TARGET}
    assert move_mod.condition(moves.all_moves(store)[SUB])["reason"] == "RegionToEdit"
    assert eng.reconcile(ds).ok and store.get_subscription(SUB).server == TARGET
    moved = _in_region(tmp_path, SUB, "eu-west")
    assert [o.subscription for o in mover.due(moved)] == [SUB]
    assert moves.all_moves(store) == {}
    assert [e.action for e in events.list_events(store, subject=SUB, concern="move", limit=None)][-1] == "moved"
    report = eng.reconcile(moved)
    assert report.ok and store.get_subscription(SUB).server == TARGET  # stays, recorded, once the move is over
    over = {d["name"]: d for d in store.get_status()}[SUB]
    assert "moving" not in over and "addressTtl" not in slices.dns(over)  # type: ignore[arg-type]
    assert "dns" in report.outcomes[SUB], "the records' TTL did not go back by a pass of the dns concern"
    assert {d["name"]: d for d in store.get_status()}[SUB]["conflicts"] == []


@pytest.mark.parametrize("die", [pytest.param((s, w), id=f"{w}-{s}") for s in [*WORKED, "removed"]
                                 for w in ("before", "after")])
def test_killed_at_any_step_then_run_again_completes_once(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine, die: tuple[str, str]) -> None:
    step, when = die
    dying = FakeOpsThatDies(eng, ds, die)
    with pytest.raises(Killed):
        move_mod.Mover(store, dying, clock=clock).move(ds, SUB, TARGET)
        clock.now += dt.timedelta(days=8)
        move_mod.Mover(store, dying, clock=clock).due(ds)
    ops = FakeOpsThatDies(eng, ds)  # a new process
    out = move_mod.Mover(store, ops, clock=clock).move(ds, SUB, TARGET)
    assert out.ok, out.error
    if step != "removed":
        clock.now += dt.timedelta(days=8)
        move_mod.Mover(store, ops, clock=clock).due(ds)
    assert _steps(store) == list(moves.STEPS)  # every step recorded once, in order
    # the step that died is done again (its work is idempotent), every other one once
    everything = dying.calls + ops.calls
    assert everything == [s for s in [*WORKED, "removed"] for _ in range(2 if (s == step and when == "after") else 1)]
    assert regions.generation(store, SUB) == 2  # placed once
    assert moves.steps(store) == {SUB: "removed"}
    assert store.get_subscription(SUB).server == TARGET


def test_a_failed_step_stops_the_move_there_and_a_re_run_resumes(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    class FakeOpsRestoreFails(FakeOpsThatDies):
        def restore(self, mv: moves.Move) -> dict[str, Any]:
            raise move_live.StepFailed("repository unreachable")

    out = move_mod.Mover(store, FakeOpsRestoreFails(eng, ds), clock=clock).move(ds, SUB, TARGET)
    assert not out.ok and out.step == "placed" and out.error == "step restored: repository unreachable"
    failed = events.list_events(store, subject=SUB, action="failed", concern="move")
    assert len(failed) == 1 and "a re-run resumes there" in failed[0].message
    item = {d["name"]: d for d in store.get_status()}[SUB]
    assert item["server"] == TARGET
    ops = FakeOpsThatDies(eng, ds)
    out = move_mod.Mover(store, ops, clock=clock).move(ds, SUB, TARGET)
    assert out.ok and ops.calls == ["restored", "verified", "switched"]


def test_the_planner_places_on_the_target_only_from_the_step_placing_on(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    moves.start(store, SUB, SOURCE, TARGET, "test", clock.now, data={"sourceIp": "127.0.12.1"})
    for step in ("frozen", "backed-up"):
        moves.advance(store, SUB, step, clock.now)
        assert eng.reconcile(ds).ok
        assert store.get_subscription(SUB).server == SOURCE, step
    moves.advance(store, SUB, "placing", clock.now)
    assert moves.targets(store) == {SUB: TARGET}
    report = eng.reconcile(ds)
    assert report.ok and f"move:{SOURCE}->{TARGET}" in report.planned.actions[SUB]
    rec = store.get_subscription(SUB)
    assert rec.server == TARGET and set(rec.db_servers.values()) == {TARGET}
    # DNS keeps the source's address until the move switches (the dns driver reads it)
    for step in ("placed", "restored", "verified"):
        assert moves.substitutes(store) == {SUB: "127.0.12.1"}, step
        moves.advance(store, SUB, step, clock.now)
    moves.advance(store, SUB, "switching", clock.now)
    assert moves.substitutes(store) == {}


def _edited(tmp_path: Path, sub: str, old: str, new: str) -> DesiredState:
    """The examples with ``old`` replaced by ``new`` in ``sub``'s document."""
    shutil.copytree(EXAMPLES, tmp_path / "desired", dirs_exist_ok=True)
    path = tmp_path / "desired" / "subscriptions.yaml"
    text = path.read_text()
    head = f"metadata: {{name: {sub}}}\nspec:\n"
    start = text.index(head)
    end = text.index("---", start)
    assert old in text[start:end]
    path.write_text(text[:start] + text[start:end].replace(old, new, 1) + text[end:])
    return model.load_desired([tmp_path / "desired"])


def _pinned(tmp_path: Path, sub: str, server: str) -> DesiredState:
    return _edited(tmp_path, sub, "spec:\n", f"spec:\n  server: {server}\n")


def _in_region(tmp_path: Path, sub: str, region: str) -> DesiredState:
    return _edited(tmp_path, sub, "  region: us-east\n", f"  region: {region}\n")


@pytest.mark.parametrize(("sub", "target", "pin", "error"), [
    pytest.param("nobody.example.org", TARGET, None, "unknown subscription 'nobody.example.org'", id="unknown-sub"),
    pytest.param(SUB, "nowhere-1", None, "unknown server 'nowhere-1'", id="unknown-server"),
    pytest.param(SUB, "ap-southeast-1", None, "ap-southeast-1 has no web role", id="no-web"),
    pytest.param(SUB, SOURCE, None, f"{SUB} is on {SOURCE} already", id="same-server"),
    pytest.param(SUB, TARGET, SOURCE, f"spec.server pins {SUB} to {SOURCE}: edit spec.server instead",
                 id="pinned-elsewhere"),
    pytest.param("vol-de-nuit.example.org", TARGET, None, "hosting.php.version: plan 8.4, available 8.2",
                 id="sync-3-php-84-on-82"),
])
def test_checks_refuse_with_nothing_changed(store: state_store.Store, clock: Clock, ds: DesiredState,
                                            eng: engine.Engine, tmp_path: Path, sub: str, target: str,
                                            pin: str | None, error: str) -> None:
    if pin is not None:
        ds = _pinned(tmp_path, sub, pin)
    before = store._fetchall("SELECT COUNT(*) FROM events")
    with pytest.raises(move_mod.CannotMove, match=error.replace(".", r"\.").replace("(", r"\(")):
        move_mod.Mover(store, FakeOpsThatDies(eng, ds), clock=clock).move(ds, sub, target)
    assert moves.all_moves(store) == {}
    assert store._fetchall("SELECT COUNT(*) FROM events") == before


def test_a_move_to_another_target_while_one_is_in_progress_is_refused(
        store: state_store.Store, clock: Clock, ds: DesiredState, eng: engine.Engine) -> None:
    moves.start(store, SUB, SOURCE, TARGET, "test", clock.now)
    with pytest.raises(move_mod.CannotMove, match=f"is moving to {TARGET} \\(step started\\)"):
        move_mod.check(ds, store, SUB, "eu-west-2")
    assert move_mod.check(ds, store, SUB, TARGET) == SOURCE  # the same move: resumed


def test_status_condition_names_the_step_and_both_servers(store: state_store.Store, clock: Clock) -> None:
    mv = moves.start(store, SUB, SOURCE, TARGET, "test", clock.now)
    c = move_mod.condition(moves.advance(store, SUB, "backed-up", clock.now))
    assert (c["type"], c["reason"]) == ("Moving", "backed-up") and SOURCE in c["message"] and TARGET in c["message"]
    until = clock.now + dt.timedelta(days=7)
    c = move_mod.condition(moves.advance(store, mv.subscription, "switched", clock.now, substitute_until=until))
    assert c["reason"] == "Substitute" and until.isoformat() in c["message"]


def test_compare_sums_names_what_differs() -> None:
    src = {"db:x": {"sums": {"tables": {"t": {"rows": 2, "digest": "a"}}}}, "files:w": {"sums": {"digest": "f"}}}
    assert move_live.compare_sums(src, src) == []
    bad = {"db:x": {"sums": {"tables": {"t": {"rows": 1, "digest": "b"}}}}}
    assert move_live.compare_sums(src, bad) == ["db:x: tables differ: t", "files:w: missing on the target"]


def test_compare_manifests_names_missing_extra_and_changed_files(tmp_path: Path) -> None:
    """The manifest script itself (real find, sort and sha256sum), logs/ and tmp/ left out."""
    for rel, text in {"httpdocs/a.txt": "a", "httpdocs/sp ace": "b", "logs/access.log": "x", "tmp/t": "y"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    done = subprocess.run(["sh", "-c", move_live.MANIFEST, "sh", str(tmp_path)], capture_output=True, text=True,
                          check=True)
    paths = [line.partition("  ")[2] for line in done.stdout.splitlines()]
    assert paths == ["./httpdocs/a.txt", "./httpdocs/sp ace"]
    src = {"./a": "1", "./b": "2", "./c": "3"}
    assert move_live.compare_manifests(src, dict(src)) == []
    assert move_live.compare_manifests(src, {"./a": "1", "./b": "9", "./d": "4"}) == ["files: 3 differ (./b, ./c, ./d)"]


class FakeWebSpaces:
    """``move_live.FileSync`` over two in-memory web spaces: ``sync_files`` copies the source's
    onto the target (deleting ``gone`` there), and a writer may change the source after
    each copy, like a site that keeps writing while its move is verified."""

    def __init__(self, source: dict[str, str], target: dict[str, str], writes: list[dict[str, str | None]]) -> None:
        self.spaces = {SOURCE: source, TARGET: target}
        self.writes = writes
        self.synced: list[list[str]] = []

    def manifest(self, server: str, sub: str) -> dict[str, str]:
        assert sub == SUB
        return dict(self.spaces[server])

    def sync_files(self, mv: moves.Move, gone: list[str]) -> dict[str, Any]:
        assert (mv.source, mv.target) == (SOURCE, TARGET)
        target = self.spaces[TARGET]
        target.update(self.spaces[SOURCE])
        for path in gone:
            del target[path]
        self.synced.append(gone)
        if self.writes:  # the site writes on the source again, after this copy
            for path, digest in self.writes.pop(0).items():
                if digest is None:
                    self.spaces[SOURCE].pop(path, None)
                else:
                    self.spaces[SOURCE][path] = digest
        return {}


MV = moves.Move(SUB, SOURCE, TARGET, "restored", T0, T0, "test")


@pytest.mark.parametrize(("writes", "copies"), [
    pytest.param([], 1, id="written-after-the-backup-copied-once"),
    pytest.param([{"./httpdocs/upload.jpg": "u2"}], 2, id="written-again-during-the-first-copy"),
    pytest.param([{"./httpdocs/upload.jpg": "u2"}, {"./httpdocs/cache.html": None}], 3, id="three-copies"),
])
def test_files_written_on_the_source_after_its_backup_are_copied_until_equal(
        writes: list[dict[str, str | None]], copies: int) -> None:
    """Files are not frozen: verification copies the source's files again (deleting on
    the target what the source deleted) until both web spaces are equal."""
    source = {"./httpdocs/index.php": "a", "./httpdocs/upload.jpg": "u1"}  # upload.jpg: after the backup
    target = {"./httpdocs/index.php": "a", "./httpdocs/cache.html": "c"}  # cache.html: deleted on the source since
    fake = FakeWebSpaces(source, target, list(writes))
    if copies == 3:
        fake.spaces[SOURCE]["./httpdocs/cache.html"] = "c"  # deleted only by the second write
        fake.spaces[TARGET]["./httpdocs/upload.jpg"] = "u0"
    got = move_live.converge_files(fake, MV)
    assert fake.spaces[SOURCE] == fake.spaces[TARGET]
    assert got["fileRounds"] == copies and len(fake.synced) == copies and got["files"] == len(fake.spaces[SOURCE])
    if copies == 1:
        assert fake.synced == [["./httpdocs/cache.html"]] and got["filesCarried"] == [2]


def test_files_that_keep_changing_fail_the_verification_after_three_copies() -> None:
    fake = FakeWebSpaces({"./a": "1"}, {"./a": "0"}, [{"./a": str(n)} for n in range(2, 10)])
    with pytest.raises(move_live.StepFailed, match=r"files: 1 differ \(\./a\) after 3 copies of the files written on "
                                                  f"{SOURCE} since its backup"):
        move_live.converge_files(fake, MV)
    assert len(fake.synced) == move_live.FILE_ROUNDS == 3


def test_equal_web_spaces_need_no_copy() -> None:
    fake = FakeWebSpaces({"./a": "1"}, {"./a": "1"}, [])
    assert move_live.converge_files(fake, MV) == {"files": 1, "fileRounds": 0, "filesCarried": []}
    assert fake.synced == []


@pytest.mark.parametrize(("path", "ok"), [
    pytest.param("./httpdocs/a b.txt", True, id="inside"),
    pytest.param("./../etc/passwd", False, id="dot-dot"),
    pytest.param("/etc/passwd", False, id="absolute"),
    pytest.param("./a//b", False, id="empty-part"),
])
def test_only_paths_inside_the_web_space_are_deleted_on_the_target(path: str, ok: bool) -> None:
    assert move_live._relative(path) is ok


def test_the_removal_script_deletes_inside_the_web_space_only(tmp_path: Path) -> None:
    """The real sh: files the source no longer has are removed on the target; a path
    through a symbolic link (to outside the web space) is left, with a warning."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "httpdocs" / "sub").mkdir(parents=True)
    outside.mkdir()
    for rel in ("httpdocs/gone.txt", "httpdocs/sub/gone 2.txt", "top.txt", "httpdocs/kept.txt"):
        (home / rel).write_text("x")
    (outside / "victim.txt").write_text("keep me")
    (home / "httpdocs" / "link").symlink_to(outside)
    done = subprocess.run(["sh", "-c", move_live.REMOVE, "sh", str(home), "./httpdocs/gone.txt",
                           "./httpdocs/sub/gone 2.txt", "./top.txt", "./httpdocs/link/victim.txt", "./missing/x"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "left ./httpdocs/link/victim.txt: a link on its way" in done.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and not p.is_symlink()) == [
        "httpdocs/kept.txt"]
    assert (outside / "victim.txt").read_text() == "keep me"
