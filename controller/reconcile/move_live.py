"""The work of a move's steps on the servers: ``Live``, the ``move.Ops`` that the step
machine of ``controller.reconcile.move`` runs (that module journals the steps, in their
order, and decides whether a move may start or be aborted). Each step's work is
idempotent and raises ``StepFailed`` when it could not be done.

What the work compares is pure, tested without servers: ``compare_sums`` (two backups'
tables and files), ``compare_manifests`` (two web spaces' files, read by ``MANIFEST``),
``converge_files`` (the source's files copied again while only they differ, over a
``FileSync``), ``target_copies`` (the databases an abort drops on the target).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from controller import errors
from controller.model.desired import DesiredState
from controller.reconcile import planner
from controller.state import moves, regions
from controller.state import store as state_store
from controller.state.moves import Move

#: How many times verification copies the source's files again when only files differ
FILE_ROUNDS = 3


class StepFailed(errors.DriverError):
    """A step could not be done: the move stops there; a re-run resumes with it."""


class FileSync(Protocol):
    """What ``converge_files`` needs: the web space's manifest on a server, and a copy of
    the source's files onto the target (``gone``: paths the source no longer has)."""

    def manifest(self, server: str, sub: str) -> dict[str, str]: ...
    def sync_files(self, mv: Move, gone: list[str]) -> dict[str, Any]: ...



