"""What each server backs up for each subscription (BKP-1, BKP-6). Pure.

From the status documents the engine recorded (what was applied, not what is wished):
every live subscription (active or suspended) with a server gets a ``settings`` part on
its server; with ``backup.content: settingsAndData`` (the default) also its web space
(the home, without ``tmp``) on that server and each database on the server that hosts
it (``databases[].server``, else the subscription's). A server backs up what it holds:
a subscription whose database lives elsewhere has units on two servers. A sandbox (a
test copy, a demo: ``backup.content: none``) is not backed up at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.agent import backupjobs
from controller.drivers import naming

LIVE = ("active", "suspended")
#: ``backup.content`` of a sandbox (a test copy or a demo, PLAT-2/3: no backups at all;
#: set by ``effective.sandbox``, not a value a document may give)
NONE = "none"


@dataclass(frozen=True)
class Wanted:
    """One subscription's backup settings, from its effective spec."""

    subscription: str
    server: str
    region: str
    schedule: str
    keep_daily: int
    content: str


def wanted(items: Iterable[Mapping[str, Any]]) -> dict[str, Wanted]:
    """The subscriptions that are backed up, by name."""
    out: dict[str, Wanted] = {}
    for item in items:
        if item.get("state") not in LIVE or not item.get("server"):
            continue
        b = (item.get("effective") or {}).get("backup") or {}
        if b.get("content") == NONE:
            continue
        out[item["name"]] = Wanted(item["name"], item["server"], item.get("region") or "",
                                   b.get("schedule", "0 2 * * *"), int(b.get("keepDaily", 15)),
                                   b.get("content", "settingsAndData"))
    return out


def parts(item: Mapping[str, Any]) -> dict[str, list[backupjobs.Part]]:
    """One subscription's parts, by the server that backs each up."""
    sub, server = item["name"], item["server"]
    eff = item.get("effective") or {}
    if (eff.get("backup") or {}).get("content") == NONE:
        return {}
    out: dict[str, list[backupjobs.Part]] = {server: [backupjobs.Part(kind="settings", name="settings")]}
    if (eff.get("backup") or {}).get("content", "settingsAndData") != "settingsAndData":
        return out
    if (eff.get("hosting") or {}).get("enabled", True):
        home = naming.home(sub)
        out[server].append(backupjobs.Part(kind="files", name="webspace", path=home, exclude=[f"{home}/tmp"]))
    for db in eff.get("databases") or []:
        where = db.get("server") or server
        out.setdefault(where, []).append(backupjobs.Part(
            kind="db", name=naming.database(sub, db["name"]), engine=db["engine"],
            owner=naming.db_user(sub, db["name"]) if db["engine"] == "postgresql" else ""))
    return out


def by_server(items: Iterable[Mapping[str, Any]], only: Iterable[str] | None = None) -> dict[str, list[backupjobs.Unit]]:
    """``{server: [Unit]}`` for the backed-up subscriptions (``only``: just these)."""
    chosen = set(only) if only is not None else None
    out: dict[str, list[backupjobs.Unit]] = {}
    for item in items:
        if item.get("state") not in LIVE or not item.get("server"):
            continue
        if chosen is not None and item["name"] not in chosen:
            continue
        for server, ps in parts(item).items():
            out.setdefault(server, []).append(backupjobs.Unit(subscription=item["name"], parts=ps))
    return out


def unit_tag(subscription: str) -> str:
    return f"sub={subscription}"


def describe(tags: Iterable[str]) -> dict[str, str]:
    """``{"sub": ..., "kind": ..., "db": ...}`` from a snapshot's tags."""
    out: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if sep:
            out[key] = value
        else:
            out.setdefault("flags", "")
            out["flags"] = ",".join(filter(None, [out["flags"], tag]))
    return out
