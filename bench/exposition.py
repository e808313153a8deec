#!/usr/bin/env python3
"""The controller's /metrics at scale (issue 12 item 6): series count against the
cardinality budget, exposition size, and the time a real client (curl, as a process)
takes to scrape it, at ``--subs`` subscriptions over ``--servers`` servers in three
regions, every subscription with a certificate (the worst case: certificates are the one
per-subscription series, alerting per certificate is the point).

The registry is tenantctl's own (``controller.metrics.Metrics``), filled with figures of
that size through its public setters, served by its own ``serve`` as ``tenantctl run``
does; medians of ``--runs`` scrapes after one warm-up.

    .venv/bin/python bench/exposition.py [--subs 10000] [--servers 20] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from controller import metrics

REGIONS = ("eu-west", "us-east", "ap-southeast")
#: the budget README states: 2 series per subscription with a certificate (expiry, last
#: renewal; + 1 while its renewal fails), per server at most PER_SERVER, FIXED others
PER_SERVER = 60
FIXED = 400
TARGET_SCRAPE_SECONDS = 0.3


def budget(subs: int, servers: int) -> int:
    return 2 * subs + PER_SERVER * servers + FIXED


def populate(m: metrics.Metrics, subs: int, servers: int) -> metrics.Metrics:
    """Figures of ``subs`` subscriptions on ``servers`` servers, every series family filled."""
    names = [f"srv-{i:02d}" for i in range(servers)]
    region = {n: REGIONS[i % len(REGIONS)] for i, n in enumerate(names)}
    states = ["provisioned", "failed", "not provisioned"]
    m.set_subscription_summary(
        {"name": f"s{i}.example.org", "sync": ("synced", "unsynced", "locked", "custom")[i % 4],
         "state": "suspended" if i % 50 == 0 else "active", "stateReason": "nonpayment" if i % 50 == 0 else "",
         "conflicts": [{"property": "hosting.php.version"}] if i % 40 == 0 else [],
         "concerns": {c: states[(i + k) % 97 == 0] for k, c in enumerate(metrics.CONCERNS)},
         "overuse": {"over": ["diskMB"] if i % 300 == 0 else [], "notify": ["traffic"] if i % 200 == 0 else []}}
        for i in range(subs))
    now = time.time()
    m.set_tls(metrics.TlsSnapshot(
        expiry={f"s{i}.example.org": now + 86400 * (10 + i % 80) for i in range(subs)},
        renewed={f"s{i}.example.org": now - 86400 * (i % 60) for i in range(subs)},
        failures={f"s{i}.example.org": 1 + i % 3 for i in range(0, subs, 500)},
        requests={"ok": 40 * subs, "error": 12}, request_seconds={"ok": 0.3 * subs, "error": 2.0},
        orders={"issued": subs, "failed": 3}, order_seconds={"issued": 4.0 * subs, "failed": 9.0}))
    m.set_backup(metrics.BackupFigures(
        last_success={(n, r): now - 3600 for n in names for r in REGIONS},
        last_duration={(n, r): 120.0 for n in names for r in REGIONS},
        stale=dict.fromkeys(REGIONS, 0), failed=dict.fromkeys(names, 0), added_bytes=dict.fromkeys(names, 1e6),
        drill_failed=0, drill_last=now, drill_seconds=300.0,
        repo_ok=dict.fromkeys(REGIONS, True), repo_checked=dict.fromkeys(REGIONS, now)))
    m.set_pitr({(n, e, region[n]): (0.0, now) for n in names for e in ("postgresql", "mariadb")})
    m.set_dns({(n, s): subs // servers for n in names for s in ("primary", "secondary", "behind", "empty",
                                                                  "foreign")}, dict.fromkeys(names, now))
    for n in names:
        m.set_server_reachable(n, True)
    for result, seconds in (("success", 0.05), ("error", 1.0), ("requeue", 0.2)):
        m.observe_reconcile(result, seconds)
    m.set_desired_state(True, now)
    m.set_deletions_held(0)
    m.set_backoff(3, 1)
    return m


def series(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--subs", type=int, default=10_000)
    ap.add_argument("--servers", type=int, default=20)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    m = populate(metrics.Metrics(version="bench"), args.subs, args.servers)
    server = m.serve("127.0.0.1:0")
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        def scrape() -> tuple[float, bytes]:
            t0 = time.perf_counter()
            done = subprocess.run(["curl", "-sS", "--fail", url], capture_output=True, check=True, timeout=60)
            return time.perf_counter() - t0, done.stdout

        scrape()  # warm-up
        runs = [scrape() for _ in range(args.runs)]
    finally:
        server.shutdown()
    seconds = statistics.median(t for t, _ in runs)
    body = runs[-1][1]
    n, allowed = series(body), budget(args.subs, args.servers)
    print(f"== bench/exposition.py  {args.subs:,} subscriptions (all with a certificate), {args.servers} servers, "
          f"{len(REGIONS)} regions; load average {load} -> {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"series            {n:,}  budget {allowed:,} (2 per certificate + {PER_SERVER} per server + {FIXED})  "
          f"{'PASS' if n <= allowed else 'MISS'}")
    print(f"exposition        {len(body) / 1e6:.2f} MB")
    print(f"scrape with curl  median {seconds:.3f} s of {args.runs} (target <= {TARGET_SCRAPE_SECONDS} s)  "
          f"{'PASS' if seconds <= TARGET_SCRAPE_SECONDS else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
