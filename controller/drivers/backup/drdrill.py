"""The nightly disaster-recovery drill (DR-1, issue 10 item 5): a region is lost, can a
subscription run elsewhere, how fast, and how much is lost? Proven every night on a
sample, without touching anything real.

* Sample: ``count`` subscriptions a night (default ``DEFAULT_PER_NIGHT``), the ones never
  drilled first, then those drilled longest ago (every subscription in turn).
* Plan (pure, ``plan``): the newest nightly snapshots of every part of the subscription
  in the repository of ANOTHER region than its own (the copy targets, in their order),
  restored into a spare server (``Server.spec.spare``) of another region than its own
  that has the roles its parts need (web, ``db-<engine>``), preferring a spare in that
  repository's region.
* Drill (``DrDrill.run``, through the agent's ``drdrill`` entry,
  ``controller.drivers.drdrill.agent``): on the spare, earlier leftovers are removed first (a crashed
  drill's too), then the scratch copy is made (its own system user, web space,
  databases, an nginx vhost on the spare's address: plain HTTP, no certificate, no DNS
  record), the site is fetched over HTTP from the spare's address with the domain as
  Host header until the body is the restored index page (or, without one, the first
  static file of the document root), then the drill's own PHP probe is fetched (a
  PHP-FPM pool of the scratch user, the subscription's PHP version when the spare has it,
  else the spare's, said in the drill's ``notes``): its answer is the sha256 PHP computed of a
  restored file (the index page, else the first file, e.g. ``index.php``) and PHP's
  version. The customer's own PHP is never run on the spare (its configuration names
  the real database servers and mail relays). Databases and files are compared with what
  the backup recorded (``nightly.compare``), and the scratch copy is removed (pool
  included), on every failure too. RTO = seconds from the start of the restore to the
  right HTTP answers (the page and the PHP probe); RPO = the drill's start minus the
  restored snapshot's time (for plans with ``backup.pitr``:
  minus the newest archived log of its databases). Recorded per subscription in
  ``state.drills``.

Fault hook for tests: ``TENANTCTL_FAKE_DR_CORRUPT_INDEX=1`` makes the agent change the
served index file after its digest was taken (a FAKE fault: the HTTP check must fail).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller import errors, provisioning
from controller.agent import backupjobs, jobs
from controller.drivers import transport
from controller.drivers.backup import agent, nightly, pitr, runner, topology, units
from controller.state import backups as ledger
from controller.state import drills
from controller.state import store as state_store

#: subscriptions drilled a night when nothing else is configured
DEFAULT_PER_NIGHT = 2
#: seconds the spare may take to answer with the restored content after the restore
HTTP_WAIT = 20.0
FAKE_CORRUPT_ENV = "TENANTCTL_FAKE_DR_CORRUPT_INDEX"


@dataclass(frozen=True)
class Plan:
    subscription: str
    own_region: str
    #: the region whose repository is read
    source_region: str
    spare: str
    #: source server -> its parts (snapshot ids set), read from its repository in source_region
    parts: Mapping[str, list[backupjobs.Part]]
    #: (kind, name) -> the snapshot whose recorded sums the restore must match
    expected: Mapping[tuple[str, str], ledger.Snapshot]
    #: the snapshots restored (copies in source_region)
    used: Sequence[ledger.Snapshot]


def sample(subs: Iterable[str], latest: Mapping[str, drills.Drill], count: int) -> list[str]:
    """Tonight's sample: never drilled first, then drilled longest ago (name breaks ties)."""
    def key(s: str) -> tuple[bool, dt.datetime, str]:
        d = latest.get(s)
        return (d is not None, d.started_at if d else dt.datetime.min.replace(tzinfo=dt.UTC), s)
    return sorted(subs, key=key)[:max(0, count)]


def needed_roles(parts: Iterable[backupjobs.Part]) -> set[str]:
    out: set[str] = set()
    for p in parts:
        if p.kind == "files":
            out.add("web")
        elif p.kind == "db":
            out.add(f"db-{p.engine}")
    return out


