"""Fan-out of a plan edit to 500 subscriptions on one server (issue 3, Done-when).

Brings up its own embedded server ``bench-1`` (127.0.45.1, region ``bench``), applies
500 subscriptions of one plan, then edits the plan's memory_limit and measures the
time until all 500 sites show the new value over HTTP; the same change made by a plain
Ansible loop (``ansible.builtin.template`` per pool file, then one validated reload)
for 50 subscriptions, extrapolated to 500; then a no-op resync of the 500, counting
processes spawned. Tears the server down at the end (``--keep`` leaves it up).

    .venv/bin/python bench/fanout.py [--n 500] [--ansible-n 50] [--state DIR] [--keep]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from controller import model
from controller.drivers import base, context, embedded, naming, transport
from controller.drivers.hosting import PhpDriver, WebDriver
from controller.reconcile import engine
from controller.state import store as state_store

IP = "127.0.45.1"
INDEX = b"<?php echo ini_get('memory_limit');\n"


def desired(tmp: Path, n: int, memory: str) -> model.DesiredState:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "tenantctl.io/v1", "kind": "Region", "metadata": {"name": "bench"}, "spec": {"timezone": "UTC"}},
        {"apiVersion": "tenantctl.io/v1", "kind": "Server", "metadata": {"name": "bench-1"},
         "spec": {"region": "bench", "provider": "docker", "address": IP, "ips": [{"address": IP, "type": "shared"}],
                  "roles": ["web"], "capacity": {"sites": n + 10, "diskMB": 10_000_000},
                  "offers": {"php": {"versions": ["8.2"], "handlers": ["fpm"]}}}},
        {"apiVersion": "tenantctl.io/v1", "kind": "ServicePlan", "metadata": {"name": "bench"},
         "spec": {"resources": {"diskMB": 100, "databases": 0},
                  "hosting": {"enabled": True, "php": {"handler": "fpm", "version": "8.2",
                                                        "settings": {"memory_limit": memory}}},
                  "performance": {"maxConnections": 50, "bandwidthKBps": "unlimited"}}},
        {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "metadata": {"name": "bench"},
         "spec": {"email": "bench@example.org", "state": "active"}},
    ]
    docs += [{"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": f"s{i:04d}.bench.test"},
              "spec": {"customer": "bench", "plan": "bench", "region": "bench"}} for i in range(n)]
    path = tmp / "desired.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return model.load_desired([path])


def fetch(name: str) -> str:
    conn = http.client.HTTPConnection(IP, 80, timeout=10)
    try:
        conn.request("GET", "/index.php", headers={"Host": name})
        resp = conn.getresponse()
        return resp.read().decode().strip() if resp.status == 200 else f"HTTP {resp.status}"
    except OSError as exc:
        return f"error {exc}"
    finally:
        conn.close()


@dataclasses.dataclass
class Visible:
    """How long until every site showed a value over HTTP, and how it got there."""

    seconds: float
    #: requests made in all, and sites that needed more than one
    requests: int
    retried: int
    #: seconds from the start until each site first showed the value, sorted
    per_site: list[float]

    def describe(self) -> str:
        p = self.per_site
        return (f"{self.seconds:.2f}s ({self.requests} requests, {self.retried} sites polled again; "
                f"visible p50 {p[len(p) // 2]:.2f}s p90 {p[len(p) * 9 // 10]:.2f}s max {p[-1]:.2f}s)")


def wait_all(names: list[str], want: str, timeout: float = 120.0, concurrency: int = 32) -> Visible:
    """Until every site answers ``want``: ``concurrency`` threads with http.client (no
    process per request), each site polled every 50 ms until it does."""
    started = time.perf_counter()
    lock = threading.Lock()
    counts = {"requests": 0, "retried": 0}

    def one(name: str) -> float:
        deadline = started + timeout
        tries = 0
        while True:
            tries += 1
            if fetch(name) == want:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{name} never showed {want}")
            time.sleep(0.05)
        with lock:
            counts["requests"] += tries
            counts["retried"] += tries > 1
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        per_site = sorted(pool.map(one, names))
    return Visible(time.perf_counter() - started, counts["requests"], counts["retried"], per_site)


def phases(timings: dict[str, float]) -> str:
    """``render 0.05 tar 0.01 ...`` in the drivers' order, agent phases indented."""
    own = [k for k in ("render", "tar", "ssh", "agent") if k in timings]
    agent = sorted(k for k in timings if k.startswith("agent."))
    text = " ".join(f"{k} {timings[k]:.3f}" for k in own)
    if "ssh" in timings and "agent" in timings:
        text += f" (ssh minus agent {timings['ssh'] - timings['agent']:.3f})"
    if "tar_bytes" in timings:
        text += f", tar {timings['tar_bytes'] / 1e6:.2f} MB"
    if agent:
        text += "\n      agent: " + " ".join(
            f"{k.removeprefix('agent.')} {timings[k]:.0f}" if k == "agent.validations"
            else f"{k.removeprefix('agent.')} {timings[k]:.3f}" for k in agent)
    return text


