"""The transactional install, run locally: validate once, isolate the items that break
validation, roll back what a reload did not take, and the journal that completes or
rolls back a transaction whose agent was killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.agent import jobs, journal, phases, services, transaction

from .conftest import stage_job, validator

SVC = jobs.Service("svc", "/nonexistent/svc.pid", "SIGHUP", "workers", ["true"])


class Reloads:
    """Stands in for ``services.reload``: records the calls, fails the n-th if asked."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_at = fail_at

    def __call__(self, service: jobs.Service, sockets: list[str]) -> str:
        self.calls.append((service.name, sockets))
        return "no new configuration loaded after 45s: reload failed" if len(self.calls) == self.fail_at else ""


@pytest.fixture
def reloads(monkeypatch: pytest.MonkeyPatch) -> Reloads:
    fake = Reloads()
    monkeypatch.setattr(services, "reload", fake)
    return fake


def job_for(conf: Path, stage: Path, contents: dict[str, str], **extra: object) -> jobs.Job:
    """One item per name, each with one file ``<conf>/<name>.conf``."""
    (stage / "files").mkdir(parents=True, exist_ok=True)
    items = []
    for name, text in contents.items():
        (stage / "files" / f"{name}.conf").write_text(text)
        items.append(jobs.Item(name, files=[jobs.File(str(conf / f"{name}.conf"), f"files/{name}.conf")],
                               sockets=[f"/run/{name}.sock"]))
    return jobs.Job(jobs.VERSION, "apply", items=items, validate=[validator(conf)], reload=[SVC], **extra)  # type: ignore[arg-type]


def test_changed_files_are_installed_validated_once_and_reloaded_once(tmp_path: Path, reloads: Reloads,
                                                                      state_dir: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.conf").write_text("a v1\n")
    (conf / "b.conf").write_text("b v1\n")
    before = os.stat(conf / "b.conf").st_mtime_ns
    out = transaction.Transaction(job_for(conf, tmp_path / "stage", {"a": "a v2\n", "b": "b v1\n"}),
                                  str(tmp_path / "stage")).run()
    assert out.results == {"a": jobs.ItemResult(True, "", True), "b": jobs.ItemResult(True, "", False)}
    assert (conf / "a.conf").read_text() == "a v2\n" and os.stat(conf / "b.conf").st_mtime_ns == before
    assert phases.PHASES["validations"] == 1 and reloads.calls == [("svc", ["/run/a.sock"])]  # the changed ones
    assert not Path(journal.path()).exists()
    # nothing differs: no validation, no reload
    phases.PHASES.clear()
    out = transaction.Transaction(job_for(conf, tmp_path / "stage2", {"a": "a v2\n"}), str(tmp_path / "stage2")).run()
    assert out.reloaded == [] and "validations" not in phases.PHASES and len(reloads.calls) == 1


@pytest.mark.parametrize("bad", [
    pytest.param("BAD", id="the-validator-names-the-file"),
    pytest.param("ANON", id="found-by-bisection"),
])
def test_only_the_items_that_break_validation_fail_and_keep_their_previous_files(
        tmp_path: Path, reloads: Reloads, bad: str) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "c.conf").write_text("c v1\n")
    contents = {"a": "a v2\n", "b": "b v2\n", "c": f"c v2 {bad}\n", "d": "d v2\n", "e": "e v2\n"}
    out = transaction.Transaction(job_for(conf, tmp_path / "stage", contents), str(tmp_path / "stage")).run()
    assert [n for n, r in out.results.items() if not r.ok] == ["c"]
    message = out.results["c"].message
    assert (str(conf / "c.conf") in message) if bad == "BAD" else ("configuration test failed" in message)
    assert (conf / "c.conf").read_text() == "c v1\n"
    assert all((conf / f"{n}.conf").read_text() == f"{n} v2\n" for n in "abde")
    assert len(reloads.calls) == 1


def test_an_invalid_server_fails_the_batch_naming_the_cause_and_changes_nothing(tmp_path: Path,
                                                                                 reloads: Reloads) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "other.conf").write_text("BAD left by hand\n")
    out = transaction.Transaction(job_for(conf, tmp_path / "stage", {"a": "a v2\n"}), str(tmp_path / "stage")).run()
    assert not out.results["a"].ok and "invalid before this change" in out.results["a"].message
    assert not (conf / "a.conf").exists() and reloads.calls == []


