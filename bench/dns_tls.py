#!/usr/bin/env python3
"""Benchmark of the dns and tls drivers against the embedded servers of
tests/drivers/servers.yaml (their addresses: 127.0.40.x, 127.0.41.1, 127.0.42.1).

DNS half, through the engine (issue 15): ``tenantctl apply`` run as a process, as a user
would, on ZONES subscriptions of one plan in eu-west (primary zones on drv-a, secondaries
on drv-c in us-east), with only the dns driver real (the other concerns ``not
provisioned``, so that the figures are DNS's: the process is this file run with
``--tenantctl``, which swaps them out and logs the dns driver's request counts). Each
run, with fresh names and a fresh state store:

* first apply, until the ZONES zones answer on the secondary (``dig`` batch @drv-c,
  SOA of every zone; target <= 15 s from the process's start);
* a no-op apply (nothing changed: the engine does not call the driver);
* a forced re-apply: what an upgrade of tenantctl triggers, ``tenantctl apply --force``
  (every concern of every subscription handed to its driver again, as a change of the
  drivers' sources does; target <= 3 s, nothing sent). Requests are the driver's own
  counts (``PATCH``, ``PUT``, ...), checked against the primary's listing (zones whose
  serial or account moved).

Medians of RUNS runs, the machine's load average printed around each figure.

TLS half: CERTS subscriptions with SSL on drv-a applied through ``Engine`` (in this
process) with the real web, php, dns and tls drivers; the tls batch orders CERTS
certificates from the embedded Pebble (HTTP-01, at most ``Settings.concurrency`` orders
in flight, the CA's token bucket at its default 5/s, burst 10) and installs them with one
reload (target <= 30 s). Pebble's settings are read from its running process.

Usage: ``TENANTCTL_TEST_STATE=DIR bench/dns_tls.py [ZONES [CERTS [RUNS]]]`` (0 skips a
half; defaults 1000 100 3) with an environment up in DIR (``env up`` or the driver tests'
state), else it brings one up and down itself (hold /tmp/tenantctl-embedded.lock).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import errors, model
from controller.drivers import context, embedded
from controller.drivers.dns import DnsDriver
from controller.drivers.embedded import pebble
from controller.drivers.powerdns import api

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ROOT / "tests" / "drivers" / "servers.yaml"
TARGET_S = 15.0
FORCED_TARGET_S = 3.0
TLS_TARGET_S = 30.0
PRIMARY, SECONDARY = "drv-a", "drv-c"
REQUESTS = re.compile(r"dns apply: (\d+) change\(s\), (\d+) up to date, requests (\S*)")


# --- the tenantctl process -------------------------------------------------------------


def as_tenantctl(argv: Sequence[str]) -> None:
    """``tenantctl ARGV`` in this process with only the dns driver real, its per-batch
    request counts logged on stderr (what the bench parses)."""
    from controller.cli import main as cli_main
    from controller.drivers import base, registry

    real = registry.build

    def dns_only(ctx: context.Context) -> dict[str, base.Driver]:
        drivers = real(ctx)
        for concern, driver in list(drivers.items()):
            if concern != "dns":
                if isinstance(driver, base.Closeable):
                    driver.close()
                drivers[concern] = base.NotProvisioned(concern)
        return drivers

    registry.build = dns_only
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("controller.drivers.dns")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    sys.argv = ["tenantctl", *argv]
    cli_main.main()


@dataclass
class Apply:
    wall: float
    code: int
    stderr: str
    requests: dict[str, int] = field(default_factory=dict)
    changes: int = 0
    up_to_date: int = 0

    @classmethod
    def parse(cls, wall: float, code: int, stderr: str) -> Apply:
        out = cls(wall, code, stderr)
        for m in REQUESTS.finditer(stderr):
            out.changes += int(m.group(1))
            out.up_to_date += int(m.group(2))
            for part in filter(None, m.group(3).split(",")):
                method, _, n = part.partition("=")
                out.requests[method] = out.requests.get(method, 0) + int(n)
        return out

    def sent(self, method: str) -> int:
        return self.requests.get(method, 0)

    def writes(self) -> int:
        return sum(n for m, n in self.requests.items() if m != "GET")


def start_apply(work: Path, state: Path, desired: Path, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")},
           "TENANTCTL_STATE_DIR": str(state), "COLUMNS": "100"}
    err = work / f"apply-{uuid.uuid4().hex[:6]}.err"
    with err.open("wb") as f:
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--tenantctl", "apply", *extra,
                              "-f", str(SERVERS), "-f", str(desired)], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=f)
    return p, err


def finish(p: subprocess.Popen[bytes], err: Path, started: float) -> Apply:
    code = p.wait(timeout=600)
    return Apply.parse(time.perf_counter() - started, code, err.read_text(errors="replace"))


def apply(work: Path, state: Path, desired: Path, *extra: str) -> Apply:
    started = time.perf_counter()
    return finish(*start_apply(work, state, desired, *extra), started)


def desired_docs(names: Sequence[str]) -> str:
    plan = {"apiVersion": "tenantctl.io/v1", "kind": "ServicePlan", "metadata": {"name": "bench-dns"},
            "spec": {"resources": {"diskMB": 10, "domains": 1, "subdomains": 1, "domainAliases": 1, "databases": 0},
                     "hosting": {"enabled": True, "ssl": False, "php": {"handler": "fpm", "version": "8.2",
                                                                        "settings": {}}},
                     "dns": {"mode": "primary"}}}
    customer = {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "metadata": {"name": "bench-dns"},
                "spec": {"email": "b@example.org", "state": "active"}}
    subs = [{"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": n},
             "spec": {"customer": "bench-dns", "plan": "bench-dns", "region": "eu-west"}} for n in names]
    return "\n---\n".join(json.dumps(d) for d in [plan, customer, *subs]) + "\n"


# --- what the servers say ---------------------------------------------------------------


def transferred(client: api.Client, wanted: set[str]) -> int:
    return sum(1 for z in client.zones() if z["name"] in wanted and int(z.get("serial") or 0) > 0)


def answering(address: str, zones: Sequence[str], work: Path) -> int:
    """How many of ``zones`` the server answers with their SOA (one ``dig`` batch)."""
    batch = work / "dig-batch"
    batch.write_text("".join(f"{z} SOA\n" for z in zones))
    out = subprocess.run(["dig", "+short", "+norec", "+time=2", "+tries=2", f"@{address}", "-f", str(batch)],
                         capture_output=True, text=True, timeout=300, check=False).stdout
    return sum(1 for line in out.splitlines() if len(line.split()) == 7)


def stamps(client: api.Client, wanted: set[str]) -> dict[str, tuple[object, object]]:
    """zone -> (serial, account) of the primary's listing."""
    return {z["name"]: (z.get("serial"), z.get("account")) for z in client.zones() if z["name"] in wanted}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# --- the DNS half ------------------------------------------------------------------------


