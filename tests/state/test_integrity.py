"""A damaged, foreign or newer file gives one line naming it and what to do, never a
traceback, and is left exactly as it was (issue 7 point 7)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from controller import errors as base_errors
from controller.state import errors, events, integrity, migrations, store

from .conftest import populate, side_files


def truncate_half(path: Path) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


def truncate_to_one_page(path: Path) -> None:
    os.truncate(path, 4096)


def truncate_mid_page(path: Path) -> None:
    os.truncate(path, 4096 * 3 + 100)


def truncate_to_50_bytes(path: Path) -> None:
    os.truncate(path, 50)


def empty(path: Path) -> None:
    os.truncate(path, 0)


def text_file(path: Path) -> None:
    path.write_text("subscriptions:\n  - name: a.example\n" * 200)


def other_application(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT); PRAGMA user_version = 3;")
    conn.close()


def other_application_id(path: Path) -> None:
    path.unlink()
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t (a); PRAGMA application_id = 1234;")
    conn.close()


def newer_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.latest() + 1}")
    conn.close()


def zeroed_page(path: Path) -> None:
    """A page of the events table overwritten with zeros: the header and size are fine."""
    size = os.path.getsize(path)
    with path.open("r+b") as f:
        f.seek(size - 2 * 4096)
        f.write(b"\x00" * 4096)


DAMAGE = [
    pytest.param(truncate_half, errors.CorruptStore, "truncated state store", id="truncated-half"),
    pytest.param(truncate_to_one_page, errors.CorruptStore, "truncated state store", id="truncated-one-page"),
    pytest.param(truncate_mid_page, errors.CorruptStore, "truncated state store", id="truncated-mid-page"),
    pytest.param(truncate_to_50_bytes, errors.CorruptStore, "not even a header", id="truncated-50-bytes"),
    pytest.param(text_file, errors.NotAStore, "not an SQLite database", id="text-file"),
    pytest.param(other_application, errors.NotAStore, "another application: tables moz_places", id="foreign-db"),
    pytest.param(other_application_id, errors.NotAStore, "application_id 0x4d2", id="foreign-application-id"),
    pytest.param(newer_schema, errors.SchemaTooNew, "is newer than this tenantctl supports", id="newer-schema"),
]


@pytest.fixture
def damaged_path(db_path: Path) -> Path:
    populate(db_path, 60)
    assert side_files(db_path) == {"state.db.lock"}  # closed cleanly: no -wal, no -shm
    return db_path


@pytest.mark.parametrize(("damage", "kind", "says"), DAMAGE)
def test_readonly_open_gives_one_line_and_creates_nothing(
    damaged_path: Path, damage: Callable[[Path], None], kind: type[Exception], says: str
) -> None:
    damage(damaged_path)
    before = damaged_path.read_bytes()
    with pytest.raises(kind) as info:
        store.Store.open_readonly(damaged_path)
    message = str(info.value)
    assert isinstance(info.value, base_errors.StateError)
    assert says in message and message.startswith(str(damaged_path)) and "\n" not in message
    assert side_files(damaged_path) == {"state.db.lock"}, "a read-only open created files"
    assert damaged_path.read_bytes() == before


@pytest.mark.parametrize(("damage", "kind", "says"), DAMAGE)
def test_readwrite_open_refuses_and_leaves_the_file_alone(
    damaged_path: Path, damage: Callable[[Path], None], kind: type[Exception], says: str
) -> None:
    damage(damaged_path)
    before = damaged_path.read_bytes()
    with pytest.raises(kind, match=says):
        store.Store(damaged_path)
    assert damaged_path.read_bytes() == before
    assert not integrity.wal_path(damaged_path).exists()


def test_an_empty_file_is_refused_by_readers(damaged_path: Path) -> None:
    empty(damaged_path)
    with pytest.raises(errors.CorruptStore, match=r"state.db: the state store is empty \(0 bytes\); restore a backup"):
        store.Store.open_readonly(damaged_path)
    assert side_files(damaged_path) == {"state.db.lock"}


def test_damage_inside_the_file_is_reported_when_read(damaged_path: Path) -> None:
    """Header and size are sound, a page is not: the query that meets it says so."""
    zeroed_page(damaged_path)
    with (
        pytest.raises(errors.CorruptStore, match=r"corrupt state store \(.*malformed.*\); restore a backup"),
        store.Store.open_readonly(damaged_path) as ro,
    ):
        ro.list_subscriptions()
        ro.all_fingerprints()
        events.list_events(ro, limit=None)
    assert side_files(damaged_path) == {"state.db.lock"}


def test_a_sound_file_passes(damaged_path: Path) -> None:
    header = integrity.inspect_file(damaged_path, check_size=True)
    assert header is not None and header.page_size == 4096 and not header.wal
    assert header.pages == os.path.getsize(damaged_path) // 4096
