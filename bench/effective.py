#!/usr/bin/env python3
"""Benchmark of the core (issue "Core"): 10,000 subscriptions over 50 plans and 20 add-ons.

Prints measured times and ratios against the targets (no-op pass <= 1 s, RSS <= 300 MB):
load+validate, first plan pass (empty store), first apply (drivers not provisioned),
a full no-op ``plan`` pass against the store, recompute after one plan edit touching
2,000 subscriptions, and peak RSS.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import model
from controller.reconcile import engine, planner
from controller.state import store as state_store

SUBS, PLANS, ADDONS, CUSTOMERS, SERVERS_PER_REGION = 10_000, 50, 20, 1000, 8
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def header(kind: str, name: str) -> str:
    return f"---\napiVersion: tenantctl.io/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n"


def write_state(d: Path, subs: int = SUBS) -> None:
    """The benchmark's documents for ``subs`` subscriptions (bench/cli_scale.py uses it
    too); server capacity grows with the count so that everything can be placed."""
    sites = max(2000, -(-subs * 5 // (4 * 2 * SERVERS_PER_REGION)))
    parts = []
    for r in ("eu-west", "us-east"):
        parts.append(header("Region", r) + "  timezone: UTC\n")
    for r_i, r in enumerate(("eu-west", "us-east")):
        for s in range(SERVERS_PER_REGION):
            addr = f"127.{50 + r_i}.{s}.1"
            parts.append(header("Server", f"{r}-{s}") + f"""  region: {r}
  provider: docker
  address: {addr}
  ips: [{{address: {addr}, type: shared}}, {{address: 127.{50 + r_i}.{s}.2, type: dedicated}}]
  roles: [web, db-mariadb, db-postgresql, dns, backup]
  capacity: {{sites: {sites}}}
  offers: {{php: {{versions: ["8.2"], handlers: [fpm]}}}}
""")
    for p in range(PLANS):
        version = "7.4" if p % 10 == 9 else "8.2"
        parts.append(header("ServicePlan", f"plan-{p}") + f"""  resources: {{diskMB: {1000 * (p + 1)}, databases: {p % 7}, domains: 3}}
  permissions: {{manageHosting: {str(p % 3 == 0).lower()}, managePHPPerformance: {str(p % 6 == 0).lower()}}}
  hosting:
    ssl: {str(p % 2 == 0).lower()}
    php: {{handler: fpm, version: "{version}", settings: {{memory_limit: {64 + p}M, max_execution_time: 30}}}}
  backup: {{schedule: "0 2 * * *", keepDaily: 15}}
""")
    for a in range(ADDONS):
        parts.append(header("AddOnPlan", f"addon-{a}") + f"""  resources: {{databases: {a % 3 + 1}, diskMB: 100}}
  hosting: {{php: {{settings: {{max_input_vars: {1000 + a}}}}}}}
""")
    for c in range(CUSTOMERS):
        parts.append(header("Customer", f"cust-{c}") + f"  email: c{c}@example.org\n")
    (d / "infra.yaml").write_text("".join(parts))
    out = []
    for i in range(subs):
        extra = ""
        if i % 10 == 0:
            extra += f"  addons: [addon-{i % ADDONS}, addon-{(i + 7) % ADDONS}]\n"
        if i % 50 == 0:
            extra += "  customizations: {resources: {databases: 10}}\n"
        if i % 25 == 0:
            extra += "  databases: [{name: app, engine: mariadb}]\n"
        plan = "plan-0" if i % 5 == 0 else f"plan-{1 + i % (PLANS - 1)}"
        region = "eu-west" if i % 2 else "us-east"
        out.append(header("Subscription", f"site{i}.example.org") + f"""  customer: cust-{i % CUSTOMERS}
  plan: {plan}
  region: {region}
""" + extra)
    (d / "subs.yaml").write_text("".join(out))


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_state(d)
        ds, t_load = timed(lambda: model.load_desired([d]))
        drivers = engine.default_drivers()
        first, t_first = timed(lambda: planner.plan(ds, NOW, drivers, None))
        assert len(first.subscriptions) == SUBS
        del first  # a CLI run holds one plan at a time
        store = state_store.Store(d / "state.db")
        eng = engine.Engine(store, clock=lambda: NOW)
        rep, t_apply = timed(lambda: eng.reconcile(ds))
        assert rep.ok, rep.failed
        del rep
        noops = []
        for _ in range(3):
            p, t = timed(lambda: planner.plan(ds, NOW, drivers, store))
            assert not p.has_changes, "a second pass found changes: not idempotent"
            assert p.recomputed == 0, p.recomputed
            noops.append(t)
        t_noop = min(noops)
        # One plan edit: plan-0 is used by 2,000 subscriptions (40 of them locked).
        old = ds.plans["plan-0"]
        ds.plans["plan-0"] = old.model_copy(
            update={"resources": old.resources.model_copy(update={"diskMB": 123456})})
        doc = ds.docs[("ServicePlan", "plan-0")]
        ds.docs[("ServicePlan", "plan-0")] = dataclasses.replace(doc, digest=doc.digest + "-edited")
        p2, t_edit = timed(lambda: planner.plan(ds, NOW, drivers, store))
        touched = sum(1 for a in p2.actions.values() if a)
        recomputed = p2.recomputed
        store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"subscriptions: {SUBS}, plans: {PLANS}, add-ons: {ADDONS}")
    print(f"load + validate:                 {t_load:6.2f} s")
    print(f"first plan pass (empty store):   {t_first:6.2f} s")
    print(f"first apply (not provisioned):   {t_apply:6.2f} s")
    print(f"no-op plan pass (best of 3):     {t_noop:6.2f} s   target <= 1 s   ratio {t_noop / 1.0:.2f}")
    print(f"recompute after plan edit:       {t_edit:6.2f} s   ({recomputed} recomputed, {touched} changed: locked ones keep theirs)")
    print(f"peak RSS:                        {rss_mb:6.0f} MB  target <= 300 MB ratio {rss_mb / 300:.2f}")


if __name__ == "__main__":
    main()
