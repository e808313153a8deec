"""Web and PHP provisioning against the embedded servers, through real clients
(curl, ssh): issue 3 points 3, 5 and 6 for the web and php concerns.

Each test writes a small desired state (the cluster's servers + a plan + its own
subscriptions, named after the test) and reconciles it with the real drivers; it
deletes its subscriptions at the end so nothing leaks into the shared environment.
"""

from __future__ import annotations

import datetime as dt
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import model
from controller.drivers import base, naming, transport
from controller.drivers.hosting import PhpDriver, WebDriver, render
from controller.reconcile import engine
from controller.state import events
from controller.state import store as state_store

from .conftest import Cluster

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[2]
INDEX = b"<?php echo ini_get('memory_limit'), ' ', posix_geteuid(), ' ', $_SERVER['SERVER_NAME'], \"\\n\";\n"


def plan_doc(memory: str = "128M") -> dict[str, Any]:
    return {
        "apiVersion": "tenantctl.io/v1", "kind": "ServicePlan", "metadata": {"name": "hp"},
        "spec": {
            "resources": {"diskMB": 1024, "domains": 1, "subdomains": 5, "domainAliases": 5, "databases": 0},
            "permissions": {"manageHosting": False},
            "hosting": {"enabled": True, "errorDocuments": True,
                        "php": {"handler": "fpm", "version": "8.2",
                                "settings": {"memory_limit": memory, "max_execution_time": 30}}},
            "performance": {"maxConnections": 20, "bandwidthKBps": "unlimited"},
        },
    }


def sub_doc(name: str, **spec: Any) -> dict[str, Any]:
    body = {"customer": "hosting-tests", "plan": "hp", "region": "eu-west", "server": "drv-a", **spec}
    return {"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": name}, "spec": body}


class Env:
    """One test's desired state, engine and helpers."""

    def __init__(self, cluster: Cluster, tmp: Path, hook: render_hook_t | None = None) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.store = state_store.Store(tmp / "state.db")
        self.web = WebDriver(cluster.ctx, hook=hook)
        self.php = PhpDriver(cluster.ctx, hook=hook)
        drivers: dict[str, base.Driver] = engine.default_drivers()
        drivers["web"], drivers["php"] = self.web, self.php
        self.engine = engine.Engine(self.store, drivers, clock=lambda: dt.datetime.now(dt.UTC))
        self.subs: list[dict[str, Any]] = []
        self.memory = "128M"

    def desired(self) -> model.DesiredState:
        docs = [plan_doc(self.memory),
                {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "metadata": {"name": "hosting-tests"},
                 "spec": {"email": "t@example.org", "state": "active"}}, *self.subs]
        path = self.tmp / "desired.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return model.load_desired([self.cluster.servers_file, path])

    def reconcile(self) -> engine.Report:
        return self.engine.reconcile(self.desired())

    def ssh(self, server: str, *argv: str) -> transport.Completed:
        return self.web.remote(server).run(list(argv))

    def put_index(self, server: str, sub: str, site: str | None = None, body: bytes = INDEX) -> None:
        path = f"{naming.docroot(sub, site)}/index.php"
        user = naming.system_user(sub)
        done = self.web.remote(server).run(
            ["sh", "-c", 'cat > "$1" && chown "$2:$2" "$1" && chmod 0644 "$1"', "put", path, user], stdin=body)
        assert done.returncode == 0, done.error

    def close(self) -> None:
        self.subs = []
        self.reconcile()  # deletes what the test created
        self.web.close()
        self.php.close()
        self.store.close()


render_hook_t = Callable[[str, str, str], str]


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path) -> Iterator[Env]:
    e = Env(cluster, tmp_path)
    try:
        yield e
    finally:
        e.close()


def curl(name: str, ip: str, path: str = "/") -> tuple[int, str]:
    out = subprocess.run(["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "--resolve", f"{name}:80:{ip}",
                          f"http://{name}{path}"], capture_output=True, text=True, check=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code), body