class Live:
    """``move.Ops`` on the servers: the engine for placement and switch, the backup
    repositories for the copy (``drivers.backup``), the db driver for databases."""

    def __init__(self, ds: DesiredState, store: state_store.Store, eng: Any, pool: Any,
                 progress: Callable[[str], None] = lambda _what: None) -> None:
        from controller.drivers import backup_settings
        from controller.drivers.backup import topology

        self.ds = ds
        self.store = store
        self.eng = eng
        self.pool = pool
        self.ctx = pool.ctx
        self.topo = topology.Topology.of(self.ctx)
        self.progress = progress
        self.settings_of = backup_settings.builder(self.ctx, lambda s: [
            d.model_dump(mode="json", warnings=False) for n, d in ds.subscriptions.items() if n == s])

    def _item(self, sub: str) -> dict[str, Any]:
        from controller.reconcile import status as status_mod

        item = next((i for i in status_mod.items(self.store) if i["name"] == sub), None)
        if item is None:
            raise StepFailed(f"{sub} has no status: apply it first")
        return item

    def _fresh(self) -> None:
        """The pool's jobs carry the subscriptions' generations as the store has them now
        (fencing, DR-1): a step after ``placing`` (or an abort) runs with the bumped one,
        not with what an earlier step of this run read."""
        use = getattr(self.pool, "use_generations", None)
        if use is not None:
            use(regions.generations(self.store))

    def _db(self) -> Any:
        from controller.drivers.db import driver as db_driver

        return db_driver.DbDriver(self.ctx)

    def freeze(self, mv: Move) -> dict[str, Any]:
        from controller.drivers.db import credentials
        from controller.drivers.db import driver as db_driver

        self.progress(f"freezing {mv.subscription}'s databases on {mv.source}")
        found = credentials.list_for(self.ctx.state_dir, mv.subscription)
        recorded = {c["db"]: c for c in mv.data.get("sourceDatabases", [])}  # a re-run: the first list
        db = self._db()
        for c in found:
            db_driver.freeze(db, c)
        return {"sourceDatabases": list(recorded.values()) or [c.without_password() for c in found]}

    def _backup(self, sub: str) -> dict[str, Any]:
        from controller.drivers.backup import driver as backup_driver
        from controller.drivers.backup import runner
        from controller.state import backups as ledger

        if not self.topo.repositories:
            raise StepFailed("no region has a backup repository: a move copies through the backups")
        item = self._item(sub)
        if (item.get("effective") or {}).get("backup", {}).get("content", "settingsAndData") != "settingsAndData":
            raise StepFailed(f"{sub}'s backups hold settings only: its data cannot be copied through them")
        at = self.eng.clock()
        backup_driver.BackupDriver(self.ctx, self.settings_of).ensure_logins()
        report = runner.Runner(self.topo, self.store, self.pool, self.settings_of).run([item], at, only=[sub])
        if report.subscriptions.get(sub):
            raise StepFailed(f"backup: {report.subscriptions[sub]}")
        server = item["server"]
        region = self.topo.local_region(server) or (self.topo.regions_of(server) or (None,))[0]
        taken = [s for s in ledger.snapshots(self.store, sub) if s.server == server and s.original is None
                 and s.kind != "settings" and s.region == region]
        newest: dict[tuple[str, str], Any] = {}
        for s in taken:  # newest first
            newest.setdefault((s.kind, s.name), s)
        if not newest:
            raise StepFailed(f"backup of {sub} on {server}: no snapshot found in the ledger")
        return {"server": server, "region": region,
                "snapshots": {f"{k}:{n}": {"id": s.id, "sums": s.sums} for (k, n), s in sorted(newest.items())}}

    def _pass(self, mv: Move) -> None:
        """One engine pass over the moving subscription, every concern handed to the
        drivers (what the step changed is in the placement or the DNS substitute, not in
        the documents); a failed concern fails the step."""
        report = self.eng.reconcile(self.ds, only=[mv.subscription], check_servers=False, command="move",
                                    force=[mv.subscription])
        failed = report.failed.get(mv.subscription)
        if failed:
            raise StepFailed("; ".join(failed))

    def backup(self, mv: Move) -> dict[str, Any]:
        self.progress(f"backing up {mv.subscription} on {mv.source}")
        got = self._backup(mv.subscription)
        return {"backup": got}

    def place(self, mv: Move) -> dict[str, Any]:
        self.progress(f"placing {mv.subscription} on {mv.target}")
        self._pass(mv)
        item = self._item(mv.subscription)
        if item.get("server") != mv.target:
            raise StepFailed(f"placed on {item.get('server')}, not {mv.target} (see its conflicts in status)")
        return {"targetIp": item.get("ip")}

    def restore(self, mv: Move) -> dict[str, Any]:
        from controller.agent import backupjobs
        from controller.drivers.backup import restore
        from controller.state import backups as ledger

        self.progress(f"restoring {mv.subscription} on {mv.target}")
        self._fresh()
        taken = mv.data["backup"]
        ids = {v["id"] for v in taken["snapshots"].values()}
        item = self._item(mv.subscription)
        moved = {d["database"] for d in mv.data.get("sourceDatabases", [])}  # every one was frozen
        snaps = [s for s in ledger.snapshots(self.store, mv.subscription) if s.source_id in ids]
        # the copy in the target's own region when there is one, else the source's original
        near = self.topo.local_region(mv.target)
        region = near if near is not None and len([s for s in snaps if s.region == near]) >= len(ids) \
            else taken["region"]
        choice = restore.choose(self.topo, snaps, item, at=None, region=region, only=None)
        parts: dict[str, list[backupjobs.Part]] = {
            s: [p for p in ps if p.kind != "db" or p.name in moved] for s, ps in choice.parts.items()}
        choice = restore.Choice(choice.region, {s: ps for s, ps in parts.items() if ps}, choice.snapshots)
        results = restore.restore(self.topo, self.pool, mv.subscription, choice)
        bad = [f"{r.kind} {r.name}: {r.error}" for r in results if not r.ok]
        if bad:
            raise StepFailed("restore: " + "; ".join(bad))
        owner = self._own(mv)
        return {"restored": sorted(f"{r.kind}:{r.name}" for r in results), "region": region, **owner}

    def _own(self, mv: Move) -> dict[str, Any]:
        """The restored files belong to the target's system user: restic restores the
        source's numeric owner, which on another server may be nobody's (or another's)."""
        from controller.drivers import naming

        user = naming.system_user(mv.subscription)
        ids: dict[str, str] = {}
        for server in (mv.source, mv.target):
            done = self.pool.get(server).run(["id", "-u", user], timeout=30)
            group = self.pool.get(server).run(["id", "-g", user], timeout=30)
            if done.returncode != 0 or group.returncode != 0:
                raise StepFailed(f"{user} on {server}: {done.error or group.error}")
            ids[server] = f"{done.text.strip()}:{group.text.strip()}"
        if ids[mv.source] != ids[mv.target]:
            home = naming.home(mv.subscription)
            done = self.pool.get(mv.target).run(["chown", "-R", "-h", f"--from={ids[mv.source]}", ids[mv.target],
                                                 "--", home], timeout=600)
            if done.returncode != 0:
                raise StepFailed(f"chown of {home} on {mv.target}: {done.error}")
        return {"owner": ids}

    def verify(self, mv: Move) -> dict[str, Any]:
        self.progress(f"verifying {mv.subscription} on {mv.target}")
        # databases: each table's rows and digest in the source's backup (frozen since) and
        # in a backup of the target; files: the web space read on both servers now (the
        # source's written since its backup copied again: ``converge_files``)
        source = {k: v for k, v in mv.data["backup"]["snapshots"].items() if k.startswith("db:")}
        target = self._backup(mv.subscription)["snapshots"]
        problems = compare_sums(source, target)
        if problems:
            raise StepFailed(f"{mv.target} differs from {mv.source}: " + "; ".join(problems))
        files = converge_files(self, mv)
        return {"verified": sorted(source), **files}

    def manifest(self, server: str, sub: str) -> dict[str, str]:
        return self._manifest(server, sub)

    def sync_files(self, mv: Move, gone: list[str]) -> dict[str, Any]:
        """A files-only backup of the source's web space restored on the target (given to
        its user), then ``gone`` (paths relative to the home, from a manifest) deleted there."""
        from controller.drivers import naming
        from controller.drivers.backup import restore
        from controller.state import backups as ledger

        self.progress(f"copying {mv.subscription}'s files written on {mv.source} since its backup")
        taken = self._backup_files(mv)
        snaps = [s for s in ledger.snapshots(self.store, mv.subscription) if s.id == taken]
        item = self._item(mv.subscription)
        choice = restore.choose(self.topo, snaps, item, at=None, region=snaps[0].region if snaps else None,
                                only="files")
        self._fresh()
        bad = [f"{r.kind} {r.name}: {r.error}" for r in restore.restore(self.topo, self.pool, mv.subscription, choice)
               if not r.ok]
        if bad:
            raise StepFailed("restore of the files: " + "; ".join(bad))
        self._own(mv)
        safe = [p for p in gone if _relative(p)]
        if safe:
            done = self.pool.get(mv.target).run(["sh", "-c", REMOVE, "sh", naming.home(mv.subscription), *safe],
                                                timeout=120)
            if done.returncode != 0:
                raise StepFailed(f"removing files the source no longer has on {mv.target}: {done.error}")
        return {"snapshot": taken, "deleted": len(safe)}

    def _backup_files(self, mv: Move) -> str:
        """A backup of the source's web space only; its snapshot's id."""
        from controller.drivers.backup import runner
        from controller.state import backups as ledger

        item = self._item(mv.subscription)
        eff = dict(item.get("effective") or {})
        source_item = {**item, "server": mv.source, "effective": {**eff, "databases": [],
                                                                   "backup": {"content": "settingsAndData"}}}
        report = runner.Runner(self.topo, self.store, self.pool, self.settings_of).run(
            [source_item], self.eng.clock(), only=[mv.subscription])
        if report.subscriptions.get(mv.subscription):
            raise StepFailed(f"files-only backup on {mv.source}: {report.subscriptions[mv.subscription]}")
        region = self.topo.local_region(mv.source)
        found = next((s for s in ledger.snapshots(self.store, mv.subscription) if s.server == mv.source
                      and s.kind == "files" and s.original is None and s.region == region), None)
        if found is None:
            raise StepFailed(f"files-only backup on {mv.source}: no snapshot found in the ledger")
        return found.id

    def _manifest(self, server: str, sub: str) -> dict[str, str]:
        """Path -> sha256 of every file of the web space on ``server`` (logs and tmp,
        which each server writes on its own, left out)."""
        from controller.drivers import naming

        done = self.pool.get(server).run(["sh", "-c", MANIFEST, "sh", naming.home(sub)], timeout=600)
        if done.returncode != 0:
            raise StepFailed(f"checksums of {sub}'s web space on {server}: {done.error}")
        out: dict[str, str] = {}
        for line in done.text.splitlines():
            digest, _, path = line.partition("  ")
            out[path] = digest
        return out

    def switch(self, mv: Move) -> dict[str, Any]:
        from controller.drivers.db import driver as db_driver

        self.progress(f"switching {mv.subscription} to {mv.target}")
        self._fresh()
        self._pass(mv)
        thawed = []
        for c in self._stayed(mv):  # on the same database server as before: writable again
            db_driver.freeze(self._db(), c, read_only=False)
            thawed.append(c.db)
        return {"thawed": thawed, "substitute": self._forward(mv)}

    def _forward(self, mv: Move) -> str:
        """The source's vhost forwards every request to the target (DNS-4): clients that
        still resolve the old address reach the moved site, writes included."""
        from controller.drivers.hosting import drivers as hosting_drivers
        from controller.effective import spec

        web = self.eng.drivers.get("web")
        item = self._item(mv.subscription)
        source_ip, target_ip = mv.data.get("sourceIp"), item.get("ip")
        if not isinstance(web, hosting_drivers.WebDriver) or not source_ip or not target_ip:
            return "not forwarded (no web driver or no address)"
        sl = web.slice(spec.of(planner.recorded_item(item)))
        res = web.substitute(mv.source, mv.subscription, {**sl, "ip": source_ip}, str(target_ip))
        if res.outcome == "failed":
            raise StepFailed(f"forwarding {mv.source} to {mv.target}: {res.message}")
        return res.message

    def _stayed(self, mv: Move) -> list[Any]:
        """The frozen databases whose server the move did not change."""
        from controller.drivers.db import credentials

        before = {d["db"]: d["server"] for d in mv.data.get("sourceDatabases", [])}
        return [c for c in credentials.list_for(self.ctx.state_dir, mv.subscription) if before.get(c.db) == c.server]

    def abort(self, mv: Move) -> dict[str, Any]:
        """Undo a move before its switch: a pass places the subscription back on the
        source (the planner does while the row is ``aborting``; its databases' credentials
        name the source again), the source's databases writable again, then the target's
        copy removed through the drivers' delete path (databases, web space, vhost, pool)."""
        from controller.drivers.db import credentials
        from controller.drivers.db import driver as db_driver

        placed = moves.done_index(str(mv.data.get("abortFrom"))) >= moves.STEPS.index(moves.PLACED_FROM)
        notes: list[str] = []
        self._fresh()
        if placed:
            self.progress(f"placing {mv.subscription} back on {mv.source}")
            self._pass(mv)
            item = self._item(mv.subscription)
            if item.get("server") != mv.source:
                raise StepFailed(f"placed on {item.get('server')}, not back on {mv.source}")
        self.progress(f"making {mv.subscription}'s databases on {mv.source} writable again")
        thawed = []
        for c in credentials.list_for(self.ctx.state_dir, mv.subscription):
            if c.server != mv.target:
                db_driver.freeze(self._db(), c, read_only=False)
                thawed.append(c.db)
        if placed:
            self.progress(f"removing {mv.subscription}'s copy from {mv.target}")
            notes = self._remove_from(mv.target, mv.subscription, target_copies(mv))
        return {"thawed": thawed, "removedFromTarget": notes}

    def _remove_from(self, server: str, sub: str, dbs: list[Any]) -> list[str]:
        """``sub``'s databases ``dbs`` (credentials naming ``server``) dropped there, then its
        web space, vhost and pool: the drivers' delete path (LIFE-6: a final copy first)."""
        from controller.drivers import base
        from controller.drivers.db import driver as db_driver

        notes: list[str] = []
        db = self._db()
        for c in dbs:
            notes.append(f"{c.db}: {db_driver.drop_copy(db, c)}")
        for concern in ("web", "php"):
            driver = self.eng.drivers[concern]
            (res,) = driver.apply(server, [base.Change(sub, "delete", {"name": sub})])
            if res.outcome == "failed":
                raise StepFailed(f"{concern} on {server}: {res.message}")
            notes.append(f"{concern}: {res.message or 'removed'}")
        return notes

    def remove(self, mv: Move) -> dict[str, Any]:
        from controller.drivers import base
        from controller.drivers.db import credentials
        from controller.drivers.db import driver as db_driver

        self.progress(f"removing {mv.subscription} from {mv.source}")
        self._fresh()
        notes: list[str] = []
        db = self._db()
        stayed = {c.db for c in self._stayed(mv)}
        for d in mv.data.get("sourceDatabases", []):
            c = credentials.Credentials(**{**d, "password": ""})
            if c.db in stayed:
                continue
            notes.append(f"{c.db}: {db_driver.drop_copy(db, c)}")
        for concern in ("web", "php"):  # LIFE-6: the web driver keeps a final copy first
            driver = self.eng.drivers[concern]
            (res,) = driver.apply(mv.source, [base.Change(mv.subscription, "delete", {"name": mv.subscription})])
            if res.outcome == "failed":
                raise StepFailed(f"{concern} on {mv.source}: {res.message}")
            notes.append(f"{concern}: {res.message or 'removed'}")
        return {"removedFromSource": notes}

