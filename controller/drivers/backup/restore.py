"""Restores (BKP-5): choose the snapshots, then restore them on the subscription's servers.

``choose`` picks, for each part of the subscription (settings, web space, each
database), the newest snapshot taken at or before ``at`` (``None``: the latest) in the
region asked for (default: the server's own region, else the first region holding
one), narrowed by ``only`` (``files``, ``settings``, ``db:NAME``). Nothing matching is a
``NothingToRestore`` error that changes nothing. The agent then overwrites what the
backup holds and leaves the rest: a database's tables in the dump are dropped and
re-created, tables it does not hold stay; files in the backup replace the live ones,
other files stay.

``clone`` picks the same for a clone (PLAT-2 test copies, PLAT-3 demos): subscription
T filled from the snapshots of subscription S (S may be T), every part exact (the
agent leaves nothing but the snapshot's content): S's web space into T's home, owned by
T's system user, and S's database NAME into T's database NAME; T's settings are T's
own and never restored. ``pinned`` resolves a snapshot id to its subscription and time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller import errors
from controller.agent import backupjobs
from controller.drivers import naming, transport
from controller.drivers.backup import runner, topology, units
from controller.state import backups as ledger


class NothingToRestore(errors.PermanentError):
    """No snapshot, region or database matches the restore's request."""


@dataclass(frozen=True)
class Choice:
    region: str
    #: server -> the parts it restores, each with its snapshot id
    parts: Mapping[str, list[backupjobs.Part]]
    snapshots: Sequence[ledger.Snapshot]
    #: clone: the target's parts no snapshot fills (each with why)
    missing: Sequence[str] = ()


def _only(part: backupjobs.Part, only: str | None, sub: str) -> bool:
    if only is None:
        return True
    if only in ("files", "settings"):
        return part.kind == only
    if only.startswith("db:"):
        name = only[3:]
        try:
            return part.kind == "db" and part.name == naming.database(sub, name)
        except ValueError as exc:
            raise NothingToRestore(f"--only {only}: {exc}") from exc
    raise NothingToRestore(f"--only {only!r}: expected files, settings or db:NAME")


def choose(topo: topology.Topology, snaps: Sequence[ledger.Snapshot], item: Mapping[str, Any], *,
           at: dt.datetime | None, region: str | None, only: str | None) -> Choice:
    sub = item["name"]
    wanted = units.parts({**item, "effective": {**(item.get("effective") or {}),
                                                "backup": {"content": "settingsAndData"}}})
    if only is not None and only.startswith("db:") and not any(
            _only(p, only, sub) for ps in wanted.values() for p in ps):
        raise NothingToRestore(f"{sub} has no database {only[3:]!r}")
    held = sorted({s.region for s in snaps})
    if region is not None and region not in topo.repositories:
        raise NothingToRestore(f"no region {region!r} holds backups (regions with a repository: "
                               f"{', '.join(sorted(topo.repositories)) or 'none'})")
    if region is None:
        own = topo.local_region(item["server"]) if item.get("server") in topo.ctx.servers else None
        region = own if own in held else (held[0] if held else None)
    if region is None:
        raise NothingToRestore(f"{sub} has no backup in any region")
    parts: dict[str, list[backupjobs.Part]] = {}
    chosen: list[ledger.Snapshot] = []
    for server, ps in wanted.items():
        for p in ps:
            if not _only(p, only, sub):
                continue
            snap = next((s for s in snaps if s.region == region and s.kind == p.kind and s.name == p.name
                         and (at is None or s.taken_at <= at)), None)  # newest first
            if snap is None:
                continue
            chosen.append(snap)
            parts.setdefault(server, []).append(backupjobs.Part(
                kind=p.kind, name=p.name, engine=p.engine, path=p.path, owner=p.owner, snapshot=snap.id))
    if not chosen:
        when = "latest" if at is None else f"at or before {at.isoformat()}"
        raise NothingToRestore(f"{sub}: no snapshot {when} in {region}"
                               + (f" for --only {only}" if only else ""))
    return Choice(region, parts, chosen)


def without_databases(choice: Choice, keep: Collection[str] = ()) -> Choice:
    """``choice`` less its databases (they are recovered to a point in time instead),
    but for those named in ``keep`` (their names on the server)."""
    parts = {s: [p for p in ps if p.kind != "db" or p.name in keep] for s, ps in choice.parts.items()}
    return Choice(choice.region, {s: ps for s, ps in parts.items() if ps},
                  [s for s in choice.snapshots if s.kind != "db" or s.name in keep])