class Timed:
    """Wall time of a driver's ``apply`` calls (the engine sees the driver itself)."""

    def __init__(self, driver: WebDriver | PhpDriver) -> None:
        self.driver = driver
        self.seconds = 0.0
        self._apply = driver.apply

        def apply(server: str | None, changes: Any) -> list[base.Result]:
            t0 = time.perf_counter()
            try:
                return self._apply(server, changes)
            finally:
                self.seconds += time.perf_counter() - t0
        driver.apply = apply  # type: ignore[method-assign]


ANSIBLE_TEMPLATE = """; {{ ansible_managed }}
[{{ item.pool }}]
user = {{ item.user }}
group = {{ item.user }}
listen = {{ item.socket }}
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = ondemand
pm.max_children = 5
php_admin_value[open_basedir] = {{ item.home }}/
php_value[memory_limit] = {{ memory }}
"""

ANSIBLE_PLAYBOOK = """
- hosts: bench
  gather_facts: false
  tasks:
    - name: Pool files, one template task per subscription
      ansible.builtin.template:
        src: pool.j2
        dest: "/etc/php/8.2/fpm/tenantctl/{{ item.pool }}.conf"
        owner: root
        group: root
        mode: "0644"
      loop: "{{ subs }}"
      notify: Reload PHP-FPM
    - name: Validate
      ansible.builtin.command: php-fpm8.2 -t
      changed_when: false
  handlers:
    - name: Reload PHP-FPM
      ansible.builtin.service:
        name: php8.2-fpm
        state: reloaded
"""


