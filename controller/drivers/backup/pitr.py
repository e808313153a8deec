"""Point-in-time recovery (issue 10, BKP-4): the one place that knows which database
servers archive and which engine's machinery recovers a database.

A database server archives (PostgreSQL WAL through pgBackRest into two regions:
``pgpitr``; MariaDB binary logs streamed to two regions' repository servers: ``binlog``)
when it holds a database of a subscription whose plan has ``backup.pitr``. The backup
driver ensures the archiving when such a subscription is applied, the scheduler takes
PostgreSQL's base backups (weekly full, nightly differential) and verifies them, and
measures every archive's lag each minute; ``restore --at`` recovers a database here,
and a region's evacuation its databases to the newest archived point (``recover_latest``).
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from controller import errors
from controller.drivers import naming, transport
from controller.drivers.backup import binlog, pgpitr, topology
from controller.state import backups as ledger
from controller.state import store as state_store

ENGINES = ("postgresql", "mariadb")


class OutOfRange(errors.PermanentError):
    """A target the archive cannot recover to (nothing changed)."""


@dataclass(frozen=True)
class Recovered:
    engine: str
    database: str
    server: str
    #: the base backup (pgBackRest label) or nightly dump (snapshot id) recovery started from
    base: str
    #: where replay stopped (LSN/time, or binlog file:position)
    stopped_at: str
    #: the region whose archive was read
    region: str
    #: the time recovered to (``recover``: the target; ``recover_latest``: the newest
    #: archived write, or the base backup's or dump's time when none came after it)
    point: dt.datetime | None = None


def wanted(item: Mapping[str, Any]) -> bool:
    return bool(((item.get("effective") or {}).get("backup") or {}).get("pitr"))


def servers(items: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """engine -> the servers that must archive (they hold a PITR subscription's database)."""
    out: dict[str, set[str]] = {e: set() for e in ENGINES}
    for item in items:
        if not wanted(item) or item.get("state") == "deleted":
            continue
        for d in (item.get("effective") or {}).get("databases") or []:
            if d.get("server") and d.get("engine") in out:
                out[d["engine"]].add(d["server"])
    return {e: sorted(s) for e, s in out.items()}


def ensure(topo: topology.Topology, pool: transport.Pool, items: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Archiving on every server that needs it: ``server/engine`` -> "" or the problem."""
    by = servers(items)
    out: dict[str, str] = {}
    if by["postgresql"]:
        out.update({f"{s}/postgresql": e for s, e in pgpitr.ensure(topo, pool, by["postgresql"]).items()})
    if by["mariadb"]:
        out.update({f"{s}/mariadb": e for s, e in binlog.ensure(topo, pool, by["mariadb"]).items()})
    return out


def lags(topo: topology.Topology, pool: transport.Pool, items: Iterable[Mapping[str, Any]], now: dt.datetime
         ) -> dict[tuple[str, str, str], tuple[float, float | None]]:
    """(server, engine, region) -> (lag seconds, newest archived Unix time): the metric's
    values. A server whose lag cannot be measured (unreachable, no archive answering)
    counts as lagging since its newest archived write; never measured: no series."""
    by = servers(items)
    found: dict[tuple[str, str, str], tuple[float, dt.datetime | None]] = {}
    if by["postgresql"]:
        for s, lag in pgpitr.lag(topo, pool, by["postgresql"]).items():
            found[(s, "postgresql", topo.region_of(s))] = (lag.seconds, lag.newest_archived)
    if by["mariadb"]:
        for s, blag in binlog.lag(topo, pool, by["mariadb"]).items():
            found[(s, "mariadb", topo.region_of(s))] = (blag.seconds, blag.newest_archived)
    out: dict[tuple[str, str, str], tuple[float, float | None]] = {}
    for key, (seconds, newest) in found.items():
        if not math.isfinite(seconds):
            if newest is None:
                continue
            seconds = max((now - newest).total_seconds(), 0.0)
        out[key] = (seconds, newest.timestamp() if newest else None)
    return out


def base_backups(topo: topology.Topology, pool: transport.Pool, items: Iterable[Mapping[str, Any]],
                 now: dt.datetime, *, verify: bool = True) -> dict[str, str]:
    """Tonight's PostgreSQL base backups (a full one on the region's Sunday, else a
    differential: pgBackRest makes the first one full anyway) and, with ``verify``, their
    verification: server -> "" or the problem."""
    out: dict[str, str] = {}
    for s in servers(items)["postgresql"]:
        tz = zoneinfo.ZoneInfo(topo.timezones.get(topo.region_of(s), "UTC"))
        kind: Literal["full", "diff"] = "full" if now.astimezone(tz).weekday() == 6 else "diff"
        try:
            done = pgpitr.base_backup(topo, pool, s, kind)
            out[s] = "; ".join(f"{r}: {e}" for r, e in sorted(done.errors.items())) \
                or (pgpitr.verify(topo, pool, s) if verify else "")
        except errors.TenantctlError as exc:
            out[s] = str(exc)
    return out


def _placed(item: Mapping[str, Any], db: str) -> tuple[str, str, str]:
    """(server, engine, name on the server) of ``item``'s placed database ``db``."""
    entry = next((d for d in (item.get("effective") or {}).get("databases") or [] if d.get("name") == db), None)
    if entry is None or not entry.get("server"):
        raise OutOfRange(f"{item['name']} has no placed database {db!r}")
    return entry["server"], entry["engine"], naming.database(item["name"], db)


def recover(topo: topology.Topology, pool: transport.Pool, store: state_store.Store, item: Mapping[str, Any],
            db: str, at: dt.datetime, *, region: str | None = None) -> Recovered:
    """``item``'s database ``db`` as it was at ``at``; ``OutOfRange`` (nothing changed) when
    the archive cannot get there. ``region``: read MariaDB's dump and binary logs from
    that region's archive (PostgreSQL: pgBackRest reads its first repository that has
    what it needs)."""
    sub = item["name"]
    server, engine, database = _placed(item, db)
    try:
        if engine == "postgresql":
            pg = pgpitr.recover(topo, pool, server, database, at, subscription=sub)
            return Recovered(engine, database, server, pg.base_backup, pg.stopped_at, pg.repository_region, pg.point)
        mb = binlog.recover(topo, pool, store, server, sub, database, at, region=region)
        return Recovered(engine, database, server, f"{mb.dump_snapshot[:12]} (dump at {mb.dump_position})",
                         mb.stopped_at, mb.archive_region, mb.point)
    except (pgpitr.OutOfRange, binlog.OutOfRange) as exc:
        raise OutOfRange(str(exc)) from exc


def source_of(store: state_store.Store, sub: str, database: str, region: str, default: str) -> str:
    """The server whose archive holds ``database`` (its name on the server): the one that
    took its newest nightly dump in ``region``'s repository, ``default`` without one."""
    dumps = [s for s in ledger.snapshots(store, sub) if s.kind == "db" and s.name == database]  # newest first
    here = [s for s in dumps if s.region == region] or dumps
    return here[0].server if here else default


def recover_latest(topo: topology.Topology, pool: transport.Pool, store: state_store.Store,
                   item: Mapping[str, Any], db: str, region: str) -> Recovered:
    """``item``'s database ``db`` on its (new) server as the archive in ``region`` last
    holds it (region loss, DR-1: the server that archived it may be down and is never
    asked): PostgreSQL from the newest base backup in that region's repository replayed
    to the end of the WAL archive, MariaDB from the newest nightly dump there plus its
    binary logs to the newest archived event. ``OutOfRange`` (nothing changed) when that
    region's archive cannot serve it."""
    sub = item["name"]
    server, engine, database = _placed(item, db)
    source = source_of(store, sub, database, region, server)
    try:
        if engine == "postgresql":
            pg = pgpitr.recover_latest(topo, pool, server, source, database, region, subscription=sub)
            return Recovered(engine, database, server, f"{pg.base_backup} of {source}", pg.stopped_at,
                             pg.repository_region, pg.point)
        mb = binlog.recover(topo, pool, store, server, sub, database, None, region=region)
        return Recovered(engine, database, server, f"{mb.dump_snapshot[:12]} (dump at {mb.dump_position})",
                         mb.stopped_at, mb.archive_region, mb.point)
    except (pgpitr.OutOfRange, binlog.OutOfRange) as exc:
        raise OutOfRange(str(exc)) from exc


def check(topo: topology.Topology, pool: transport.Pool, store: state_store.Store, item: Mapping[str, Any],
          dbs: Iterable[str], at: dt.datetime, now: dt.datetime) -> None:
    """Every database of ``dbs`` can be recovered to ``at``, or ``OutOfRange`` before anything
    changes: a target in the future, or before the oldest base backup or nightly dump.
    (Each engine checks the newest archived write again itself, after forcing the last
    one out.)"""
    sub = item["name"]
    if at > now:
        raise OutOfRange(f"{at.isoformat()} is in the future: nothing archived yet")
    placed = {d["name"]: d for d in (item.get("effective") or {}).get("databases") or [] if d.get("server")}
    for db in dbs:
        d = placed.get(db)
        if d is None:
            raise OutOfRange(f"{sub} has no placed database {db!r}")
        database = naming.database(sub, db)
        span = pgpitr.window(topo, pool, d["server"]) if d["engine"] == "postgresql" \
            else binlog.window(topo, pool, store, d["server"], sub, database)
        if span is None:
            raise OutOfRange(f"{db}: nothing archived for point-in-time recovery on {d['server']} yet")
        if at < span[0]:
            raise OutOfRange(f"{db}: {at.isoformat()} is before the oldest "
                             f"{'base backup' if d['engine'] == 'postgresql' else 'nightly dump'} "
                             f"({span[0].isoformat()})")