def until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def uid(env: Env, server: str, sub: str) -> str:
    return env.ssh(server, "id", "-u", naming.system_user(sub)).text.strip()


def test_sites_serve_their_own_php_with_effective_settings_and_plan_edits_reach_synced_only(env: Env) -> None:
    a, b, locked = "a-serve.hosting.test", "b-serve.hosting.test", "locked-serve.hosting.test"
    env.subs = [
        sub_doc(a, sites=[{"name": "blog", "php": {"settings": {"memory_limit": "64M"}}},
                          {"name": "a-alias.hosting.test", "type": "alias"}]),
        sub_doc(b, server="drv-b"),
        sub_doc(locked, customizations={"resources": {"diskMB": 2048}}),
    ]
    report = env.reconcile()
    assert report.ok, report.failed
    for sub, server, ip in ((a, "drv-a", "127.0.40.1"), (b, "drv-b", "127.0.41.1"), (locked, "drv-a", "127.0.40.1")):
        env.put_index(server, sub)
        code, body = curl(sub, ip, "/index.php")
        assert code == 200, body
        assert body.split() == ["128M", uid(env, server, sub), sub]
        # the web space came from the vhost template (LIFE-7)
        ls = env.ssh(server, "ls", naming.home(sub)).text.split()
        assert {"httpdocs", "cgi-bin", "error_docs", "anon_ftp"} <= set(ls)
        code, body = curl(f"www.{sub}", ip, "/index.html")
        assert code == 200 and "This site is ready" in body
        code, body = curl(sub, ip, "/nothing-here")
        assert code == 404 and "404 Not found" in body  # error_docs
    # PHP-2: the subdomain has its own pool with its own memory_limit; the alias shares
    env.put_index("drv-a", a, f"blog.{a}")
    env.put_index("drv-a", a, "a-alias.hosting.test")
    assert curl(f"blog.{a}", "127.0.40.1", "/index.php")[1].split()[:2] == ["64M", uid(env, "drv-a", a)]
    assert curl("www.a-alias.hosting.test", "127.0.40.1", "/index.php")[1].split()[0] == "128M"

    env.memory = "256M"
    report = env.reconcile()
    assert report.ok, report.failed
    assert curl(a, "127.0.40.1", "/index.php")[1].split()[0] == "256M"
    assert curl(b, "127.0.41.1", "/index.php")[1].split()[0] == "256M"
    assert curl(locked, "127.0.40.1", "/index.php")[1].split()[0] == "128M"  # SYNC-2


def test_a_tenant_cannot_read_another_tenants_files(env: Env) -> None:
    a, b = "a-iso.hosting.test", "b-iso.hosting.test"
    env.subs = [sub_doc(a), sub_doc(b)]
    assert env.reconcile().ok
    secret = f"{naming.docroot(b)}/secret.php"
    env.put_index("drv-a", b, body=b"<?php // db password: hunter2\n")
    env.ssh("drv-a", "mv", f"{naming.docroot(b)}/index.php", secret)
    probe = (
        "<?php\n"
        f"$p = '{secret}';\n"
        "echo 'fgc=', var_export(@file_get_contents($p), true), \"\\n\";\n"
        "echo 'open_basedir=', ini_get('open_basedir'), \"\\n\";\n"
        "echo 'shell=', var_export(function_exists('shell_exec') ? shell_exec('cat ' . escapeshellarg($p) . ' 2>&1') : 'disabled', true), \"\\n\";\n"
        "echo 'ls=', var_export(function_exists('shell_exec') ? shell_exec('ls ' . escapeshellarg(dirname($p, 2)) . ' 2>&1') : 'disabled', true), \"\\n\";\n"
    ).encode()
    env.put_index("drv-a", a, body=probe)
    code, body = curl(a, "127.0.40.1", "/index.php")
    assert code == 200, body
    assert "fgc=false" in body
    assert f"open_basedir={naming.home(a)}/" in body
    assert "hunter2" not in body
    # exec is enabled: file permissions alone keep B's files away from A's user
    assert "Permission denied" in body and "shell=" in body
    # and nginx does not follow A's symlink into B's web space (disable_symlinks)
    env.ssh("drv-a", "runuser", "-u", naming.system_user(a), "--", "ln", "-s", secret, f"{naming.docroot(a)}/leak.txt")
    code, body = curl(a, "127.0.40.1", "/leak.txt")
    assert code in (403, 404) and "hunter2" not in body


