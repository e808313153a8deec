"""A major-version migration takes a backup first (PLAT-4).

When a pass is about to change the PHP version a placed, running subscription runs
(``effective.maintenance`` let it through: its region's window is open, or ``apply
--now``), the subscription is backed up first, in the same pass, through the nightly
backup's own path (``drivers.backup.runner``: a snapshot per part in the region's
repository, then copied to the other regions). Only when that backup succeeded does the
``php`` concern apply the new version; a failed backup fails the change (the old
version keeps serving, the failure is an event and the change is retried like any
failure). A subscription with nothing to back up to (no repository in its region, or a
plan whose backups hold settings only: the migration does not touch data) migrates
without one, and the event says so.

``find`` says which subscriptions of a pass migrate; ``backup_first`` backs them up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Migration:
    subscription: str
    #: what changes, as the events say it: "PHP 8.2 -> 8.4"
    what: str


def _php(item: Mapping[str, Any] | None) -> tuple[bool, str | None]:
    hosting = ((item or {}).get("effective") or item or {}).get("hosting") or {}
    return bool(hosting.get("enabled")), (hosting.get("php") or {}).get("version")


def find(names: Iterable[str], changed: Mapping[str, list[str]], item: Callable[[str], Mapping[str, Any]],
         recorded: Callable[[str], Mapping[str, Any] | None]) -> list[Migration]:
    """The subscriptions among ``names`` whose ``php`` concern changes the PHP version
    they run on the server they stay on: ``item`` is the planned item, ``recorded`` the
    last applied status (None: never applied, a first placement, which is no migration)."""
    out = []
    for name in names:
        if "php" not in changed.get(name, ()):
            continue
        before = recorded(name)
        if not before or before.get("state") not in ("active", "suspended") or not before.get("server"):
            continue
        after = item(name)
        if after.get("server") != before["server"]:
            continue  # a move (or an evacuation) takes its own backup first and copies through it
        was_on, old = _php(before)
        now_on, new = _php(after)
        if was_on and now_on and old and new and old != new:
            out.append(Migration(name, f"PHP {old} -> {new}"))
    return out


@dataclass
class Outcome:
    #: subscription -> why its backup failed (its migration waits)
    failed: dict[str, str] = field(default_factory=dict)
    #: subscription -> why it migrates without a backup
    without: dict[str, str] = field(default_factory=dict)
    #: subscriptions backed up
    backed_up: list[str] = field(default_factory=list)


#: runs the backup of these items at this time; subscription -> error (None: done)
Backup = Callable[[list[Mapping[str, Any]], dt.datetime], Mapping[str, str | None]]


def backup_first(migrations: list[Migration], recorded: Callable[[str], Mapping[str, Any] | None],
                 repositories: Callable[[str], bool], backup: Backup, now: dt.datetime) -> Outcome:
    """Back up the migrating subscriptions (one run for all of them) as they were last
    applied (``recorded``: the settings part holds the version they run, not the one they
    migrate to). ``repositories``: whether a server's region has a backup repository."""
    out = Outcome()
    items = []
    for m in migrations:
        it = recorded(m.subscription)
        assert it is not None  # find() chose only recorded ones
        content = ((it.get("effective") or {}).get("backup") or {}).get("content", "settingsAndData")
        if not repositories(it["server"]):
            out.without[m.subscription] = f"no backup repository in region {it.get('region') or '?'}"
        elif content != "settingsAndData":
            out.without[m.subscription] = f"its plan's backups hold {content} only"
        else:
            items.append(it)
    if items:
        for name, err in backup(items, now).items():
            if err is None:
                out.backed_up.append(name)
            else:
                out.failed[name] = err
        for it in items:  # a subscription the run did not report on did not get a backup
            if it["name"] not in out.backed_up and it["name"] not in out.failed:
                out.failed[it["name"]] = "the backup run did not back it up"
    return out
