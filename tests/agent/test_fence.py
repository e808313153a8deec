"""Fencing by generation on the agent's side (issue 10 item 4, DR-1): the agent keeps,
per subscription, the highest generation a job brought (``fence.json`` in its state
directory, replaced atomically) and refuses the parts of a job of a lower one; the
controller's ``transport.Agent`` stamps the generations and turns a refusal into
``transport.Fenced`` (a ``PermanentError``). Run locally with real files; the last
tests run the real agent zipapp through ``transport.Agent`` with a local transport (the
SSH hop replaced by a subprocess), a state store in ``tmp_path`` and an evacuation's
``regions.bump``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from controller import errors
from controller.agent import backupjobs, bundle, fence, jobs, main
from controller.drivers import context, transport
from controller.state import regions
from controller.state import store as state_store

from .conftest import stage_job


def php_job(conf: Path, names: Sequence[str], generations: dict[str, int] | None = None) -> jobs.Job:
    """A transaction writing ``<conf>/<name>.conf`` (staged as ``files/<name>.conf``) per
    subscription; no validator, no reload."""
    return jobs.Job(jobs.VERSION, "apply", generations=generations or {}, items=[
        jobs.Item(n, files=[jobs.File(str(conf / f"{n}.conf"), f"files/{n}.conf")]) for n in names])


def stage_php(stage: Path, names: Sequence[str], text: str) -> None:
    (stage / "files").mkdir(parents=True, exist_ok=True)
    for n in names:
        (stage / "files" / f"{n}.conf").write_text(text)


# --- the fence file ------------------------------------------------------------------


def test_a_lower_generation_is_refused_an_equal_or_higher_one_passes_and_is_recorded(state_dir: Path) -> None:
    assert fence.admit({"a.test": 2, "b.test": 1}) == {}
    assert fence.read() == {"a.test": 2, "b.test": 1}
    refused = fence.admit({"a.test": 1, "b.test": 1})
    assert refused == {"a.test": jobs.Fenced(seen=2, sent=1)}  # b equal: passes
    assert fence.admit({"a.test": 3}) == {}
    assert fence.read() == {"a.test": 3, "b.test": 1}  # raised; the refused job changed nothing
    assert fence.admit({"a.test": 2}) == {"a.test": jobs.Fenced(seen=3, sent=2)}


def test_the_file_is_replaced_atomically_and_only_when_a_generation_rises(state_dir: Path) -> None:
    fence.admit({"a.test": 2})
    path = Path(fence.path())
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {"version": 1, "generations": {"a.test": 2}}
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    fence.admit({"a.test": 2})  # nothing new: not written
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)
    fence.admit({"a.test": 2, "b.test": 1})
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(p.name for p in state_dir.iterdir()) == ["fence.json", "locks"]  # no temporary left


def test_a_write_that_fails_leaves_the_old_file_whole(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fence.admit({"a.test": 2})
    before = Path(fence.path()).read_bytes()

    def fail(src: str, dst: str) -> None:  # FAKE: the disk fails at the rename
        raise OSError(28, "No space left on device")
    with monkeypatch.context() as m:
        m.setattr(os, "replace", fail)
        with pytest.raises(OSError, match="No space"):
            fence.admit({"a.test": 5})
    assert Path(fence.path()).read_bytes() == before
    assert sorted(p.name for p in state_dir.iterdir()) == ["fence.json", "locks"]
    assert fence.read() == {"a.test": 2}


@pytest.mark.parametrize("text", [
    pytest.param("{not json", id="not-json"),
    pytest.param('{"version": 9, "generations": {}}', id="another-format"),
    pytest.param('{"version": 1, "generations": {"a.test": 0}}', id="generation-zero"),
    pytest.param('{"version": 1, "generations": {"a.test": true}}', id="bool-generation"),
])
def test_an_unreadable_fence_file_refuses_the_whole_job_and_is_kept(state_dir: Path, tmp_path: Path,
                                                                    text: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    Path(fence.path()).write_text(text)
    conf, stage = tmp_path / "conf", tmp_path / "stage"
    stage_php(stage, ["a.test"], "new\n")
    stage_job(stage, php_job(conf, ["a.test"], {"a.test": 7}))
    assert main.main("hosting", str(stage)) == 2
    assert not (conf / "a.test.conf").exists() and Path(fence.path()).read_text() == text


@pytest.mark.parametrize("gen", [pytest.param(0, id="zero"), pytest.param(-1, id="negative")])
def test_a_generation_below_one_is_not_a_generation(state_dir: Path, gen: int) -> None:
    with pytest.raises(ValueError, match="not a positive integer"):
        fence.admit({"a.test": gen})


# --- which subscriptions a job writes, and what is left of it -------------------------


def backup_job(op: jobs.Op, subs: Sequence[str], dr: str = "") -> jobs.Job:
    return jobs.Job(jobs.VERSION, op, backup=backupjobs.BackupJob(dr=dr, units=[
        backupjobs.Unit(s, [backupjobs.Part("files", "webspace", path=f"/srv/www/{s}"),
                            backupjobs.Part("db", f"{s[0]}_db", engine="mariadb")]) for s in subs]))


@pytest.mark.parametrize(("job", "subs"), [
    pytest.param(php_job(Path("/x"), ["b.test", "a.test"]), ["a.test", "b.test"], id="apply-items"),
    pytest.param(jobs.Job(jobs.VERSION, "check", expect=[jobs.Expect("a.test")]), [], id="check-reads"),
    pytest.param(backup_job("restore", ["a.test"]), ["a.test"], id="restore"),
    pytest.param(backup_job("backup", ["a.test", "b.test"]), ["a.test", "b.test"], id="backup"),
    pytest.param(backup_job("copy", ["a.test"]), [], id="copy-between-repositories"),
    pytest.param(backup_job("drill", ["a.test"]), [], id="drill-scratch"),
    pytest.param(backup_job("restore", ["a.test"], dr="restore"), [], id="dr-scratch-copy"),
])
def test_the_subscriptions_a_job_writes(job: jobs.Job, subs: list[str]) -> None:
    assert fence.subscriptions(job) == subs


def test_a_restore_of_a_refused_subscription_answers_each_of_its_parts_failed() -> None:
    job = backup_job("restore", ["a.test", "b.test"])
    refused = {"a.test": jobs.Fenced(3, 2)}
    left = fence.split(job, refused)
    assert left is not None and left.backup is not None and [u.subscription for u in left.backup.units] == ["b.test"]
    done = jobs.Outcome(jobs.VERSION, backup=backupjobs.BackupOutcome(parts=[
        backupjobs.PartResult("b.test", "files", "webspace", True)]))
    out = fence.merge(job, refused, done)
    assert out.backup is not None
    assert [(p.subscription, p.kind, p.ok) for p in out.backup.parts] == [
        ("b.test", "files", True), ("a.test", "files", False), ("a.test", "db", False)]
    assert "generation 3 on this server, the job carries generation 2" in out.backup.parts[1].error
    assert out.fenced == refused
    assert fence.split(backup_job("restore", ["a.test"]), refused) is None  # nothing left: the entry never runs


def test_an_unsplittable_job_naming_a_refused_subscription_does_not_run() -> None:
    job = jobs.Job(jobs.VERSION, "pitr", generations={"a.test": 1})
    assert fence.split(job, {"a.test": jobs.Fenced(2, 1)}) is None
    assert fence.split(job, {}) is job


# --- the agent run: main --------------------------------------------------------------


def test_the_agent_writes_nothing_of_a_refused_subscription_and_the_rest_of_the_job(
        state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf, stage = tmp_path / "conf", tmp_path / "stage"
    conf.mkdir()
    (conf / "a.test.conf").write_text("the new primary's\n")
    fence.admit({"a.test": 2})
    stage_php(stage, ["a.test", "b.test"], "stale\n")
    stage_job(stage, php_job(conf, ["a.test", "b.test"], {"a.test": 1, "b.test": 1}))
    assert main.main("hosting", str(stage)) == 0
    out = jobs.decode(jobs.Outcome, json.loads(capsys.readouterr().out))
    assert (conf / "a.test.conf").read_text() == "the new primary's\n"
    assert (conf / "b.test.conf").read_text() == "stale\n"
    assert out.fenced == {"a.test": jobs.Fenced(2, 1)}
    assert not out.results["a.test"].ok and "fenced: a.test is at generation 2" in out.results["a.test"].message
    assert out.results["b.test"].ok
    assert fence.read() == {"a.test": 2, "b.test": 1}


def test_a_job_without_generations_leaves_no_fence_file(state_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    stage_job(tmp_path / "stage", jobs.Job(jobs.VERSION, "check", expect=[jobs.Expect("a.test")]))
    assert main.main("tls", str(tmp_path / "stage")) == 0
    assert not Path(fence.path()).exists()
    assert "fence" not in json.loads(capsys.readouterr().out)["phases"]


# --- the controller's side, through the real zipapp --------------------------------------


class LocalTransport(transport.Transport):
    """FAKE: ``transport.Transport`` with the SSH hop replaced by a local subprocess (the
    batch extracted into a directory under ``tmp_path``); everything else is the
    controller's code and the real agent zipapp."""

    def __init__(self, state_dir: Path, scratch: Path) -> None:
        super().__init__(state_dir, state_dir / "no-key", "127.0.0.1", name="web-us")
        self.scratch = scratch

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = 300.0) -> transport.Completed:
        proc = subprocess.run(list(argv), input=stdin or b"", capture_output=True, timeout=timeout, check=False)
        return transport.Completed(proc.returncode, proc.stdout, proc.stderr)

    def ship(self, files: Iterable[transport.File], then: Sequence[str], *,
             timeout: float = 300.0) -> transport.Completed:
        self.scratch.mkdir(parents=True, exist_ok=True)
        batch = Path(os.path.realpath(self.scratch)) / f"batch.{len(list(self.scratch.iterdir()))}"
        batch.mkdir()
        with tarfile.open(fileobj=io.BytesIO(transport.tar(files))) as tf:
            tf.extractall(batch, filter="data")
        return self.run([*then, str(batch)], timeout=timeout)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The agent's state directory on the "server" (the zipapp's ``lock.STATE_DIR``)."""
    monkeypatch.setattr(bundle, "REMOTE_DIR", str(tmp_path / "agents"))
    transport._installed.clear()
    return tmp_path / "server-state"


def controller(tmp_path: Path, name: str, server: Path) -> tuple[transport.Pool, transport.Agent]:
    """A controller process: its state directory (``<name>/state.db`` if it has a store)
    and a pool whose one server runs the real zipapp locally."""
    ctx = context.Context(tmp_path / name, {"web-us": context.Server("web-us", "us-east", "docker", "127.0.0.1",
                                                                     ("web",), ())})
    (tmp_path / name).mkdir(exist_ok=True)
    pool = transport.Pool(ctx)
    pool["web-us"] = LocalTransport(tmp_path / name, tmp_path / "batches")
    prelude = f"from controller.agent import lock; lock.STATE_DIR = {str(server)!r}; "
    return pool, transport.Agent(pool.get("web-us"), "hosting", prelude=prelude)


def files_for(names: Sequence[str], text: str) -> list[transport.File]:
    return [transport.File(f"files/{n}.conf", text.encode()) for n in names]


def test_a_stale_controller_is_refused_after_an_evacuation_moved_the_subscription(
        tmp_path: Path, server: Path) -> None:
    conf = tmp_path / "conf"
    # the controller of record evacuates: shop.test's generation becomes 2 in its store,
    # and its first job on the new server carries it (read once from the store)
    with state_store.Store(tmp_path / "new" / "state.db") as store:
        assert regions.bump(store, ["shop.test"]) == {"shop.test": 2}
    _pool, new = controller(tmp_path, "new", server)
    out = new.run(php_job(conf, ["shop.test"]), files_for(["shop.test"], "restored in us-east\n"))
    assert out.results["shop.test"].ok and not out.fenced
    assert json.loads((server / "fence.json").read_text())["generations"] == {"shop.test": 2}
    # a controller that still believes in the old placement (its view: generation 1)
    stale_pool, stale = controller(tmp_path, "stale", server)
    stale_pool.use_generations({})
    with pytest.raises(transport.Fenced) as refused:
        stale.run(php_job(conf, ["shop.test"]), files_for(["shop.test"], "stale copy from eu-west\n"))
    assert isinstance(refused.value, errors.PermanentError)
    assert refused.value.refused == {"shop.test": jobs.Fenced(seen=2, sent=1)}
    assert "shop.test is at generation 2 on this server, the job carries generation 1" in str(refused.value)
    assert (conf / "shop.test.conf").read_text() == "restored in us-east\n"
    # its job for another subscription too: that one goes ahead, shop.test is answered refused
    out = stale.run(php_job(conf, ["shop.test", "blog.test"]),
                    files_for(["shop.test", "blog.test"], "stale copy from eu-west\n"))
    assert out.fenced == {"shop.test": jobs.Fenced(2, 1)} and out.results["blog.test"].ok
    assert not out.results["shop.test"].ok
    assert (conf / "shop.test.conf").read_text() == "restored in us-east\n"
    assert (conf / "blog.test.conf").read_text() == "stale copy from eu-west\n"
    # the controller of record goes on: an equal generation passes
    out = new.run(php_job(conf, ["shop.test"]), files_for(["shop.test"], "next change\n"))
    assert out.results["shop.test"].ok and (conf / "shop.test.conf").read_text() == "next change\n"


def test_jobs_carry_the_pools_view_and_1_for_a_subscription_never_moved(tmp_path: Path, server: Path) -> None:
    pool, agent = controller(tmp_path, "ctl", server)  # no state.db: every subscription at 1
    job = php_job(tmp_path / "conf", ["a.test", "b.test"])
    assert agent.stamped(job).generations == {"a.test": 1, "b.test": 1}
    pool.use_generations({"a.test": 4})
    assert agent.stamped(job).generations == {"a.test": 4, "b.test": 1}
    assert agent.stamped(job, writes=["c.test"]).generations == {"a.test": 4, "b.test": 1, "c.test": 1}
    check = jobs.Job(jobs.VERSION, "check", expect=[jobs.Expect("a.test")])
    assert agent.stamped(check) is check  # writes nothing: carries nothing