def test_suspend_answers_503_and_activate_restores(env: Env) -> None:
    s = "susp.hosting.test"
    env.subs = [sub_doc(s)]
    assert env.reconcile().ok
    env.put_index("drv-a", s)
    assert curl(s, "127.0.40.1", "/index.php")[0] == 200
    env.subs = [sub_doc(s, state="suspended", stateReason="manual")]
    assert env.reconcile().ok
    code, body = curl(s, "127.0.40.1", "/index.php")
    assert code == 503 and "This site is suspended" in body
    assert curl(f"www.{s}", "127.0.40.1", "/")[0] == 503, curl(f"www.{s}", "127.0.40.1", "/")
    pools = env.ssh("drv-a", "ls", render.fpm_dir("8.2")).text.split()
    assert f"{naming.fpm_pool(s)}.conf" not in pools  # LIFE-2: the pool is stopped
    assert env.ssh("drv-a", "test", "-f", f"{naming.docroot(s)}/index.php").returncode == 0  # data kept
    env.subs = [sub_doc(s)]
    assert env.reconcile().ok
    code, body = curl(s, "127.0.40.1", "/index.php")
    assert code == 200 and body.split()[0] == "128M"


def test_delete_archives_then_removes_everything(env: Env) -> None:
    s = "gone.hosting.test"
    env.subs = [sub_doc(s)]
    assert env.reconcile().ok
    env.put_index("drv-a", s)
    env.subs = []
    report = env.reconcile()
    assert report.ok, report.failed
    user, home = naming.system_user(s), naming.home(s)
    script = (f"id {user} >/dev/null 2>&1 && echo user; test -e {home} && echo home; "
              f"test -e {render.vhost_path(s)} && echo vhost; test -e {render.pool_path(s, '8.2')} && echo pool; "
              f"test -e {naming.fpm_socket(s)} && echo socket; true")
    assert env.ssh("drv-a", "sh", "-c", script).text.split() == []
    archives = list((env.cluster.state_dir / "retained" / s).glob("*-web.tar.gz"))
    assert archives, "no archive under retained/"
    listing = subprocess.run(["tar", "-tzf", str(archives[-1])], capture_output=True, text=True, check=True).stdout
    assert f"{s}/httpdocs/index.php" in listing
    assert curl(s, "127.0.40.1", "/")[0] != 200 or "This site is ready" not in curl(s, "127.0.40.1", "/")[1]


def test_a_file_failing_nginx_validation_fails_only_its_subscription(cluster: Cluster, tmp_path: Path) -> None:
    bad, good = "bad-nginx.hosting.test", "good-nginx.hosting.test"
    poison = {"on": False}

    def hook(sub: str, path: str, text: str) -> str:
        if poison["on"] and sub == bad and path.endswith(".conf") and "/nginx/" in path:
            return text.replace("index index.php index.html;", "index index.php index.html;\n    no_such_directive on;")
        return text

    env = Env(cluster, tmp_path, hook=hook)
    try:
        env.subs = [sub_doc(bad), sub_doc(good)]
        assert env.reconcile().ok
        env.memory = "192M"
        env.subs = [sub_doc(bad, sites=[{"name": "x"}]), sub_doc(good, sites=[{"name": "y"}]),
                    sub_doc("new-nginx.hosting.test")]
        poison["on"] = True
        report = env.reconcile()
        assert set(report.failed) == {bad}, report.failed
        assert "no_such_directive" in report.failed[bad][0] and render.vhost_path(bad) in report.failed[bad][0]
        # the others converged, the bad one kept its previous (valid) vhost and serves
        assert curl(f"y.{good}", "127.0.40.1", "/")[0] == 200
        assert curl("new-nginx.hosting.test", "127.0.40.1", "/")[0] == 200
        assert curl(bad, "127.0.40.1", "/")[0] == 200
        assert "This site is ready" not in curl(f"x.{bad}", "127.0.40.1", "/index.html")[1]
        status = {d["name"]: d for d in env.store.get_status()}
        assert status[bad]["concerns"]["web"] == "failed"
        assert status[good]["concerns"]["web"] == "provisioned"
        poison["on"] = False
    finally:
        poison["on"] = False
        env.close()