def restore(topo: topology.Topology, pool: transport.Pool, sub: str, choice: Choice
            ) -> list[backupjobs.PartResult]:
    """Run the restore on each server that holds a part (reading the repository of the
    server that took the snapshot: after a move it is another one); the parts' results
    (settings carry their content)."""
    source = {s.id: s.server for s in choice.snapshots}
    results: list[backupjobs.PartResult] = []
    for server, parts in sorted(choice.parts.items()):
        by_source: dict[str, list[backupjobs.Part]] = {}
        for p in parts:
            by_source.setdefault(source.get(p.snapshot, server), []).append(p)
        for src, ps in sorted(by_source.items()):
            job = backupjobs.BackupJob(host=server, cacert=runner.CA_FILE, local=topo.repo(src, choice.region),
                                       units=[backupjobs.Unit(subscription=sub, parts=ps)], concurrency=1)
            results.extend(runner.run_job(pool, server, "restore", job).parts)
    return results


def pinned(snaps: Sequence[ledger.Snapshot], snapshot: str) -> ledger.Snapshot:
    """The snapshot of the ledger ``snapshot`` names (a restic id or its prefix, an
    original's or a copy's): its subscription and time say which backup run it is."""
    found = {s.source_id: s for s in snaps if backupjobs.same_id(s.id, snapshot)
             or backupjobs.same_id(s.source_id, snapshot)}
    if not found:
        raise NothingToRestore(f"no snapshot {snapshot!r} in the backup ledger")
    if len(found) > 1:
        raise NothingToRestore(f"snapshot id {snapshot!r} is ambiguous: {', '.join(sorted(found))}")
    return next(iter(found.values()))


def clone(topo: topology.Topology, snaps: Sequence[ledger.Snapshot], source: str, target: Mapping[str, Any], *,
          at: dt.datetime | None = None, region: str | None = None) -> Choice:
    """The exact parts that fill subscription ``target`` (its status item, placed) from
    ``source``'s snapshots (``snaps``: its ledger, newest first), the newest at or before
    ``at`` of each part, in ``region`` (default: the target server's own region if it
    holds them, else the first holding any). Databases map by their name in the
    documents (``naming.database(T, NAME)`` from ``naming.database(S, NAME)``); a
    database of the target that the source's backup lacks is ``missing``."""
    sub = target["name"]
    if not target.get("server"):
        raise NothingToRestore(f"{sub} is not placed on a server")
    eff = target.get("effective") or {}
    wanted = units.parts({**target, "effective": {**eff, "backup": {"content": "settingsAndData"}}})
    logical = {naming.database(sub, d["name"]): d["name"] for d in eff.get("databases") or []}
    held = sorted({s.region for s in snaps if s.subscription == source})
    if region is None:
        own = topo.local_region(target["server"]) if target["server"] in topo.ctx.servers else None
        region = own if own in held else (held[0] if held else None)
    if region is None or region not in held:
        raise NothingToRestore(f"{source} has no backup" + (f" in {region}" if region else " in any region"))
    parts: dict[str, list[backupjobs.Part]] = {}
    chosen: list[ledger.Snapshot] = []
    missing: list[str] = []
    for server, ps in wanted.items():
        for p in ps:
            if p.kind == "settings":
                continue  # the target's own settings, never the source's
            if p.kind == "files":
                origin, name = naming.home(source), "webspace"
            else:
                origin = name = naming.database(source, logical[p.name])
            snap = next((s for s in snaps if s.subscription == source and s.region == region and s.kind == p.kind
                         and s.name == name and (at is None or s.taken_at <= at)), None)  # newest first
            if snap is None:
                missing.append(f"{p.kind}:{logical.get(p.name, p.name)}")
                continue
            chosen.append(snap)
            parts.setdefault(server, []).append(backupjobs.Part(
                kind=p.kind, name=p.name, engine=p.engine, path=p.path, owner=p.owner, snapshot=snap.id,
                origin=origin, user=naming.system_user(sub) if p.kind == "files" else "", exact=True))
    if not chosen:
        when = "latest" if at is None else f"at or before {at.isoformat()}"
        raise NothingToRestore(f"{source}: no snapshot {when} in {region} fills {sub}")
    return Choice(region, parts, chosen, tuple(missing))