@dataclass
class DnsRun:
    first: Apply
    #: until ``dig`` got the SOA of every zone from the secondary
    secondary_s: float
    #: until the secondary's listing showed every zone transferred (dig ran then)
    listed_s: float
    answered: int
    noop: Apply
    forced: Apply
    moved: int
    loads: list[str]


def dns_run(env_state: Path, zones: int, work: Path, drv: DnsDriver) -> DnsRun:
    state = work / f"state-{uuid.uuid4().hex[:6]}"
    state.mkdir()
    for part in ("ssh", "secrets"):  # the environment's credentials; a store of its own
        (state / part).symlink_to(env_state / part)
    tag = uuid.uuid4().hex[:6]
    names = [f"z{i:05d}-{tag}.bench.example" for i in range(zones)]
    wanted = {f"{n}." for n in names}
    desired = work / f"desired-{tag}.yaml"
    desired.write_text(desired_docs(names))
    servers = {s.name: s for s in drv.servers()}
    prim, sec = drv.client(servers[PRIMARY]), drv.client(servers[SECONDARY])
    loads = [load()]
    try:
        started = time.perf_counter()
        p, err = start_apply(work, state, desired)
        secondary_s, listed_s, answered = float("nan"), float("nan"), 0
        while time.perf_counter() - started < 120:
            if transferred(sec, wanted) == zones:
                listed_s = time.perf_counter() - started
                answered = answering(servers[SECONDARY].address, sorted(wanted), work)
                if answered == zones:
                    secondary_s = time.perf_counter() - started
                    break
            elif p.poll() is not None and p.returncode not in (0, 3):
                break
            time.sleep(0.2)
        first = finish(p, err, started)
        if first.code != 0:
            print(f"dns: first apply exited {first.code}: {first.stderr[-2000:]}")
        loads.append(load())
        noop = apply(work, state, desired)
        loads.append(load())
        before = stamps(prim, wanted)
        forced = apply(work, state, desired, "--force")
        if forced.code != 0:
            print(f"dns: forced apply exited {forced.code}: {forced.stderr[-2000:]}")
        after = stamps(prim, wanted)
        loads.append(load())
        moved = sum(1 for z in wanted if before.get(z) != after.get(z))
        return DnsRun(first, secondary_s, listed_s, answered, noop, forced, moved, loads)
    finally:
        remove_zones(drv, wanted)