def test_drift_is_repaired_and_a_second_apply_changes_nothing(env: Env) -> None:
    s = "drift.hosting.test"
    env.subs = [sub_doc(s)]
    assert env.reconcile().ok
    vhost, pool = render.vhost_path(s), render.pool_path(s, "8.2")
    stat = ["stat", "-c", "%n %Y %Z", vhost, pool, naming.home(s)]
    before = env.ssh("drv-a", *stat).text
    pid = env.ssh("drv-a", "cat", "/run/nginx.pid").text
    # a second pass with nothing changed does not touch the drivers at all...
    report = env.reconcile()
    assert report.outcomes == {}
    # ...and re-applying the same slices changes nothing on the server (no write, no reload)
    ds = env.desired()
    planned = env.engine.plan(ds)
    item = planned.subscriptions[s].typed
    results = env.web.apply("drv-a", [base.Change(s, "ensure", env.web.slice(item))])
    results += env.php.apply("drv-a", [base.Change(s, "ensure", env.php.slice(item))])
    assert all(r.outcome == "provisioned" for r in results), results
    workers = env.ssh("drv-a", "sh", "-c", f"pgrep -P {shlex.quote(pid.strip())} | sort").text
    time.sleep(1.1)
    assert env.ssh("drv-a", *stat).text == before
    # no reload: no new generation of nginx workers (the agent does not wait for the old
    # generation of the reload just before to finish its requests: it may still be exiting)
    after = env.ssh("drv-a", "sh", "-c", f"pgrep -P {shlex.quote(pid.strip())} | sort").text
    assert after and set(after.split()) <= set(workers.split()), (workers, after)
    assert env.engine.resync(ds) == {}
    # drift: the vhost file disappears on the server
    env.ssh("drv-a", "rm", "-f", vhost)
    env.ssh("drv-a", "nginx", "-s", "reload")
    found = env.engine.resync(ds)
    assert "missing" in found[s]["web"]
    env.reconcile()  # drift is repaired by the next pass, like any change
    assert env.ssh("drv-a", "test", "-f", vhost).returncode == 0
    assert any(e.action == "drift" and e.subject == s for e in events.list_events(env.store))
    assert env.engine.resync(ds) == {}


KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import yaml
    from controller import model
    from controller.drivers import base, transport
    from controller.drivers.hosting import PhpDriver, WebDriver
    from controller.reconcile import engine
    from controller.state import store as state_store
    import datetime as dt

    state, servers, desired, db, concern = sys.argv[1:6]
    # on the server: the agent of `concern`'s batch dies by SIGKILL after it replaced the
    # files and validated them, before it reloads ...
    PRELUDE = (
        "import os, signal; from controller.agent import services; _reload = services.reload; "
        "services.reload = lambda sv, so: os.kill(os.getpid(), signal.SIGKILL) if " + repr(concern) + " in sv.name "
        "else _reload(sv, so); ")
    ship = transport.Transport.ship

    def ship_then_die(self, files, then, **kw):
        done = ship(self, files, then, **kw)
        if done.returncode == 128 + signal.SIGKILL:
            os.kill(os.getpid(), signal.SIGKILL)  # ... and the controller right after
        return done

    transport.Transport.ship = ship_then_die
    ds = model.load_desired([Path(servers), Path(desired)])
    from controller.drivers import context
    ctx = context.Context.of(ds, Path(state))
    ds_drivers = engine.default_drivers()
    ds_drivers["web"], ds_drivers["php"] = WebDriver(ctx), PhpDriver(ctx)
    ds_drivers["web"].agent_prelude = ds_drivers["php"].agent_prelude = PRELUDE
    with state_store.Store(Path(db)) as store:
        engine.Engine(store, ds_drivers, clock=lambda: dt.datetime.now(dt.UTC)).reconcile(ds)
    print("finished without being killed")