def plan(topo: topology.Topology, spares: Iterable[str], snaps: Sequence[ledger.Snapshot],
         item: Mapping[str, Any]) -> Plan | str:
    """Where ``item`` is drilled from and into (see the module docstring), or why it cannot be."""
    sub, home = item["name"], item["server"]
    if home not in topo.ctx.servers:
        return f"unknown server {home}"
    own = topo.region_of(home)
    wanted = units.parts(item)
    flat = [p for ps in wanted.values() for p in ps]
    mine = [s for s in snaps if s.subscription == sub and not s.final]  # newest first
    originals = {s.id: s for s in mine if s.original is None}
    regions = [r for r in topo.target_regions(home) if r != own]
    regions += sorted({s.region for s in mine} - set(regions) - {own})
    roles = needed_roles(flat)
    fitting = sorted(s for s in spares if s in topo.ctx.servers and topo.region_of(s) != own
                     and roles <= set(topo.ctx.servers[s].roles))
    if not fitting:
        return (f"no spare server outside {own} with the roles {', '.join(sorted(roles)) or 'any'} "
                "(Server.spec.spare)")
    missing = ""
    found: list[Plan] = []
    for region in regions:
        parts: dict[str, list[backupjobs.Part]] = {}
        expected: dict[tuple[str, str], ledger.Snapshot] = {}
        used: list[ledger.Snapshot] = []
        for server, ps in sorted(wanted.items()):
            for p in ps:
                copy = next((s for s in mine if s.region == region and s.kind == p.kind and s.name == p.name
                             and s.server == server), None)
                if copy is None:
                    missing = missing or f"no {p.kind} {p.name} snapshot in {region}"
                    break
                orig = originals.get(copy.source_id, copy)
                expected[(p.kind, p.name)] = orig
                used.append(copy)
                parts.setdefault(copy.server, []).append(backupjobs.Part(
                    kind=p.kind, name=p.name, engine=p.engine, path=p.path, exclude=p.exclude, owner=p.owner,
                    snapshot=copy.id, unstable=list((orig.sums or {}).get("unstable") or [])))
            else:
                continue
            break
        else:
            here = [s for s in fitting if topo.region_of(s) == region]
            found.append(Plan(sub, own, region, (here or fitting)[0], parts, expected, used))
    # a region holding every part and a spare of its own first (restored within one region)
    best = next((f for f in found if topo.region_of(f.spare) == f.source_region), found[0] if found else None)
    if best is not None:
        return best
    return missing or f"no copy of {sub}'s backups outside {own}"