def remove_zones(drv: DnsDriver, wanted: set[str]) -> None:
    """The bench's own zones, straight through the API (its state store is thrown away);
    what failed (PowerDNS's SQLite backend answers 500 to some concurrent deletes) is
    retried once, one at a time."""
    def one(job: tuple[api.Client, str]) -> tuple[api.Client, str] | None:
        try:
            job[0].delete(job[1])
        except errors.DriverError:
            return job
        return None

    jobs = [(drv.client(s), z) for s in drv.servers() for z in sorted(wanted)]
    with futures.ThreadPoolExecutor(max_workers=4) as pool:
        failed = [j for j in pool.map(one, jobs) if j is not None]
    left = [j for j in failed if one(j) is not None]
    if failed:
        print(f"dns: cleanup: {len(failed)} deletes failed at first, {len(left)} still failed", flush=True)


def dns(state_dir: Path, zones: int, runs: int) -> bool:
    ds = model.load_desired([SERVERS])
    drv = DnsDriver(context.Context.of(ds, state_dir))
    work = Path(tempfile.mkdtemp(prefix="bench-dns-cli-"))
    done: list[DnsRun] = []
    try:
        for i in range(runs):
            r = dns_run(state_dir, zones, work, drv)
            done.append(r)
            print(f"dns run {i + 1}/{runs}: first apply {r.first.wall:.2f}s (exit {r.first.code}, "
                  f"{r.first.sent('POST')} POST {r.first.sent('PUT')} PUT {r.first.sent('PATCH')} PATCH), "
                  f"{r.answered}/{zones} answer on {SECONDARY} at {r.secondary_s:.2f}s (listed {r.listed_s:.2f}s); no-op {r.noop.wall:.2f}s "
                  f"({r.noop.changes} to the driver); forced {r.forced.wall:.2f}s ({r.forced.changes} to the driver, "
                  f"{r.forced.up_to_date} up to date, requests {r.forced.requests}, {r.moved} zones moved); "
                  f"load {' -> '.join(r.loads)}", flush=True)
    finally:
        drv.close()
        shutil.rmtree(work, ignore_errors=True)
    if not done:
        return False
    sec = median([r.secondary_s for r in done])
    forced = median([r.forced.wall for r in done])
    patches = max(r.forced.sent("PATCH") for r in done)
    writes = max(r.forced.writes() + r.moved for r in done)
    ok_sec = all(r.answered == zones for r in done) and sec <= TARGET_S
    ok_forced = forced <= FORCED_TARGET_S and writes == 0
    print(f"dns ({runs} runs, medians; tenantctl apply as a process, dns driver only): "
          f"load {done[0].loads[0]} -> {done[-1].loads[-1]}")
    print(f"dns: first apply of {zones} subscriptions {median([r.first.wall for r in done]):.2f}s; "
          f"all {zones} zones answer on the secondary {SECONDARY} after {sec:.2f}s "
          f"(target <= {TARGET_S:.0f}s: {'ok' if ok_sec else 'MISSED'})")
    print(f"dns: no-op apply {median([r.noop.wall for r in done]):.2f}s "
          f"({max(r.noop.changes for r in done)} subscriptions handed to the driver)")
    print(f"dns: forced re-apply of {zones} unchanged zones {forced:.2f}s, {patches} PATCH, "
          f"{writes} writes in all (requests {done[-1].forced.requests}) "
          f"(target <= {FORCED_TARGET_S:.0f}s and nothing sent: {'ok' if ok_forced else 'MISSED'})")
    return ok_sec and ok_forced


# --- the TLS half ---------------------------------------------------------------------------


def pebble_settings(state_dir: Path) -> str:
    """What the environment's running Pebble was started with (its process environment
    and configuration)."""
    d = pebble.state(state_dir)
    try:
        pid = int((d / "pebble.pid").read_text().strip())
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        knobs = sorted(e.decode(errors="replace") for e in env if e.startswith(b"PEBBLE_"))
    except (OSError, ValueError):
        knobs = ["(Pebble's process not readable)"]
    try:
        config = json.loads((d / "config.json").read_text())["pebble"]
        validity = f"certificateValidityPeriod={config.get('certificateValidityPeriod')}"
    except (OSError, ValueError, KeyError):
        validity = "(no config.json)"
    return " ".join([*knobs, validity]) or "(none)"


