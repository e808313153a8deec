"""The backup concern in the engine's passes: repositories ready for each subscription,
and the final backup before a deletion (LIFE-6).

* ``ensure``/``suspend``: the repository servers know every source server's login
  (``logins`` on each repository server, written only when it changed); the result
  says when and where the subscription is backed up. A region without a repository
  server is ``not provisioned`` (honest: nothing backs it up), as is every subscription
  when the environment has no ``backup`` server at all.
* ``delete``: a final backup tagged ``final`` into the server's region and copied to the
  other regions, then restored by a drill from another region; only when the final
  backup is held by more than one region AND the drill matched does the deletion go on
  (the engine deletes the backup concern first and stops at its failure). Final
  snapshots are kept by rotation until the engine purges them after 60 days.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from controller import errors, provisioning
from controller.agent import backupjobs
from controller.drivers import base, slices, transport
from controller.drivers.backup import nightly, pitr, runner, topology, units
from controller.drivers.context import Context
from controller.effective import spec
from controller.state import backups as ledger
from controller.state import regions
from controller.state import store as state_store

SettingsOf = Callable[[Mapping[str, Any]], bytes]


def login_hashes(state_dir: Path, servers: Sequence[str]) -> dict[str, str]:
    """``{server: bcrypt hash}`` of each source server's login, hashed once per password
    (kept 0600 beside the other secrets: a new salt each run would rewrite every
    repository server's htpasswd for nothing)."""
    path = state_dir / "secrets" / "backup-htpasswd.json"
    cache: dict[str, list[str]] = json.loads(path.read_text()) if path.exists() else {}
    out: dict[str, str] = {}
    for server in servers:
        password = provisioning.backup.login_password(state_dir, server)
        digest = hashlib.sha256(password.encode()).hexdigest()
        hit = cache.get(server)
        if hit is None or hit[0] != digest:
            cache[server] = hit = [digest, provisioning.backup.htpasswd_hash(password)]
        out[server] = hit[1]
    if not path.exists() or json.loads(path.read_text()) != cache:
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.chmod(0o600)
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    return out


class BackupDriver:
    concern = "backup"

    def __init__(self, ctx: Context, settings_of: SettingsOf) -> None:
        self.ctx = ctx
        self.settings_of = settings_of
        self.topo = topology.Topology.of(ctx)
        self.pool = transport.Pool(ctx)
        self.store: state_store.Store | None = None
        self._logins_done: set[str] = set()
        self._lock = threading.Lock()

    def sources(self) -> Sequence[Path]:
        """Its package and the DR drill's agent entry (``controller/drivers/drdrill``)."""
        here = Path(__file__).resolve().parent
        return [here, here.parent / "drdrill"]

    def slice(self, item: spec.Item) -> slices.Slice:
        return slices.backup(item)

    def use_store(self, store: Any) -> None:
        self.store = store

    def close(self) -> None:
        self.pool.close()

    # -- ensure -------------------------------------------------------------------------

    def ensure_logins(self) -> None:
        """Every repository server accepts every source server's login (once per process)."""
        logins = login_hashes(self.ctx.state_dir, self.topo.sources())
        evacuated = regions.targets(self.store) if self.store is not None else {}
        for region, server in sorted(self.topo.repositories.items()):
            with self._lock:
                if server in self._logins_done:
                    continue
            try:
                runner.run_job(self.pool, server, "logins", backupjobs.BackupJob(logins=logins), timeout=120)
            except errors.TenantctlError:
                if region in evacuated:  # the lost region's repository: its copies are missing, said elsewhere
                    continue
                raise
            with self._lock:
                self._logins_done.add(server)

    # -- a backup now (PLAT-4) ------------------------------------------------------------

    def has_repository(self, server: str) -> bool:
        return server in self.ctx.servers and self.topo.local_region(server) is not None

    def backup_now(self, items: Sequence[Mapping[str, Any]], now: dt.datetime) -> Mapping[str, str | None]:
        """These subscriptions backed up now and copied to the other regions, like a
        nightly run (``runner.Runner``): subscription -> error, None when done."""
        if self.store is None:
            raise errors.PermanentError("the backup driver has no state store: no ledger to record the backup in")
        self.ensure_logins()
        report = runner.Runner(self.topo, self.store, self.pool, self.settings_of).run(
            list(items), now, only=[i["name"] for i in items])
        return dict(report.subscriptions)

    def _describe(self, server: str, sl: Mapping[str, Any]) -> tuple[base.Outcome, str]:
        if server not in self.ctx.servers:
            return "not provisioned", f"unknown server {server}"
        regions = self.topo.regions_of(server)
        if not regions:
            return "not provisioned", f"region {self.topo.region_of(server)} has no server with the backup role"
        b = sl["backup"]
        if b.get("content") == units.NONE:
            return "not provisioned", "no backups: a test copy or a demo (PLAT-2, PLAT-3)"
        what = "settings only" if b.get("content") == "settings" else "settings and data"
        tz = self.topo.timezones.get(self.topo.region_of(server), "UTC")
        return "provisioned", (f"{what} at '{b['schedule']}' ({tz}), {b['keepDaily']} daily kept, "
                               f"in {', '.join(regions)}")

    def apply(self, server: str | None, changes: Sequence[base.Change[Any]]) -> list[base.Result]:
        if not self.topo.repositories:
            return [base.Result(c.name, "not provisioned", "no server has the backup role") for c in changes]
        out: list[base.Result] = []
        ensure = [c for c in changes if c.action != "delete"]
        if ensure:
            try:
                self.ensure_logins()
            except errors.TenantctlError as exc:
                return [base.Result(c.name, "failed", f"repository logins: {exc}", retry_after=60.0) for c in changes]
        archiving = self._archiving(ensure)
        for c in changes:
            if c.action == "delete":
                out.append(self._final(c.name))
            elif server is None:
                out.append(base.Result(c.name, "not provisioned", "not placed on a server"))
            elif archiving.get(c.name):
                lost = self._lost_archive(c.slice["databases"])
                out.append(base.Result(c.name, "failed", f"point-in-time archiving: {archiving[c.name]}" + (
                    f" (its archive involves the evacuated region {lost}: set up again when it answers)"
                    if lost else ""), retry_after=60.0, degraded=bool(lost)))
            else:
                outcome, msg = self._describe(server, c.slice)
                if outcome == "provisioned" and c.slice["backup"]["pitr"] and c.slice["databases"]:
                    msg += "; databases archived continuously (point-in-time recovery)"
                out.append(base.Result(c.name, outcome, msg))
        return out

    def _lost_archive(self, databases: Sequence[Mapping[str, Any]]) -> str:
        """An evacuated region among the regions archiving these databases' servers ("":
        none). Archiving that fails there is a degraded failure: the databases were
        placed (an evacuation's are restored) and it is set up again when the region
        answers."""
        evacuated = regions.targets(self.store)
        lost = sorted({r for d in databases if d.get("server") in self.ctx.servers
                       for r in self.topo.regions_of(d["server"]) if r in evacuated})
        return ", ".join(lost)

    def _archiving(self, changes: Sequence[base.Change[Any]]) -> dict[str, str]:
        """PITR archiving (BKP-4) on the database servers of ``changes`` whose plan has
        ``backup.pitr``: subscription -> the problem ("" or absent: archiving). The
        archivers are told every server to archive (the recorded PITR subscriptions' and
        these changes'): a repository server stops archiving a server it is not told of."""
        dbs: dict[str, list[Mapping[str, Any]]] = {
            c.name: list(c.slice["databases"]) for c in changes if c.slice["backup"]["pitr"] and c.slice["databases"]}
        if not dbs or not self.topo.repositories:
            return {}
        items = [i for i in (ledger.pitr_items(self.store) if self.store is not None else []) if i["name"] not in dbs]
        items += [{"name": n, "effective": {"backup": {"pitr": True}, "databases": ds}} for n, ds in dbs.items()]
        try:
            problems = {k: v for k, v in pitr.ensure(self.topo, self.pool, items).items() if v}
        except errors.TenantctlError as exc:
            return dict.fromkeys(dbs, str(exc))
        out: dict[str, str] = {}
        for name, ds in dbs.items():
            mine = [f"{d['server']}: {problems[key]}" for d in ds
                    if (key := f"{d['server']}/{d['engine']}") in problems]
            if mine:
                out[name] = "; ".join(mine)
        return out

    # -- delete (LIFE-6) ----------------------------------------------------------------

    def _final(self, name: str) -> base.Result:
        if self.store is None:
            return base.Result(name, "failed", "no state store to record the final backup in", permanent=True)
        item = next((d for d in self.store.get_status() if d.get("name") == name), None)
        if item is None or not item.get("server"):
            return base.Result(name, "provisioned", "nothing placed, nothing to back up")
        now = self.store.now()
        try:
            self.ensure_logins()
            report = runner.Runner(self.topo, self.store, self.pool, self.settings_of).run(
                [item], now, only=[name], tags=["final"])
        except errors.TenantctlError as exc:
            return base.Result(name, "failed", f"final backup: {exc}", retry_after=300.0)
        if report.failed:
            return base.Result(name, "failed", f"final backup: {report.failed[name]}", retry_after=300.0)
        held = sorted({s.region for s in ledger.snapshots(self.store, name) if s.final})
        if len(held) < 2:
            return base.Result(name, "failed", f"final backup held only in {', '.join(held) or 'no region'}; "
                               "a deletion needs it in more than one region (LIFE-6, BKP-3)", retry_after=300.0)
        drill = nightly.Outcome()
        nightly.Nightly(self.topo, self.store, self.pool).drill([item], now, drill, only=[name], final=True)
        if drill.drills.get(name):
            return base.Result(name, "failed", f"final backup did not restore: {drill.drills[name]}",
                               retry_after=300.0)
        return base.Result(name, "provisioned", f"final backup verified, held in {', '.join(held)}")

    def purge(self, name: str) -> None:
        """LIFE-6: the retention is over: every snapshot of ``name`` (its final backup
        and what rotation kept) is forgotten on each repository's own server, and pruned.
        Raises ``DriverError`` when a region could not be purged (the engine tries again)."""
        if self.store is None:
            raise errors.PermanentError("no state store")
        snaps = ledger.snapshots(self.store, name)
        problems = []
        for region in sorted({s.region for s in snaps}):
            server = self.topo.repositories.get(region)
            if server is None:
                problems.append(f"{region}: no repository server any more")
                continue
            sources = sorted({s.server for s in snaps if s.region == region})
            ids = sorted({s.id for s in snaps if s.region == region})
            job = backupjobs.BackupJob(targets=[self.topo.owner_repo(src, region) for src in sources],
                                       forget_ids=ids, prune=True)
            try:
                out = runner.run_job(self.pool, server, "forget", job)
            except errors.TenantctlError as exc:
                problems.append(f"{region}: {exc}")
                continue
            for src, rr in zip(sources, out.repos, strict=False):
                if rr.ok:
                    ledger.sync_region(self.store, region, src, [s.id for s in rr.snapshots])
                else:
                    problems.append(f"{region}: {rr.error}")
        if problems:
            raise errors.TemporaryError(f"purge of {name}'s backups: {'; '.join(problems)}", delay=3600.0)