""")


@pytest.mark.parametrize("concern", [
    pytest.param("nginx", id="web-agent-killed-before-the-nginx-reload"),
    pytest.param("fpm", id="php-agent-killed-before-the-php-fpm-reload"),
])
def test_sigkill_in_the_middle_of_an_apply_then_a_rerun_converges(env: Env, concern: str) -> None:
    names = [f"k{i:02d}-{concern}.hosting.test" for i in range(20)]
    env.subs = [sub_doc(n) for n in names[:10]]
    assert env.reconcile().ok
    # the killed run: a plan edit for the first ten, ten new ones
    env.memory = "160M"
    env.subs = [sub_doc(n) for n in names]
    env.desired()  # writes desired.yaml
    proc = subprocess.run([sys.executable, "-c", KILLED, str(env.cluster.state_dir), str(env.cluster.servers_file),
                           str(env.tmp / "desired.yaml"), str(env.tmp / "state.db"), concern],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    # a new run converges: every site serves its own PHP with the new value, nothing twice
    report = env.reconcile()
    assert report.ok, report.failed
    for n in names:
        env.put_index("drv-a", n)
    for n in names:
        code, body = curl(n, "127.0.40.1", "/index.php")
        assert code == 200, (n, body)
        assert body.split()[0] == "160M" and body.split()[2] == n, body
    users = [naming.system_user(n) for n in names]
    script = ("getent passwd | cut -d: -f1 | sort | uniq -d; getent group | cut -d: -f1 | sort | uniq -d; "
              f"grep -h '^\\[' {render.fpm_dir('8.2')}/*.conf | sort | uniq -d; "
              "grep -h 'server_name' /etc/nginx/tenantctl/*.conf | sort | uniq -d; "
              "ls /var/lib/tenantctl/journal.json 2>/dev/null; true")
    assert env.ssh("drv-a", "sh", "-c", script).text.split() == []  # no duplicate user, group, pool, vhost
    counts = env.ssh("drv-a", "sh", "-c", 'for u in "$@"; do getent passwd "$u" | wc -l; '
                     'ls /etc/nginx/tenantctl/"$u".conf | wc -l; done', "count", *users).text.split()
    assert counts == ["1"] * (2 * len(users))
    pools = env.ssh("drv-a", "sh", "-c", f"ls {render.fpm_dir('8.2')}").text.split()
    assert all(pools.count(f"{naming.fpm_pool(n)}.conf") == 1 for n in names)
    assert env.engine.resync(env.desired()) == {}


def test_bootstrap_after_an_apply_changes_nothing(env: Env) -> None:
    """The role and the drivers agree on what they both touch (directory modes, includes):
    re-running the bootstrap on a server with live tenants reports no change."""
    from controller.drivers import embedded

    env.subs = [sub_doc("boot-idem.hosting.test")]
    assert env.reconcile().ok
    spec = next(s for s in embedded_specs(env.cluster) if s.name == "drv-a")
    first = embedded.bootstrap([spec], env.cluster.state_dir)["drv-a"]
    second = embedded.bootstrap([spec], env.cluster.state_dir)["drv-a"]
    assert (first.failed, second.failed) == (0, 0)
    assert second.changed == 0, "the bootstrap is not idempotent"
    assert first.changed == 0, "bootstrap and drivers fight over something on the server"


def embedded_specs(cluster: Cluster) -> list[Any]:
    from .conftest import docker_specs

    return docker_specs(model.load_desired([cluster.servers_file]))