def tls(state_dir: Path, certs: int) -> bool:
    import yaml

    from controller import ratelimit
    from controller.drivers.hosting import PhpDriver, WebDriver
    from controller.drivers.tls import Settings, TlsDriver
    from controller.reconcile import engine
    from controller.state import store as state_store

    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    ds0 = model.load_desired([SERVERS])
    ctx = context.Context.of(ds0, state_dir)
    limits = ratelimit.RateLimits()
    settings = Settings(account=f"bench-{uuid.uuid4().hex[:8]}", concurrency=16)
    tls_drv = TlsDriver(ctx, settings, limits=limits)
    web, php, dns_drv = WebDriver(ctx), PhpDriver(ctx), DnsDriver(ctx)
    drivers = engine.default_drivers()
    drivers.update(web=web, php=php, dns=dns_drv, tls=tls_drv)
    store = state_store.Store(tmp / "state.db")
    eng = engine.Engine(store, drivers, limits=limits)
    tag = uuid.uuid4().hex[:6]
    names = [f"c{i:03d}-{tag}.bench-tls.example" for i in range(certs)]
    plan = {"apiVersion": "tenantctl.io/v1", "kind": "ServicePlan", "metadata": {"name": "bench-tls"},
            "spec": {"resources": {"diskMB": 100, "domains": 1, "subdomains": 1, "domainAliases": 1, "databases": 0},
                     "hosting": {"enabled": True, "ssl": True, "httpsOnly": False, "errorDocuments": False,
                                 "php": {"handler": "fpm", "version": "8.2", "settings": {}}}}}
    customer = {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "metadata": {"name": "bench-tls"},
                "spec": {"email": "b@example.org", "state": "active"}}

    def desired(subs: list[str]) -> model.DesiredState:
        docs = [plan, customer, *({"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": n},
                                   "spec": {"customer": "bench-tls", "plan": "bench-tls", "region": "eu-west",
                                            "server": "drv-a"}} for n in subs)]
        (tmp / "desired.yaml").write_text(yaml.safe_dump_all(docs))
        return model.load_desired([SERVERS, tmp / "desired.yaml"])

    marks: dict[str, float] = {}
    started = time.perf_counter()

    def progress(what: str, done: int, total: int) -> None:
        del done, total
        marks[what] = time.perf_counter()

    try:
        report = eng.reconcile(desired(names), progress=progress)
        total = time.perf_counter() - started
        before = started
        for what, at in marks.items():
            print(f"tls bench: {what}: {at - before:.2f}s")
            before = at
        dns_done = max((at for what, at in marks.items() if what.startswith("dns on ")), default=started)
        tls_s = marks.get("tls on drv-a", started) - dns_done
        issued = sum(1 for n in names if report.outcomes.get(n, {}).get("tls") == "provisioned")
        c = tls_drv.counters
        per_order = {k: round(c.order_seconds[k] / c.orders[k], 3) for k in c.orders}
        print(f"tls: {issued}/{certs} certificates issued and installed in {tls_s:.2f}s (one tls batch, "
              f"concurrency {settings.concurrency}, CA bucket 5/s burst 10; target <= {TLS_TARGET_S:.0f}s: "
              f"{'ok' if issued == certs and tls_s <= TLS_TARGET_S else 'MISSED'})")
        print(f"tls: ACME requests {c.requests} ({c.total_requests / max(certs, 1):.1f} per certificate), "
              f"mean order {per_order}s; whole pass web+php+dns+tls {total:.2f}s")
        if report.failed:
            print("first failure:", next(iter(report.failed.items())))
        return issued == certs and tls_s <= TLS_TARGET_S
    finally:
        cleanup = time.perf_counter()
        done = eng.reconcile(desired([]), allow_mass_delete=True)  # the bench's own: confirmed
        print(f"tls: cleanup (delete of {len(done.planned.deletions)} subscriptions, archives first) "
              f"{time.perf_counter() - cleanup:.2f}s, {len(done.failed)} failed")
        for d in (web, php, tls_drv):
            d.close()
        dns_drv.close()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        for n in names:
            shutil.rmtree(state_dir / "retained" / n, ignore_errors=True)


def main() -> int:
    if sys.argv[1:2] == ["--tenantctl"]:
        as_tenantctl(sys.argv[2:])
        return 0
    zones = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    certs = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    print(f"== bench/dns_tls.py  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load average {load()}", flush=True)
    shared = os.environ.get("TENANTCTL_TEST_STATE")
    prefix = str(Path(tempfile.gettempdir()) / "bench-dns-")
    state_dir = Path(shared) if shared else Path(tempfile.mkdtemp(prefix=Path(prefix).name))
    specs = [embedded.ServerSpec.from_dict({"name": n, **s.model_dump(mode="json")})
             for n, s in model.load_desired([SERVERS]).servers.items()]
    with embedded.hold(state_dir):
        if not shared:  # what a killed run of this bench left on these addresses (never other environments)
            embedded.remove_abandoned(specs, prefix=prefix)
        embedded.env_up(specs, state_dir)
        try:
            ok = dns(state_dir, zones, runs) if zones else True
            if certs:
                print(f"tls: Pebble ran with {pebble_settings(state_dir)}", flush=True)
            ok = (tls(state_dir, certs) if certs else True) and ok
            print(f"load average at the end {load()}")
        finally:
            if not shared:  # only this bench's own temporary environment
                embedded.env_down(state_dir, only=specs, destroy_data=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
