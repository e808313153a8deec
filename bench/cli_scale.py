#!/usr/bin/env python3
"""The commands users run, measured as processes, at 1,000 and 10,000 subscriptions
(and 50,000 with ``--big``): issue 15, point 5.

For each size it writes bench/effective.py's documents (50 plans, 20 add-ons, 1,000
customers, 16 servers) into a temporary directory, then runs ``tenantctl`` as a
separate process, as a user would, with ``TENANTCTL_DRIVERS=none`` and its own
temporary ``TENANTCTL_STATE_DIR``:

- ``validate -f DIR``, ``--repeat`` times;
- ``apply -f DIR`` once (drivers off: fills the state store, so that the next two
  commands have something to read);
- ``plan -f DIR -o json`` (a no-op) and ``status``, ``--repeat`` times each.

Each line gives the first run (for ``validate``, the first command of a size: an empty
state directory, so a cold parse cache) and the median of the other runs, each with
the peak RSS of the process (its own ``ru_maxrss`` from ``wait4``; for the others, the
highest), and the median divided by a raw
``yaml.load_all(..., Loader=yaml.CSafeLoader)`` of the same files measured in the
same run (in this process, and as a ``python -c`` process). The load average is
printed before each size, the growth between sizes at the end: it must be linear.

    .venv/bin/python bench/cli_scale.py [--big] [--repeat 3] [--sizes 1000,10000]
        [--commands validate,apply,plan,status] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from effective import write_state  # bench/: the same documents as bench/effective.py

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("validate", "apply", "plan", "status")


@dataclass(frozen=True)
class Run:
    wall: float
    rss_mb: float
    code: int
    stderr: str


def run_process(argv: Sequence[str], env: dict[str, str]) -> Run:
    """One process to its end: wall time, and peak RSS from the kernel's own accounting."""
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        p = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return Run(wall, usage.ru_maxrss / 1024, p.returncode, text)


def tenantctl() -> str:
    local = Path(sys.executable).parent / "tenantctl"
    found = str(local) if local.exists() else shutil.which("tenantctl")
    if found is None:
        sys.exit("tenantctl is not installed in this environment")
    return found


def raw_parse(files: list[Path]) -> float:
    """The reference: PyYAML's C loader alone over the same files, in this process."""
    t = time.perf_counter()
    for f in files:
        for _ in yaml.load_all(f.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader):
            pass
    return time.perf_counter() - t


RAW_PROCESS = ("import sys, yaml\n"
               "for f in sys.argv[1:]:\n"
               "    list(yaml.load_all(open(f, encoding='utf-8').read(), Loader=yaml.CSafeLoader))\n")


@dataclass(frozen=True)
class Figure:
    command: str
    first: Run
    median: float
    #: the highest peak RSS of the runs after the first
    rss_mb: float


def measure(size: int, commands: Sequence[str], repeat: int, work: Path, env0: dict[str, str]) -> dict[str, Figure]:
    d = work / f"desired-{size}"
    d.mkdir()
    write_state(d, size)
    files = sorted(d.glob("*.yaml"))
    mb = sum(f.stat().st_size for f in files) / 1e6
    load1, load5, _ = os.getloadavg()
    raws = [raw_parse(files) for _ in range(repeat)]
    raw = statistics.median(raws)
    raw_procs = [run_process([sys.executable, "-c", RAW_PROCESS, *map(str, files)], env0) for _ in range(repeat)]
    raw_proc = statistics.median(r.wall for r in raw_procs)
    print(f"\n== {size:,} subscriptions ({mb:.1f} MB of YAML)   load average {load1:.2f} {load5:.2f}")
    print(f"raw C-loader parse: {raw:.2f} s in process, {raw_proc:.2f} s as a process "
          f"({max(r.rss_mb for r in raw_procs):.0f} MB)")
    print(f"{'command':<22} {'first':>7} {'RSS':>7} {'median':>8} {'RSS':>7} {'x parse':>8} {'x parse-proc':>13}")
    env = {**env0, "TENANTCTL_STATE_DIR": str(work / f"state-{size}"), "TENANTCTL_DRIVERS": "none"}
    argvs = {
        "validate": ["validate", "-f", str(d)],
        "apply": ["apply", "-f", str(d)],
        "plan": ["plan", "-f", str(d), "-o", "json"],
        "status": ["status"],
    }
    out: dict[str, Figure] = {}
    for cmd in COMMANDS:
        if cmd not in commands:
            continue
        runs = [run_process([tenantctl(), *argvs[cmd]], env) for _ in range(1 if cmd == "apply" else repeat)]
        rest = runs[1:] or runs
        fig = Figure(cmd, runs[0], statistics.median(r.wall for r in rest), max(r.rss_mb for r in rest))
        out[cmd] = fig
        label = f"{cmd} ({'once' if cmd == 'apply' else f'{len(runs)} runs'})"
        codes = sorted({r.code for r in runs})
        last = (runs[-1].stderr.strip().splitlines() or [""])[-1][:200]
        note = "" if codes == [0] else f"   exit {','.join(map(str, codes))}: {last}"
        print(f"{label:<22} {fig.first.wall:6.2f}s {fig.first.rss_mb:4.0f} MB {fig.median:7.2f}s {fig.rss_mb:4.0f} MB "
              f"{fig.median / raw:7.1f}x {fig.median / raw_proc:12.1f}x{note}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--big", action="store_true", help="also 50,000 subscriptions")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command (apply: once)")
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated subscription counts")
    ap.add_argument("--commands", default=",".join(COMMANDS), help=f"a subset of {','.join(COMMANDS)}")
    ap.add_argument("--keep", type=Path, help="work in this directory and leave it (default: a temporary one)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.big and 50_000 not in sizes:
        sizes.append(50_000)
    commands = [c for c in args.commands.split(",") if c]
    unknown = set(commands) - set(COMMANDS)
    if unknown:
        ap.error(f"unknown command(s): {', '.join(sorted(unknown))}")
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    env0 = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    results: dict[int, dict[str, Figure]] = {}
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        work_ctx: tempfile.TemporaryDirectory[str] | None = None
        work = args.keep
    else:
        work_ctx = tempfile.TemporaryDirectory(prefix="tenantctl-cli-scale-")
        work = Path(work_ctx.name)
    try:
        for size in sorted(sizes):
            results[size] = measure(size, commands, max(1, args.repeat), work, env0)
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    ordered = sorted(results)
    if len(ordered) > 1:
        print("\ngrowth of the median wall time (linear = the ratio of the sizes)")
        for small, big in itertools.pairwise(ordered):
            parts = [f"{c} {results[big][c].median / results[small][c].median:.1f}x"
                     for c in COMMANDS if c in results[big] and c in results[small]]
            print(f"{small:,} -> {big:,} ({big / small:.0f}x the subscriptions): {', '.join(parts)}")


if __name__ == "__main__":
    main()