def test_a_reload_that_fails_restores_the_previous_files_and_brings_the_service_up_on_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Reloads(fail_at=1)
    monkeypatch.setattr(services, "reload", fake)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.conf").write_text("a v1\n")
    out = transaction.Transaction(job_for(conf, tmp_path / "stage", {"a": "a v2\n", "n": "new\n"}),
                                  str(tmp_path / "stage")).run()
    assert not out.results["a"].ok and not out.results["n"].ok
    assert "reload failed" in out.results["a"].message and "previous files restored" in out.results["a"].message
    assert (conf / "a.conf").read_text() == "a v1\n" and not (conf / "n.conf").exists()
    assert fake.calls == [("svc", ["/run/a.sock", "/run/n.sock"]), ("svc", [])]
    assert not Path(journal.path()).exists()


def test_writes_go_in_list_order_and_removals_in_reverse_so_nothing_names_a_missing_file(
        tmp_path: Path, reloads: Reloads) -> None:
    """The tls layout: a certificate bundle, then the include that names it."""
    conf, stage = tmp_path / "conf", tmp_path / "stage"
    (stage / "files").mkdir(parents=True)
    (stage / "files" / "bundle").write_text("key")
    (stage / "files" / "inc").write_text("include bundle")
    order: list[str] = []
    real = transaction.files.write

    def spy(path: str, data: bytes | None, mode: int = 0o644, **kw: object) -> None:
        order.append(("write " if data is not None else "remove ") + Path(path).name)
        real(path, data, mode, **kw)  # type: ignore[arg-type]

    transaction.files.write, saved = spy, real  # type: ignore[assignment]
    try:
        item = jobs.Item("a", files=[jobs.File(str(conf / "bundle.pem"), "files/bundle", 0o600),
                                     jobs.File(str(conf / "a.conf"), "files/inc")])
        transaction.Transaction(jobs.Job(jobs.VERSION, "apply", items=[item]), str(stage)).run()
        assert order == ["write bundle.pem", "write a.conf"]
        assert (conf / "bundle.pem").stat().st_mode & 0o777 == 0o600
        order.clear()
        gone = jobs.Item("a", "delete", files=[jobs.File(str(conf / "bundle.pem"), None), jobs.File(str(conf / "a.conf"), None)])
        transaction.Transaction(jobs.Job(jobs.VERSION, "apply", items=[gone]), str(stage)).run()
        assert order == ["remove a.conf", "remove bundle.pem"]
        # pruned includes (a deleted subscription's) go before the bundle the item names
        (conf / "bundle.pem").write_text("key")
        (conf / "a.conf").write_text("include bundle")
        order.clear()
        pruned = jobs.Item("a", "delete", files=[jobs.File(str(conf / "bundle.pem"), None)],
                           prune=[jobs.Prune(str(conf), "a.", [])])
        transaction.Transaction(jobs.Job(jobs.VERSION, "apply", items=[pruned]), str(stage)).run()
        assert order == ["remove a.conf", "remove bundle.pem"]
    finally:
        transaction.files.write = saved  # type: ignore[assignment]


def test_prune_removes_what_the_item_no_longer_has_within_the_transaction(tmp_path: Path, reloads: Reloads) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    for name in ("wa.x.conf", "wa.old.conf", "wb.y.conf"):
        (conf / name).write_text("BAD" if name == "wa.old.conf" else "ok")
    job = jobs.Job(jobs.VERSION, "apply", validate=[validator(conf)], reload=[SVC], items=[
        jobs.Item("a", prune=[jobs.Prune(str(conf), "wa.", [str(conf / "wa.x.conf")])])])
    out = transaction.Transaction(job, str(tmp_path)).run()
    assert out.results["a"] == jobs.ItemResult(True, "", True)
    assert sorted(p.name for p in conf.iterdir()) == ["wa.x.conf", "wb.y.conf"] and len(reloads.calls) == 1


# --- the journal ---------------------------------------------------------------------------