def ansible_loop(state_dir: Path, names: list[str], memory: str) -> float:
    work = Path(tempfile.mkdtemp(prefix="fanout-ansible-"))
    try:
        (work / "pool.j2").write_text(ANSIBLE_TEMPLATE)
        (work / "play.yml").write_text(ANSIBLE_PLAYBOOK)
        subs = [{"pool": naming.fpm_pool(n), "user": naming.system_user(n), "socket": naming.fpm_socket(n),
                 "home": naming.home(n)} for n in names]
        (work / "vars.yml").write_text(yaml.safe_dump({"subs": subs, "memory": memory}))
        key = context.Context(state_dir).ssh_key()
        (work / "hosts").write_text(f"[bench]\nbench-1 ansible_host={IP} ansible_user=root "
                                    f"ansible_ssh_private_key_file={key} ansible_python_interpreter=/usr/bin/python3\n")
        env = {**os.environ, "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
               "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False"}
        exe = Path(sys.executable).with_name("ansible-playbook")
        started = time.perf_counter()
        subprocess.run([str(exe), "-i", str(work / "hosts"), "-e", f"@{work / 'vars.yml'}", str(work / "play.yml")],
                       cwd=work, env=env, check=True, capture_output=True)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SpawnCounter:
    """Counts every process this interpreter starts while active."""

    def __init__(self) -> None:
        self.count = 0
        self._orig = subprocess.Popen.__init__

    def __enter__(self) -> SpawnCounter:
        orig, counter = self._orig, self

        def counting(self_: subprocess.Popen[Any], *a: Any, **kw: Any) -> None:
            counter.count += 1
            orig(self_, *a, **kw)
        subprocess.Popen.__init__ = counting  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.Popen.__init__ = self._orig  # type: ignore[method-assign]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--ansible-n", type=int, default=50)
    ap.add_argument("--state", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--http", type=int, default=32, help="concurrent HTTP requests while waiting (default 32)")
    args = ap.parse_args()
    prefix = str(Path(tempfile.gettempdir()) / "fanout-state-")
    state_dir = args.state or Path(tempfile.mkdtemp(prefix=Path(prefix).name))
    tmp = Path(tempfile.mkdtemp(prefix="fanout-"))
    ds = desired(tmp, args.n, "128M")
    specs = [embedded.ServerSpec.from_dict({"name": n, **s.model_dump(mode="json")}) for n, s in ds.servers.items()]
    with embedded.hold(state_dir):
        if args.state is None:  # what a killed run of this bench left on its address (never other environments)
            embedded.remove_abandoned(specs, prefix=prefix)
        return measure(args, ds, specs, state_dir, tmp)


def measure(args: argparse.Namespace, ds: model.DesiredState, specs: list[embedded.ServerSpec], state_dir: Path,
        tmp: Path) -> int:
    t0 = time.perf_counter()
    embedded.env_up(specs, state_dir)
    print(f"server bench-1 up and bootstrapped in {time.perf_counter() - t0:.1f}s")
    ctx = context.Context.of(ds, state_dir)
    web, php = WebDriver(ctx), PhpDriver(ctx)
    drivers: dict[str, base.Driver] = engine.default_drivers()
    drivers["web"], drivers["php"] = web, php
    names = sorted(ds.subscriptions)
    try:
        with state_store.Store(tmp / "state.db") as store:
            eng = engine.Engine(store, drivers, clock=lambda: dt.datetime.now(dt.UTC))
            t0 = time.perf_counter()
            report = eng.reconcile(ds)
            print(f"initial apply of {args.n} subscriptions: {time.perf_counter() - t0:.2f}s, "
                  f"failed={len(report.failed)}")
            if report.failed:
                print(next(iter(report.failed.items())))
                return 1
            print(f"    web: {phases(web.last_timings.get('bench-1', {}))}\n"
                  f"    php: {phases(php.last_timings.get('bench-1', {}))}")
            # every site gets the customer's index.php (one remote command)
            script = 'for d in "$@"; do printf "%s" "$INDEX" > "$d/httpdocs/index.php"; done'
            web.remote("bench-1").check(
                ["env", f"INDEX={INDEX.decode()}", "sh", "-c", script, "put", *(naming.home(n) for n in names)])
            print(f"all sites at 128M after {wait_all(names, '128M', concurrency=args.http).describe()} of polling "
                  f"(one php-fpm worker started per pool)")

            ds2 = desired(tmp, args.n, "256M")
            t_web, t_php = Timed(web), Timed(php)
            t_plan = time.perf_counter()
            eng.plan(ds2)  # what reconcile's own planning costs (pure: changes nothing)
            t_plan = time.perf_counter() - t_plan
            t0 = time.perf_counter()
            report = eng.reconcile(ds2)
            applied = time.perf_counter() - t0
            if report.failed:
                print(next(iter(report.failed.items())))
                return 1
            seen = wait_all(names, "256M", concurrency=args.http)
            total = time.perf_counter() - t0
            print(f"plan edit memory_limit 128M -> 256M: all {args.n} showing 256M over HTTP after {total:.2f}s "
                  f"(target <= 10 s)\n"
                  f"  reconcile {applied:.2f}s = planning ~{t_plan:.2f}s (measured separately) + web driver "
                  f"{t_web.seconds:.2f}s + php driver {t_php.seconds:.2f}s + engine bookkeeping "
                  f"{applied - t_plan - t_web.seconds - t_php.seconds:.2f}s\n"
                  f"    php: {phases(php.last_timings.get('bench-1', {}))}\n"
                  f"  then HTTP until all visible ({args.http} threads, http.client): {seen.describe()}")

            k = min(args.ansible_n, args.n)
            if k > 0:
                ans = ansible_loop(state_dir, names[:k], "256M")
                extrapolated = ans / k * args.n
                print(f"plain Ansible loop (template per pool file + validate + reload) for {k}: {ans:.1f}s "
                      f"-> {extrapolated:.0f}s extrapolated to {args.n}; ratio {extrapolated / total:.0f}x "
                      f"(targets: <= 10 s and >= 30x)")
            # restore what Ansible wrote: drift repair finds and marks it, the next pass repairs it
            eng.resync(ds2)
            eng.reconcile(ds2)

            before = transport.spawned
            with SpawnCounter() as spawns:
                t0 = time.perf_counter()
                found = eng.resync(ds2)
                noop = time.perf_counter() - t0
            print(f"no-op resync of {args.n}: {noop:.2f}s, drift={len(found)}, processes spawned={spawns.count} "
                  f"(ssh {transport.spawned - before}; one per server and concern), "
                  f"agent web {web.last_agent_seconds.get('bench-1', 0):.2f}s php "
                  f"{php.last_agent_seconds.get('bench-1', 0):.2f}s (target <= 1 s, no process per subscription)")
            t0 = time.perf_counter()
            eng.plan(ds2)
            print(f"  of which planning {args.n} subscriptions: {time.perf_counter() - t0:.2f}s")
    finally:
        web.close()
        php.close()
        if not args.keep:  # this bench's own environment only, never the other ones on this engine
            embedded.env_down(state_dir, only=specs, destroy_data=args.state is None)
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