def target_copies(mv: Move) -> list[Any]:
    """The credentials (no password) of the copies an aborted move made of its databases
    on the target: those placed there when the abort began (``abortDbServers``) that
    lived elsewhere before the move (``sourceDatabases``)."""
    from controller.drivers.db import credentials

    placed = mv.data.get("abortDbServers") or {}
    return [credentials.Credentials(**{**d, "server": mv.target, "password": ""})
            for d in mv.data.get("sourceDatabases", [])
            if placed.get(d["db"]) == mv.target and d.get("server") != mv.target]


def _relative(path: str) -> bool:
    """A manifest path (``./a/b``) that stays inside the web space."""
    parts = path.split("/")
    return path.startswith("./") and "\n" not in path and not any(p in ("", ".", "..") for p in parts[1:])


def converge_files(ops: FileSync, mv: Move, rounds: int = FILE_ROUNDS) -> dict[str, Any]:
    """Compare the web space on the source and the target; while only files differ (the
    source's are not frozen), copy the source's again (``ops.sync_files``) and compare
    again, ``rounds`` copies at most; ``StepFailed`` naming the files when they still
    differ. What it did: files compared, copies made, files each copy carried."""
    carried: list[int] = []
    while True:
        src, dst = ops.manifest(mv.source, mv.subscription), ops.manifest(mv.target, mv.subscription)
        problems = compare_manifests(src, dst)
        if not problems:
            return {"files": len(src), "fileRounds": len(carried), "filesCarried": carried}
        if len(carried) >= rounds:
            raise StepFailed(f"{mv.target} differs from {mv.source}: " + "; ".join(problems)
                             + f" after {rounds} copies of the files written on {mv.source} since its backup "
                             "(files written faster than they are copied: retry later)")
        gone = sorted(p for p in dst if p not in src)
        ops.sync_files(mv, gone)
        carried.append(len([p for p in set(src) | set(dst) if src.get(p) != dst.get(p)]))