def test_a_transaction_killed_before_its_reload_is_rolled_back_then_applied_and_reloaded_once(
        tmp_path: Path, reloads: Reloads) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.conf").write_bytes(b"old a\n")
    job = job_for(conf, tmp_path / "stage", {"a": "new a\n", "b": "new b\n"})
    # the killed agent: journal written, files replaced, no reload
    journal.begin({str(conf / "a.conf"): b"old a\n", str(conf / "b.conf"): None}, {}, [["true"]], [SVC])
    (conf / "a.conf").write_bytes(b"new a\n")
    (conf / "b.conf").write_bytes(b"new b\n")
    out = transaction.Transaction(job, str(tmp_path / "stage")).run()
    assert out.recovered == jobs.Recovered(2, "")
    assert all(r.ok and r.changed for r in out.results.values()), out
    assert [name for name, _ in reloads.calls] == ["svc"]  # once, although the files were in place
    assert (conf / "a.conf").read_bytes() == b"new a\n" and (conf / "b.conf").read_bytes() == b"new b\n"
    assert not Path(journal.path()).exists()


def test_a_rolled_back_transaction_of_another_service_is_validated_and_reloaded_too(
        tmp_path: Path, reloads: Reloads) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    other = jobs.Service("php-fpm", "/nonexistent/fpm.pid", "SIGUSR2", "pidfile", ["true"])
    journal.begin({str(conf / "pool.conf"): b"old pool\n"}, {str(conf / "pool.conf"): 0o600}, [["true"]], [other])
    (conf / "pool.conf").write_bytes(b"half-written new pool\n")
    out = transaction.Transaction(job_for(conf, tmp_path / "stage", {"a": "a\n"}), str(tmp_path / "stage")).run()
    assert (conf / "pool.conf").read_bytes() == b"old pool\n"
    assert (conf / "pool.conf").stat().st_mode & 0o777 == 0o600
    assert [name for name, _ in reloads.calls] == ["svc", "php-fpm"] and out.reloaded == ["svc", "php-fpm"]
    assert out.recovered == jobs.Recovered(1, "")


def test_the_journal_keeps_any_bytes(tmp_path: Path) -> None:
    journal.begin({"/x": bytes(range(256)), "/y": None}, {"/x": 0o600}, [["nginx", "-t"]], [SVC])
    entry = journal.load()
    assert entry is not None and entry.files == {"/x": bytes(range(256)), "/y": None} and entry.reload == [SVC]


KILL_AFTER_FIRST_WRITE = """
import os, signal, sys
from controller.agent import files, lock, main, services
lock.STATE_DIR = sys.argv[3]
real = files.write
def write(path, data, *a, **kw):
    real(path, data, *a, **kw)
    if data is not None and path.endswith('.conf'):
        os.kill(os.getpid(), signal.SIGKILL)
files.write = write
sys.exit(main.main(sys.argv[1], sys.argv[2]))
"""


def test_an_agent_sigkilled_mid_install_leaves_a_journal_the_next_run_completes(
        tmp_path: Path, state_dir: Path, reloads: Reloads) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.conf").write_text("a v1\n")
    (conf / "b.conf").write_text("b v1\n")
    stage = tmp_path / "stage"
    job = job_for(conf, stage, {"a": "a v2\n", "b": "b v2\n"})
    stage_job(stage, job)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_WRITE, "tls", str(stage), str(state_dir)],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (conf / "a.conf").read_text() == "a v2\n" and (conf / "b.conf").read_text() == "b v1\n"  # half done
    entry = journal.load()
    assert entry is not None and entry.files == {str(conf / "a.conf"): b"a v1\n", str(conf / "b.conf"): b"b v1\n"}
    # the next run (a new batch with the same content) rolls back, then applies it whole
    stage2 = tmp_path / "stage2"
    out = transaction.Transaction(job_for(conf, stage2, {"a": "a v2\n", "b": "b v2\n"}), str(stage2)).run()
    assert out.recovered == jobs.Recovered(2, "") and all(r.ok and r.changed for r in out.results.values())
    assert (conf / "a.conf").read_text() == "a v2\n" and (conf / "b.conf").read_text() == "b v2\n"
    assert len(reloads.calls) == 1 and journal.load() is None
    assert json.loads(json.dumps(jobs.encode(out)))["recovered"] == {"files": 2, "problem": ""}
