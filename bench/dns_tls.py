#!/usr/bin/env python3
"""Benchmark of issue 4 against the embedded servers (tests/drivers/servers.yaml).

DNS half: 1,000 zones created through the dns driver in one batch (primary drv-a in
eu-west) and all present, transferred, on the us-east secondary drv-c (target <= 15 s);
then a no-op re-apply of the same batch. Prints measured times.

TLS half: CERTS subscriptions with SSL on drv-a applied through ``Engine`` with the real
web, php, dns and tls drivers; the tls batch orders CERTS certificates from the embedded
Pebble (HTTP-01, at most ``Settings.concurrency`` orders in flight, the CA's token bucket
at its default 5/s, burst 10) and installs them with one reload (target <= 30 s).

Usage: ``TENANTCTL_TEST_STATE=DIR bench/dns_tls.py [ZONES [CERTS]]`` (0 skips a half) with
an environment up in DIR (``env up`` or the driver tests' state), else it brings one up
and down itself.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import model
from controller.drivers import base, context, embedded
from controller.drivers.dns import DnsDriver
from controller.effective import spec

SERVERS = Path(__file__).resolve().parent.parent / "tests" / "drivers" / "servers.yaml"
TARGET_S = 15.0
TLS_TARGET_S = 30.0


def item(name: str, n: int) -> dict[str, object]:
    return {
        "name": name, "ip": f"127.0.40.{1 + n % 2}", "region": "eu-west", "server": "drv-b", "state": "active",
        "effective": {"dns": {"mode": "primary", "primaries": []}, "sites": [],
                      "mail": {"enabled": True, "mailingLists": False}, "permissions": {"manageDNS": False}},
    }


def dns(state_dir: Path, zones: int) -> bool:
    ds = model.load_desired([SERVERS])
    ctx = context.Context.of(ds, state_dir)
    drv = DnsDriver(ctx)
    primary, secondary = drv.servers()
    tag = uuid.uuid4().hex[:6]
    names = [f"z{i:05d}-{tag}.bench.example" for i in range(zones)]
    changes = [base.Change(n, "ensure", drv.slice(spec.sketch(item(n, i)))) for i, n in enumerate(names)]
    wanted = {f"{n}." for n in names}
    sec = drv.client(secondary)
    try:
        started = time.perf_counter()
        results = drv.apply("drv-b", changes)
        applied = time.perf_counter() - started
        failed = [r for r in results if r.outcome != "provisioned"]
        present = 0
        while time.perf_counter() - started < 60:
            have = {z["name"] for z in sec.zones() if z["name"] in wanted and int(z.get("serial") or 0) > 0}
            present = len(have)
            if present == zones:
                break
            time.sleep(0.1)
        total = time.perf_counter() - started
        again = time.perf_counter()
        before = dict(drv.client(primary).sent)
        drv.apply("drv-b", changes)
        noop = time.perf_counter() - again
        patches = drv.client(primary).sent.get("PATCH", 0) - before.get("PATCH", 0)
        print(f"dns: {zones} zones applied on {primary.name} (+ secondary zones on {secondary.name}) "
              f"in {applied:.2f}s ({len(failed)} failed)")
        print(f"dns: all {present}/{zones} transferred to {secondary.name} after {total:.2f}s "
              f"(target <= {TARGET_S:.0f}s: {'ok' if present == zones and total <= TARGET_S else 'MISSED'})")
        print(f"dns: no-op re-apply of {zones} zones {noop:.2f}s, {patches} PATCH sent")
        if failed:
            print("first failure:", failed[0].message)
        return present == zones and total <= TARGET_S and not failed
    finally:
        cleanup = time.perf_counter()
        gone = drv.apply("drv-b", [base.Change(n, "delete", {"name": n}) for n in names])
        bad = [r for r in gone if r.outcome != "provisioned"]
        print(f"dns: cleanup (export + delete of {zones} zones everywhere) {time.perf_counter() - cleanup:.2f}s"
              + (f", {len(bad)} failed, first: {bad[0].message}" if bad else ""))
        if bad:  # the engine would retry them with backoff: do it once here
            again = drv.apply("drv-b", [base.Change(r.name, "delete", {"name": r.name}) for r in bad])
            print(f"dns: cleanup retry: {sum(r.outcome != 'provisioned' for r in again)} still failed")
        drv.close()
        for n in names:  # the exports the deletes retained (LIFE-6) are the bench's own
            shutil.rmtree(state_dir / "retained" / n, ignore_errors=True)


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
        tls_s = marks.get("tls on drv-a", started) - marks.get("dns on drv-a", started)
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
    zones = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    certs = int(sys.argv[2]) if len(sys.argv) > 2 else 100
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
            ok = dns(state_dir, zones) if zones else True
            ok = (tls(state_dir, certs) if certs else True) and ok
        finally:
            if not shared:  # only this bench's own temporary environment
                embedded.env_down(state_dir, only=specs, destroy_data=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
