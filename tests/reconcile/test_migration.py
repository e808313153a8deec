"""PLAT-4: which subscriptions of a pass migrate their PHP version, and the backup each
takes first (``reconcile.migration``); the backup run here is a fake that records what it
was asked (the live backup path is tests/backup's)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest

from controller.reconcile import migration

NOW = dt.datetime(2026, 12, 7, 22, 10, tzinfo=dt.UTC)


def item(name: str, php: str, *, enabled: bool = True, state: str = "active", server: str | None = "web-1",
         content: str = "settingsAndData") -> dict[str, Any]:
    return {"name": name, "state": state, "server": server, "region": "eu-west",
            "effective": {"hosting": {"enabled": enabled, "php": {"version": php}},
                          "backup": {"content": content}}}


@pytest.mark.parametrize(("before", "after", "concerns", "expected"), [
    pytest.param(item("a", "8.2"), item("a", "8.4"), ["php"], ["PHP 8.2 -> 8.4"], id="version-change"),
    pytest.param(item("a", "8.2"), item("a", "8.2"), ["php"], [], id="same-version-settings-only"),
    pytest.param(item("a", "8.2"), item("a", "8.4"), ["web"], [], id="php-concern-unchanged"),
    pytest.param(None, item("a", "8.4"), ["php"], [], id="first-placement"),
    pytest.param(item("a", "8.2", enabled=False), item("a", "8.4"), ["php"], [], id="hosting-was-off"),
    pytest.param(item("a", "8.2"), item("a", "8.4", enabled=False), ["php"], [], id="hosting-turned-off"),
    pytest.param(item("a", "8.2", state="deleted"), item("a", "8.4"), ["php"], [], id="was-deleted"),
    pytest.param(item("a", "8.2", server=None), item("a", "8.4"), ["php"], [], id="was-never-placed"),
    pytest.param(item("a", "8.2", server="web-1"), item("a", "8.4", server="web-2"), ["php"], [],
                 id="a-move-backs-up-itself"),
    pytest.param(item("a", "8.2", state="suspended"), item("a", "8.4"), ["php"], ["PHP 8.2 -> 8.4"],
                 id="suspended-still-holds-data"),
])
def test_find(before: dict[str, Any] | None, after: dict[str, Any], concerns: list[str],
              expected: list[str]) -> None:
    got = migration.find(["a"], {"a": concerns}, lambda _n: after, lambda _n: before)
    assert [m.what for m in got] == expected


class FakeBackup:
    """Records the items it was asked to back up; answers ``errors`` per name."""

    def __init__(self, errors: Mapping[str, str | None]) -> None:
        self.errors = errors
        self.asked: list[list[str]] = []

    def __call__(self, items: list[Mapping[str, Any]], now: dt.datetime) -> Mapping[str, str | None]:
        assert now == NOW
        self.asked.append([i["name"] for i in items])
        return {i["name"]: self.errors[i["name"]] for i in items if i["name"] in self.errors}


def test_backup_first_backs_up_as_applied_and_sorts_the_outcomes() -> None:
    recorded = {"ok": item("ok", "8.2"), "bad": item("bad", "8.2"), "lost": item("lost", "8.2"),
                "norepo": item("norepo", "8.2", server="web-9"),
                "settings": item("settings", "8.2", content="settings")}
    fake = FakeBackup({"ok": None, "bad": "files webspace: restic exited 1"})
    out = migration.backup_first([migration.Migration(n, "PHP 8.2 -> 8.4") for n in recorded], recorded.get,
                                 lambda server: server != "web-9", fake, NOW)
    assert fake.asked == [["ok", "bad", "lost"]]  # one run, without the two that have nothing to back up to
    assert out.backed_up == ["ok"]
    assert out.failed == {"bad": "files webspace: restic exited 1", "lost": "the backup run did not back it up"}
    assert out.without == {"norepo": "no backup repository in region eu-west",
                           "settings": "its plan's backups hold settings only"}


def test_backup_first_without_anything_to_back_up_runs_no_backup() -> None:
    fake = FakeBackup({})
    out = migration.backup_first([migration.Migration("a", "PHP 8.2 -> 8.4")], {"a": item("a", "8.2")}.get,
                                 lambda _s: False, fake, NOW)
    assert fake.asked == [] and out.without and not out.failed and not out.backed_up