#: ``sh -c REMOVE sh HOME PATH...``: remove each ``./PATH`` under HOME unless a symbolic
#: link is on its way (its directory's physical path is not HOME's joined with it), so a
#: link in the web space never leads the deletion outside it
REMOVE = ('cd "$1" && home=$(pwd -P) && shift || exit 1\n'
          'for p do\n'
          '  d=${p%/*}\n'
          '  if [ "$d" != . ]; then\n'
          '    real=$(cd -P -- "$d" 2>/dev/null && pwd -P) || continue\n'
          '    [ "$real" = "$home/${d#./}" ] || { echo "left $p: a link on its way" >&2; continue; }\n'
          '  fi\n'
          '  rm -f -- "$p" || exit 1\n'
          'done\n')

#: ``sh -c MANIFEST sh HOME``: sha256sum lines of the web space's files, sorted, less
#: logs/ and tmp/ (the home is an argument, never part of the script)
MANIFEST = ('cd "$1" && find . \\( -path ./logs -o -path ./tmp \\) -prune -o -type f -print0 '
            '| LC_ALL=C sort -z | xargs -0 -r sha256sum --')


def compare_manifests(source: Mapping[str, str], target: Mapping[str, str]) -> list[str]:
    """The files that differ between two web spaces (missing, extra or changed)."""
    diff = sorted(p for p in set(source) | set(target) if source.get(p) != target.get(p))
    if not diff:
        return []
    return [f"files: {len(diff)} differ ({', '.join(diff[:10])}{', ...' if len(diff) > 10 else ''})"]


def compare_sums(source: Mapping[str, Any], target: Mapping[str, Any]) -> list[str]:
    """What differs between two backups' sums (``"kind:name" -> {"sums": ...}``): each
    table's rows and digest, the files' digest (as the restore drill compares)."""
    problems: list[str] = []
    for key, want in sorted(source.items()):
        got = target.get(key)
        if got is None:
            problems.append(f"{key}: missing on the target")
            continue
        a, b = want.get("sums") or {}, got.get("sums") or {}
        if key.startswith("db:"):
            ta = {t: (v.get("rows"), v.get("digest")) for t, v in (a.get("tables") or {}).items()}
            tb = {t: (v.get("rows"), v.get("digest")) for t, v in (b.get("tables") or {}).items()}
            diff = sorted(t for t in set(ta) | set(tb) if ta.get(t) != tb.get(t))
            if diff:
                problems.append(f"{key}: tables differ: {', '.join(diff[:10])}")
        elif a.get("digest") != b.get("digest"):
            problems.append(f"{key}: files digest {str(a.get('digest'))[:12]} != {str(b.get('digest'))[:12]}")
    return problems