def fetch(address: str, host: str, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
    """GET over plain HTTP from ``address`` with ``host`` as the Host header."""
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "tenantctl-dr-drill"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def answered(address: str, host: str, want_digest: str, deadline: float, path: str = "/") -> str | None:
    """Wait until the spare answers ``path`` with the body whose sha256 is
    ``want_digest`` (None), else what it answered last."""
    def judge(status: int, body: bytes) -> str | None:
        got = hashlib.sha256(body).hexdigest()
        if status == 200 and got == want_digest:
            return None
        return (f"HTTP {status} from {address} for {host}, body sha256 {got[:12]} "
                f"is not the restored index's {want_digest[:12]}")
    return _wait(address, host, path, deadline, judge)


def php_answered(address: str, host: str, want_digest: str, version: str, deadline: float) -> str | None:
    """Wait until the drill's PHP probe answers ``<want_digest> <version>`` (None), else
    what it answered last."""
    want = f"{want_digest} {version}"

    def judge(status: int, body: bytes) -> str | None:
        text = body.decode(errors="replace").strip()
        if status == 200 and text == want:
            return None
        return (f"PHP probe: HTTP {status} from {address} for {host}, answered {text[:80]!r}, "
                f"not the restored file's sha256 {want_digest[:12]} from PHP {version}")
    return _wait(address, host, agent.PROBE_URL, deadline, judge)


def _wait(address: str, host: str, path: str, deadline: float,
          judge: Callable[[int, bytes], str | None]) -> str | None:
    last = "no answer"
    while True:
        try:
            status, body = fetch(address, host, path)
        except (OSError, http.client.HTTPException) as exc:
            last = f"no HTTP answer from {address} for {host}: {exc}"
        else:
            bad = judge(status, body)
            if bad is None:
                return None
            last = bad
        if time.monotonic() >= deadline:
            return last
        time.sleep(0.2)


def php_version(wanted: str | None, offered: Sequence[str]) -> tuple[str, str]:
    """(the PHP-FPM version the scratch copy runs, a note when it is not the
    subscription's): its own when the spare has it, else the spare's newest; ``""``
    without PHP (none wanted, or none on the spare: said)."""
    if not wanted:
        return "", ""
    if wanted in offered:
        return wanted, ""
    if not offered:
        return "", f"the spare has no PHP-FPM: PHP {wanted} not tried"
    used = max(offered, key=lambda v: tuple(int(x) for x in v.split(".")))
    return used, f"PHP {wanted} is not on the spare: the probe ran on PHP {used}"


class DrDrill:
    """Runs the drill (see the module docstring) for chosen subscriptions."""

    def __init__(self, topo: topology.Topology, store: state_store.Store, pool: transport.Pool,
                 spares: Iterable[str]) -> None:
        self.topo = topo
        self.store = store
        self.pool = pool
        self.spares = sorted(spares)

    def run(self, items: Sequence[Mapping[str, Any]], now: dt.datetime, *, only: Iterable[str] | None = None,
            count: int = DEFAULT_PER_NIGHT) -> dict[str, drills.Drill]:
        """Drill ``only`` these, else tonight's sample of ``count``; nothing without a spare."""
        if not self.spares:
            return {}
        want = units.wanted(items)
        by_name = {i["name"]: i for i in items}
        chosen = [s for s in only if s in want] if only is not None else sample(want, drills.latest(self.store),
                                                                                 count)
        snaps = ledger.snapshots(self.store)
        out: dict[str, drills.Drill] = {}
        for sub in chosen:
            p = plan(self.topo, self.spares, snaps, by_name[sub])
            if isinstance(p, str):
                d = drills.Drill(sub, now, False, p, None, None, "", "", "")
            else:
                d = self.drill(by_name[sub], p, now)
            drills.record(self.store, d)
            out[sub] = d
        return out

    def _job(self, spare: str, **kw: Any) -> backupjobs.BackupOutcome:
        """One ``drill`` job of the agent's ``drdrill`` entry on ``spare`` (the backup CA staged)."""
        ca = transport.File(runner.CA_FILE, provisioning.backup.ca_pem(self.pool.ctx.state_dir).encode(), 0o600)
        job = backupjobs.BackupJob(host=spare, cacert=runner.CA_FILE, **kw)
        out = transport.Agent(self.pool.get(spare), "drdrill").run(jobs.Job(jobs.VERSION, "drill", backup=job), [ca],
                                                                   timeout=3600.0)
        if out.backup is None:
            raise errors.PermanentError(f"server {spare}: the drdrill agent answered without a backup outcome")
        return out.backup

    def engines(self, spare: str) -> list[str]:
        return sorted(r.removeprefix("db-") for r in self.topo.ctx.servers[spare].roles if r.startswith("db-"))

    def drill(self, item: Mapping[str, Any], p: Plan, now: dt.datetime) -> drills.Drill:
        sub, spare = p.subscription, p.spare
        address = self.topo.ctx.servers[spare].address
        scratch = hashlib.sha256(f"{sub}{now.isoformat()}".encode()).hexdigest()[:10]
        problems: list[str] = []
        php, note = php_version(self.php_wanted(item), self.topo.ctx.servers[spare].php_versions)
        rto: float | None = None
        t0 = time.monotonic()
        try:
            results: list[backupjobs.PartResult] = []
            for j, (src, parts) in enumerate(sorted(p.parts.items())):
                res = self._job(spare, local=self.topo.repo(src, p.source_region),
                                units=[backupjobs.Unit(subscription=sub, parts=parts)], scratch=f"{scratch}{j}",
                                dr="restore", dr_fresh=j == 0, dr_address=address, dr_engines=self.engines(spare),
                                dr_php=php, dr_fake_corrupt_index=os.environ.get(FAKE_CORRUPT_ENV) == "1")
                results.extend(res.parts)
            for r in results:
                problem = r.error if not r.ok else nightly.compare(p.expected.get((r.kind, r.name)), r)
                if problem:
                    problems.append(f"{r.kind} {r.name}: {problem}")
            web = next((r for r in results if r.kind == "files" and r.ok), None)
            if web is not None and web.index_digest:
                path = "/" if web.index in ("index.html", "index.htm") else "/" + urllib.parse.quote(web.index)
                bad = answered(address, sub, web.index_digest, time.monotonic() + HTTP_WAIT, path)
                if bad:
                    problems.append(bad)
            elif web is not None and not web.php_digest:
                problems.append("the restored document root has no static file to fetch over HTTP")
            if web is not None and web.php_digest and not problems:
                bad = php_answered(address, sub, web.php_digest, web.php_version, time.monotonic() + HTTP_WAIT)
                if bad:
                    problems.append(bad)
            if not problems:
                rto = time.monotonic() - t0
        except errors.TenantctlError as exc:
            problems.append(f"drill on {spare} could not run: {exc}")
        finally:
            problems.extend(self.clean(spare))
        restored = min((s.taken_at for s in p.used), default=None)
        rpo, basis = self.rpo(item, now, restored)
        # the note (another PHP version) is no failure: in ``notes``, never in ``error``
        return drills.Drill(sub, now, not problems, "; ".join(problems) or None, rto, rpo,
                            p.source_region, spare, self.topo.region_of(spare), restored, basis, note or None)

    @staticmethod
    def php_wanted(item: Mapping[str, Any]) -> str | None:
        """The subscription's PHP version, or None without hosting or PHP."""
        hosting = (item.get("effective") or {}).get("hosting") or {}
        if not hosting.get("enabled", True):
            return None
        version = (hosting.get("php") or {}).get("version")
        return str(version) if version else None

    def clean(self, spare: str) -> list[str]:
        """Remove every scratch copy on ``spare``; the problems (leftovers) it met."""
        try:
            res = self._job(spare, dr="clean", dr_engines=self.engines(spare))
        except errors.TenantctlError as exc:
            return [f"cleaning {spare}: {exc}"]
        return [f"leftovers on {spare}: {rr.error}" for rr in res.repos if not rr.ok]

    def rpo(self, item: Mapping[str, Any], now: dt.datetime, restored: dt.datetime | None
            ) -> tuple[float | None, str]:
        """(seconds, basis): the newest archived log of its databases for PITR plans
        (the worst database), else the restored snapshot's time."""
        if pitr.wanted(item):
            try:
                lags = pitr.lags(self.topo, self.pool, [item], now)
            except errors.TenantctlError:
                lags = {}
            newest = [n for (_s, _e, _r), (_lag, n) in lags.items() if n is not None]
            if newest:
                return max(0.0, now.timestamp() - min(newest)), "archive"
        if restored is None:
            return None, "snapshot"
        return max(0.0, (now - restored).total_seconds()), "snapshot"
