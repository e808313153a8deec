#!/usr/bin/env python3
"""The commands users run, measured as processes, at 1,000 and 10,000 subscriptions
(and 50,000 with ``--big``: about two more minutes, most of it the first apply): issue 15,
point 5.

For each size it writes bench/effective.py's documents (50 plans, 20 add-ons, 1,000
customers, 16 servers) into a temporary directory, then runs ``tenantctl`` as a
separate process, as a user would, with ``TENANTCTL_DRIVERS=none`` and its own
temporary ``TENANTCTL_STATE_DIR``:

- ``validate -f DIR`` with a cold parse cache, ``--repeat`` times (``validate, cold``:
  each run with its own empty state directory);
- ``validate -f DIR``, ``--repeat`` times (the first with an empty state directory: a
  cold parse cache);
- ``apply -f DIR`` once (drivers off: fills the state store), then again ``--repeat``
  times (``apply no-op``: nothing to do);
- ``plan -f DIR -o json`` (a no-op) ``--repeat`` times;
- ``plan (after edit)``: ``--repeat`` times, each the first ``plan -o json`` after
  editing plan-0 (its memory_limit), which 1 in 5 subscriptions use;
- ``status`` (the table) ``--repeat`` times.

Each line gives the first run and the median of the others (of all runs for ``apply
no-op`` and ``plan (after edit)``, each of which is a first), with the peak RSS of each
process (its own ``ru_maxrss`` from ``wait4``; for the median, the highest), the median
CPU time of the process (user + system, from ``wait4``: what the command costs whatever
else the machine runs), and the median divided by a raw ``yaml.load_all(..., Loader=yaml.CSafeLoader)`` of the same
files measured in the same run (in this process, and as a ``python -c`` process). The
load average is printed before and after each size; at the end, the targets of issue 15
("Done when", 10,000 subscriptions) each with PASS or MISS, and the growth between
sizes (wall and CPU): it must be linear.

    .venv/bin/python bench/cli_scale.py [--big] [--repeat 3] [--sizes 1000,10000]
        [--commands cold,validate,apply,noop,plan,edit,status] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
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
COMMANDS = ("cold", "validate", "apply", "noop", "plan", "edit", "status")
LABELS = {"cold": "validate, cold cache", "validate": "validate", "apply": "apply, first", "noop": "apply no-op",
          "plan": "plan no-op", "edit": "plan after an edit", "status": "status"}
#: issue 15, "Done when", at 10,000 subscriptions: command -> (seconds, MB or None)
TARGETS = {"plan": (1.0, 250.0), "edit": (2.0, None), "status": (1.0, None), "noop": (1.5, None)}
RSS_CAP_MB = 300.0
VALIDATE_X_PARSE = 1.5
GROWTH_50K = 5.5


@dataclass(frozen=True)
class Run:
    wall: float
    rss_mb: float
    #: user + system CPU seconds of the process
    cpu: float
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
    return Run(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, p.returncode, text)


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
    #: the highest peak RSS of the runs the median is taken over
    rss_mb: float
    #: the highest peak RSS of every run
    peak_mb: float
    #: median CPU seconds of the runs the median is taken over
    cpu: float


@dataclass(frozen=True)
class Size:
    figures: dict[str, Figure]
    raw: float
    raw_proc: float
    #: median CPU seconds of the raw parse process
    raw_cpu: float


class PlanEdit:
    """plan-0's memory_limit, set to a new value at each call (plan-0 is the plan of
    1 subscription in 5: 2,000 of 10,000)."""

    def __init__(self, infra: Path) -> None:
        self.infra = infra
        self.original = infra.read_text()
        self.value = "memory_limit: 64M"  # plan-0's (64 + 0)M, no other plan's
        assert self.original.count(self.value) == 1, "bench/effective.py's plan-0 changed"
        self.n = 0

    def __call__(self) -> None:
        self.n += 1
        new = f"memory_limit: {300 + self.n}M"
        self.infra.write_text(self.infra.read_text().replace(self.value, new, 1))
        self.value = new

    def restore(self) -> None:
        self.infra.write_text(self.original)


def code_digest() -> str:
    """The sources whose change makes every subscription be recomputed (the planner's
    ``CODE``, and the drivers' ids): another edit of them during a run turns a no-op
    plan into a full one, so the run says so."""
    h = hashlib.blake2b(digest_size=8)
    for pkg in ("model", "effective", "placement"):
        for f in sorted((ROOT / "controller" / pkg).glob("*.py")):
            h.update(f.read_bytes())
    h.update((ROOT / "controller" / "drivers" / "base.py").read_bytes())  # TENANTCTL_DRIVERS=none's driver
    return h.hexdigest()


def measure(size: int, commands: Sequence[str], repeat: int, work: Path, env0: dict[str, str]) -> Size:
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
    raw_cpu = statistics.median(r.cpu for r in raw_procs)
    print(f"\n== {size:,} subscriptions ({mb:.1f} MB of YAML)   load average before {load1:.2f} {load5:.2f}")
    print(f"raw C-loader parse: {raw:.2f} s in process, {raw_proc:.2f} s as a process "
          f"({max(r.rss_mb for r in raw_procs):.0f} MB, {raw_cpu:.2f} s CPU)")
    print(f"{'command':<28} {'first':>7} {'RSS':>7} {'median':>8} {'RSS':>7} {'CPU':>7} {'x parse':>8} "
          f"{'x parse-proc':>13}")
    env = {**env0, "TENANTCTL_STATE_DIR": str(work / f"state-{size}"), "TENANTCTL_DRIVERS": "none"}
    argvs = {
        "cold": ["validate", "-f", str(d)],
        "validate": ["validate", "-f", str(d)],
        "apply": ["apply", "-f", str(d)],
        "noop": ["apply", "-f", str(d)],
        "plan": ["plan", "-f", str(d), "-o", "json"],
        "edit": ["plan", "-f", str(d), "-o", "json"],
        "status": ["status"],
    }
    edit = PlanEdit(d / "infra.yaml")
    out: dict[str, Figure] = {}
    try:
        for cmd in COMMANDS:
            if cmd not in commands:
                continue
            runs: list[Run] = []
            code = code_digest()
            for _ in range(1 if cmd == "apply" else repeat):
                if cmd == "edit":
                    edit()
                cold = {"TENANTCTL_STATE_DIR": str(work / f"state-{size}-cold-{len(runs)}")} if cmd == "cold" else {}
                runs.append(run_process([tenantctl(), *argvs[cmd]], {**env, **cold}))
            if code_digest() != code:
                print(f"WARNING: the planner's sources changed while {LABELS[cmd]} ran: a run after the change "
                      "recomputed every subscription (its figures are not those of a no-op)")
            if cmd == "edit":
                edit.restore()
            rest = runs if cmd in ("cold", "noop", "edit") else (runs[1:] or runs)
            fig = Figure(cmd, runs[0], statistics.median(r.wall for r in rest), max(r.rss_mb for r in rest),
                         max(r.rss_mb for r in runs), statistics.median(r.cpu for r in rest))
            out[cmd] = fig
            runs_text = "once" if cmd == "apply" else f"{len(runs)} runs"
            label = f"{LABELS[cmd]} ({runs_text})"
            codes = sorted({r.code for r in runs})
            last = (runs[-1].stderr.strip().splitlines() or [""])[-1][:200]
            note = "" if codes == [0] else f"   exit {','.join(map(str, codes))}: {last}"
            print(f"{label:<28} {fig.first.wall:6.2f}s {fig.first.rss_mb:4.0f} MB {fig.median:7.2f}s "
                  f"{fig.rss_mb:4.0f} MB {fig.cpu:6.2f}s {fig.median / raw:7.1f}x {fig.median / raw_proc:12.1f}x{note}", flush=True)
    finally:
        edit.restore()
    load1, load5, _ = os.getloadavg()
    print(f"load average after {load1:.2f} {load5:.2f}")
    return Size(out, raw, raw_proc, raw_cpu)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(results: dict[int, Size]) -> None:
    """Issue 15's "Done when" figures, at 10,000 subscriptions (and 50,000 if measured)."""
    ten = results.get(10_000)
    if ten is None:
        print("\ntargets: not checked (10,000 subscriptions not measured)")
        return
    print("\ntargets of issue 15 at 10,000 subscriptions (median wall, highest peak RSS)")
    f = ten.figures
    for cmd, (secs, mb) in TARGETS.items():
        if cmd not in f:
            continue
        ok = f[cmd].median <= secs and (mb is None or f[cmd].peak_mb <= mb)
        want = f"<= {secs:g} s" + (f" and <= {mb:.0f} MB" if mb is not None else "")
        print(f"  {LABELS[cmd]:<24} {f[cmd].median:6.2f} s {f[cmd].peak_mb:5.0f} MB   {want:<22} {verdict(ok)}")
    if "validate" in f:
        x = f["validate"].median / ten.raw_proc
        print(f"  {'validate':<24} {x:6.2f} x the C-loader parse process   <= {VALIDATE_X_PARSE}x"
              f"{'':<12}{verdict(x <= VALIDATE_X_PARSE)}")
    if "cold" in f or "validate" in f:  # the median of cold runs, else the one first run
        cold = f["cold"].median if "cold" in f else f["validate"].first.wall
        x = cold / ten.raw_proc
        print(f"  {'validate, cold cache':<24} {x:6.2f} x the C-loader parse process   <= {VALIDATE_X_PARSE}x"
              f"{'':<12}{verdict(x <= VALIDATE_X_PARSE)}")
        if "cold" in f:
            x = f["cold"].cpu / ten.raw_cpu
            print(f"  {'  (CPU time)':<24} {x:6.2f} x the C-loader parse process's CPU")
    worst = max(f.values(), key=lambda fig: fig.peak_mb)
    print(f"  {'every command RSS':<24} {worst.peak_mb:6.0f} MB ({LABELS[worst.command]})   <= {RSS_CAP_MB:.0f} MB"
          f"{'':<14}{verdict(worst.peak_mb <= RSS_CAP_MB)}")
    big = results.get(50_000)
    if big is None:
        print(f"  {'50,000 / 10,000':<24} not measured (--big)")
        return
    for cmd, fig in big.figures.items():
        if cmd in f:
            x = fig.median / f[cmd].median
            cpu = fig.cpu / f[cmd].cpu
            print(f"  {'50,000 / 10,000 ' + LABELS[cmd]:<40} {x:5.1f}x   <= {GROWTH_50K}x   {verdict(x <= GROWTH_50K)}"
                  f"   (CPU time {cpu:.1f}x)")


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
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    env0 = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    results: dict[int, Size] = {}
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
    targets(results)
    ordered = sorted(results)
    if len(ordered) > 1:
        print("\ngrowth of the median wall time, and of the CPU time (linear = the ratio of the sizes)")
        for small, big in itertools.pairwise(ordered):
            parts = [f"{LABELS[c]} {results[big].figures[c].median / results[small].figures[c].median:.1f}x "
                     f"(CPU {results[big].figures[c].cpu / results[small].figures[c].cpu:.1f}x)"
                     for c in COMMANDS if c in results[big].figures and c in results[small].figures]
            print(f"{small:,} -> {big:,} ({big / small:.0f}x the subscriptions): {', '.join(parts)}")


if __name__ == "__main__":
    main()
