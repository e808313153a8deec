"""The parse cache (issue 15): an unchanged file is read once; any byte changed, another
tenantctl, or a file with an error is read again, and messages never change."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import pydantic
import pytest

import controller
from controller import errors, model
from controller.model import cache, kinds, loader

from .cli_run import BASE, CORPUS, EXAMPLES

CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    d = tmp_path / "desired"
    shutil.copytree(EXAMPLES, d)
    return d


def _load(paths: list[Path], cache_dir: Path) -> tuple[list[loader.Document], list[errors.Issue], cache.ParseCache]:
    pc = cache.ParseCache(cache_dir)
    docs, issues = loader.load(paths, pc)
    return docs, issues, pc


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob(f"*{cache.SUFFIX}"))


def _message(paths: list[Path], cache_dir: Path | None) -> str:
    with pytest.raises(errors.InputError) as exc:
        model.load_desired(paths, cache_dir=cache_dir)
    return str(exc.value)


def test_an_unchanged_file_is_read_from_the_cache(desired: Path, tmp_path: Path) -> None:
    files = list(loader.iter_files([desired]))
    docs1, issues1, first = _load([desired], tmp_path / "c")
    assert (first.hits, first.misses, first.writes) == (0, len(files), len(files))
    docs2, issues2, second = _load([desired], tmp_path / "c")
    assert (second.hits, second.misses, second.writes) == (len(files), 0, 0)
    assert issues1 == issues2 == []
    assert docs1 == docs2
    assert [d.digest for d in docs1] == [d.digest for d in docs2]
    assert [d.file for d in docs1] == [d.file for d in docs2]
    for a, b in zip(docs1, docs2, strict=True):
        assert dict(a.lines) == dict(b.lines), a.name


def test_the_cache_serves_the_same_desired_state(desired: Path, tmp_path: Path) -> None:
    plain = model.load_desired([desired])
    model.load_desired([desired], cache_dir=tmp_path / "c")
    cached = model.load_desired([desired], cache_dir=tmp_path / "c")
    assert cached.subscriptions == plain.subscriptions
    assert cached.plans == plain.plans
    assert cached.servers == plain.servers
    assert {k: d.digest for k, d in cached.docs.items()} == {k: d.digest for k, d in plain.docs.items()}


@pytest.mark.parametrize("edit", [
    pytest.param(lambda t: t + "\n# a comment\n", id="comment-appended"),
    pytest.param(lambda t: t.replace("\n", " \n", 1), id="trailing-space"),
    pytest.param(lambda t: t.replace("memory_limit: 256M", "memory_limit: 257M", 1), id="value"),
])
def test_any_byte_change_misses(desired: Path, tmp_path: Path, edit: object) -> None:
    plans = desired / "plans.yaml"
    assert plans.exists()
    _load([desired], tmp_path / "c")
    before = plans.read_text()
    after = edit(before)  # type: ignore[operator]
    assert after != before
    plans.write_text(after)
    docs, issues, pc = _load([desired], tmp_path / "c")
    assert issues == []
    assert (pc.misses, pc.writes) == (1, 1)
    assert pc.hits == len(list(loader.iter_files([desired]))) - 1
    fresh = model.load_desired([desired])
    assert {(d.kind, d.name): d.spec for d in docs} == {k: d.spec for k, d in fresh.docs.items()}


def test_another_tenantctl_version_misses(desired: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = len(list(loader.iter_files([desired])))
    _load([desired], tmp_path / "c")
    monkeypatch.setattr(controller, "__version__", "99.0.0")
    _, _, pc = _load([desired], tmp_path / "c")
    assert (pc.hits, pc.misses) == (0, n)


def test_another_model_source_misses(desired: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = len(list(loader.iter_files([desired])))
    _load([desired], tmp_path / "c")
    monkeypatch.setattr(cache, "_sources", lambda: "an edited controller/model")
    _, _, pc = _load([desired], tmp_path / "c")
    assert (pc.hits, pc.misses) == (0, n)


def test_a_file_with_an_error_is_never_cached(tmp_path: Path) -> None:
    broken = CORPUS / "plan-limit-text.yaml"
    paths = [BASE, broken]
    _, issues1, first = _load(paths, tmp_path / "c")
    assert issues1 and all(i.file == str(broken) for i in issues1)
    assert first.writes == 1, "only the valid base is kept"
    key = first.key(broken.read_bytes())
    assert not (tmp_path / "c" / f"{key}{cache.SUFFIX}").exists()
    _, issues2, second = _load(paths, tmp_path / "c")
    assert (second.hits, second.misses, second.writes) == (1, 1, 0)
    assert issues2 == issues1


def test_cross_document_rules_run_on_cached_files(tmp_path: Path) -> None:
    paths = [BASE, CORPUS / "ref-unknown-plan.yaml"]
    cold = _message(paths, tmp_path / "c")
    assert len(_entries(tmp_path / "c")) == 2, "each file is valid on its own"
    warm = _message(paths, tmp_path / "c")
    assert warm == cold == _message(paths, None)
    assert "ref-unknown-plan.yaml:8: spec.plan: unknown plan 'gold'" in warm


def test_corpus_messages_are_the_same_without_and_with_a_cold_and_a_warm_cache(tmp_path: Path) -> None:
    assert len(CORPUS_FILES) >= 145
    for f in CORPUS_FILES:
        paths = [BASE, f]
        plain = _message(paths, None)
        assert _message(paths, tmp_path / "c") == plain, f.name
        assert _message(paths, tmp_path / "c") == plain, f.name
    everything = [BASE, *CORPUS_FILES]
    assert _message(everything, tmp_path / "c") == _message(everything, None)


def test_a_torn_entry_is_a_miss_and_is_rewritten(desired: Path, tmp_path: Path) -> None:
    _load([desired], tmp_path / "c")
    entries = _entries(tmp_path / "c")
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    docs, issues, pc = _load([desired], tmp_path / "c")
    assert issues == []
    assert (pc.misses, pc.writes) == (1, 1)
    assert docs == _load([desired], tmp_path / "c")[0]


def test_an_entry_others_could_write_is_not_read(desired: Path, tmp_path: Path) -> None:
    _load([desired], tmp_path / "c")
    entry = _entries(tmp_path / "c")[0]
    assert entry.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    os.chmod(entry, 0o666)
    _, _, pc = _load([desired], tmp_path / "c")
    assert pc.misses == 1


def test_a_cache_that_cannot_be_written_costs_only_speed(desired: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    ds = model.load_desired([desired], cache_dir=not_a_dir)
    assert ds.subscriptions == model.load_desired([desired]).subscriptions


def test_old_entries_are_pruned(desired: Path, tmp_path: Path) -> None:
    plans = desired / "plans.yaml"
    text = plans.read_text()
    n = len(list(loader.iter_files([desired])))
    for i in range(6):
        plans.write_text(text + f"\n# edit {i}\n")
        pc = cache.ParseCache(tmp_path / "c", keep=2)
        loader.load([desired], pc)
    assert len(_entries(tmp_path / "c")) == n + 2, "the entries in use and the two most recent others"


def test_the_same_bytes_under_another_name_are_named_by_their_new_path(tmp_path: Path) -> None:
    ref = tmp_path / "a" / "ref.yaml"
    ref.parent.mkdir()
    shutil.copy(CORPUS / "ref-unknown-customer.yaml", ref)
    _message([BASE, ref], tmp_path / "c")
    moved = tmp_path / "b" / "moved.yaml"
    moved.parent.mkdir()
    shutil.copy(ref, moved)
    docs, _, pc = _load([BASE, moved], tmp_path / "c")
    assert pc.hits == 2
    assert {d.file for d in docs} == {str(BASE / "base.yaml"), str(moved)}
    assert f"{moved}:7: spec.customer: unknown customer 'nobody'" in _message([BASE, moved], tmp_path / "c")


def test_loading_leaves_the_garbage_collector_as_it_was(desired: Path, tmp_path: Path) -> None:
    model.load_desired([desired], cache_dir=tmp_path / "c")
    assert gc.isenabled()
    _message([BASE, CORPUS / "plan-limit-text.yaml"], tmp_path / "c")
    assert gc.isenabled()
    gc.disable()
    try:
        model.load_desired([desired], cache_dir=tmp_path / "c")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_process_that_froze_its_modules_gets_the_documents_frozen_beside_them(desired: Path, tmp_path: Path) -> None:
    """``tenantctl`` freezes its modules first: the documents a load makes join them, so
    no young collection walks them all when the collector is enabled again."""
    was_frozen = gc.get_freeze_count()
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        ds = model.load_desired([desired], cache_dir=tmp_path / "c")
        assert gc.isenabled()
        assert gc.get_freeze_count() > before + len(ds.subscriptions)
        assert gc.get_count()[0] < 100  # nothing of the load left to the young collection
    finally:
        if not was_frozen:
            gc.unfreeze()


def test_a_group_left_out_is_one_shared_frozen_instance(desired: Path, tmp_path: Path) -> None:
    """Every subscription without customer settings holds the same ``CustomerSettings``
    (and so on down): what the model validates and what the cache reads back."""
    for cache_dir in (None, tmp_path / "c", tmp_path / "c"):  # no cache, cold, warm
        ds = model.load_desired([desired], cache_dir=cache_dir)
        bare = [s for s in ds.subscriptions.values() if not s.customerSettings.model_fields_set]
        assert len(bare) >= 2
        assert all(s.customerSettings is kinds.default(kinds.CustomerSettings) for s in bare)
        assert all(s.access is kinds.default(kinds.Access) for s in ds.subscriptions.values() if not s.access.ftpUsers
                   and not s.access.sshKeys)
    shared = kinds.default(kinds.Hosting)
    assert shared == kinds.Hosting() and shared.php is kinds.default(kinds.Php)
    with pytest.raises(pydantic.ValidationError):
        shared.ssl = True  # type: ignore[misc]
    own = kinds.SubscriptionSpec.model_validate({"customer": "c", "region": "r",
                                                 "customerSettings": {"hosting": {"ssl": True}}})
    assert own.customerSettings.hosting.ssl is True and shared.ssl is not True
    assert own.customerSettings.mail is kinds.default(kinds.Mail)
