"""One collection: the ``usage`` agent on every web server (in parallel), its figures
recorded per server in one transaction with the log cursors (``controller.state.usage``).

Web spaces are measured with ``du`` at most every ``DISK_EVERY`` per server (a full
scan of the web spaces, which a 5-minute period must not repeat); reading the logs
costs what was appended since the last collection.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.agent import jobs, usagejobs
from controller.drivers import context, naming, transport
from controller.state import store as state_store
from controller.state import usage

log = logging.getLogger("tenantctl")

SERVERS_AT_ONCE = 8
#: how often a server's web spaces are measured with du
DISK_EVERY = dt.timedelta(hours=1)
#: seconds one server's collection may take (a first collection reads every log kept)
TIMEOUT = 1800.0


@dataclass
class Report:
    """What a collection did: an error per server (None: collected)."""

    servers: dict[str, str | None] = field(default_factory=dict)
    subscriptions: int = 0
    lines: int = 0
    read: int = 0
    #: servers whose web spaces were measured
    disk: list[str] = field(default_factory=list)
    #: per subscription: what was out of the ordinary (cursor lost, unreadable log)
    notes: dict[str, str] = field(default_factory=dict)
    #: subscriptions whose figures another collection recorded first (dropped here)
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> dict[str, str]:
        return {s: e for s, e in self.servers.items() if e is not None}


def placed(store: state_store.Store, ctx: context.Context) -> dict[str, list[str]]:
    """Web server -> the subscriptions the store has placed on it (not deleted)."""
    out: dict[str, list[str]] = {}
    for rec in store.list_subscriptions():
        srv = ctx.servers.get(rec.server or "")
        if srv is not None and "web" in srv.roles:
            out.setdefault(srv.name, []).append(rec.name)
    return {s: sorted(subs) for s, subs in sorted(out.items())}


def _cursor(stored: dict[str, Any] | None) -> usagejobs.Cursor | None:
    """A stored cursor; an unreadable one is no cursor (the agent then counts only lines
    newer than nothing: everything kept, which a damaged store cannot do better)."""
    if stored is None:
        return None
    try:
        return jobs.decode(usagejobs.Cursor, stored)
    except (TypeError, ValueError):
        return None


class Collector:
    def __init__(self, ctx: context.Context, store: state_store.Store, pool: transport.Pool | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.pool = pool or transport.Pool(ctx)
        self._own_pool = pool is None

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    def run(self, now: dt.datetime, *, disk: bool | None = None, only: Iterable[str] | None = None) -> Report:
        """Collect from every web server (``only``: these subscriptions). ``disk``: measure
        the web spaces (True), never (False), or where the last measure is ``DISK_EVERY`` old."""
        started = time.monotonic()
        wanted = set(only) if only is not None else None
        plan = {s: [n for n in subs if wanted is None or n in wanted] for s, subs in placed(self.store, self.ctx).items()}
        plan = {s: subs for s, subs in plan.items() if subs}
        report = Report(subscriptions=sum(len(v) for v in plan.values()))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(SERVERS_AT_ONCE, len(plan)))) as ex:
            futures = {ex.submit(self._server, server, subs, now, disk): server for server, subs in plan.items()}
            for fut in concurrent.futures.as_completed(futures):
                server = futures[fut]
                try:
                    part = fut.result()
                except errors.TenantctlError as exc:
                    log.warning("usage on %s: %s", server, exc)
                    report.servers[server] = str(exc)
                    continue
                report.servers[server] = None
                report.lines += part.lines
                report.read += part.read
                report.disk += part.disk
                report.notes.update(part.notes)
                report.stale += part.stale
        usage.refresh(self.store, now)
        report.seconds = time.monotonic() - started
        return report

    def _server(self, server: str, subs: list[str], now: dt.datetime, disk: bool | None) -> Report:
        before = usage.cursors(self.store, server)
        if disk is None:
            last = usage.disk_measured(self.store, server)
            disk = last is None or now - last >= DISK_EVERY
        moved = usage.elsewhere(self.store, server)  # logs restored with a web space count once
        sites = [usagejobs.Site(subscription=s, logs=naming.logs_dir(s), home=naming.home(s),
                                cursor=_cursor(before.get(s)) if s in before else
                                usagejobs.Cursor(last=moved[s]) if s in moved else None)
                 for s in subs]
        job = jobs.Job(jobs.VERSION, "usage", usage=usagejobs.UsageJob(sites=sites, disk=disk))
        out = transport.Agent(self.pool.get(server), "usage").run(job, timeout=TIMEOUT)
        if out.usage is None:
            raise errors.PermanentError(f"server {server}: the usage agent answered without a usage outcome")
        part = Report(disk=[server] if disk else [])
        figures = []
        for r in out.usage.sites:
            part.lines += r.lines
            part.read += r.read
            if r.error or r.note:
                part.notes[r.subscription] = "; ".join(filter(None, [r.error, r.note]))
            if r.error:
                continue
            figures.append(usage.Figures(
                subscription=r.subscription, days={d: (v.requests, v.bytes) for d, v in r.days.items()},
                cursor=dataclasses.asdict(r.cursor), previous=before.get(r.subscription),
                disk=r.disk if r.disk >= 0 else None))
        part.stale = usage.record(self.store, server, now, figures, disk=disk)
        return part
