#!/usr/bin/env python3
"""Benchmark of the state store, the work queue and the metrics summary at 10,000 subscriptions.

Prints: write throughput of set_fingerprints (one transaction per subscription, and
batched 500 per transaction), all_fingerprints over 10,000 x 6 resources, put_status
(changed and unchanged), get_status, events.record, WorkQueue add/get/done, and
Metrics.set_subscription_summary + exposition. Medians of 5 runs for the reads.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import metrics
from controller.reconcile import queue
from controller.state import events, store

SUBS = 10_000
RESOURCES = ("*", "web", "php", "db", "dns", "tls")


def fps(i: int, gen: int = 0) -> dict[str, str]:
    return {r: f"{i:032x}{gen}{r}" for r in RESOURCES}


def timed(label: str, n: int, fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    took = time.perf_counter() - start
    rate = f"{n / took:,.0f}/s" if n else ""
    print(f"{label:<58} {took:8.3f} s  {rate}")
    return took


def median(label: str, fn: object, runs: int = 5) -> None:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    print(f"{label:<58} {statistics.median(times):8.3f} s  (median of {runs})")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, store.Store(Path(tmp) / "state.db") as st:
        names = [f"s{i:05d}.example" for i in range(SUBS)]

        def one_tx_each() -> None:
            for i, name in enumerate(names):
                st.set_fingerprints(name, fps(i))

        def batched() -> None:
            for start in range(0, SUBS, 500):
                with st.transaction():
                    for i in range(start, min(start + 500, SUBS)):
                        st.set_fingerprints(names[i], fps(i, 1))

        timed("set_fingerprints, 1 transaction per subscription (x6)", SUBS, one_tx_each)
        timed("set_fingerprints, 500 subscriptions per transaction", SUBS, batched)
        median("all_fingerprints: 10,000 subscriptions x 6 resources", st.all_fingerprints)
        assert sum(len(v) for v in st.all_fingerprints().values()) == SUBS * 6

        docs = [{"name": n, "sync": "synced", "state": "active", "conflicts": [], "concerns": {}} for n in names]

        def put_all() -> None:
            with st.transaction():
                for n, d in zip(names, docs, strict=True):
                    st.put_status(n, d)

        timed("put_status x10,000 (changed, one transaction)", SUBS, put_all)
        timed("put_status x10,000 (unchanged: compare only)", SUBS, put_all)
        median("get_status (10,000 documents)", st.get_status)

        def record_events() -> None:
            with st.transaction():
                for n in names:
                    events.record(st, actor="controller", action="apply", subject=n, message="noop")

        timed("events.record x10,000 (one transaction)", SUBS, record_events)

    q = queue.WorkQueue[str]()

    def churn() -> None:
        for n in names:
            q.add(n)
        while q.len():
            key = q.get(0)
            assert key is not None
            q.done(key)

    timed("WorkQueue add+get+done x10,000", SUBS, churn)

    m = metrics.Metrics()
    items = [
        {
            "sync": "unsynced" if i % 10 == 0 else "synced",
            "state": "active",
            "stateReason": None,
            "conflicts": [{"property": "hosting.php.version"}] if i % 10 == 0 else [],
            "concerns": dict.fromkeys(metrics.CONCERNS, "provisioned"),
        }
        for i in range(SUBS)
    ]
    median("Metrics.set_subscription_summary (10,000 items)", lambda: m.set_subscription_summary(items))
    median("Metrics.exposition", m.exposition)


if __name__ == "__main__":
    main()
