"""The tls driver against Pebble and the embedded servers, through real clients (curl,
openssl s_client): issue 4 point 3/4 and the TLS half of its "Done when".

Each test applies web + php + dns + tls with the real drivers through ``Engine`` for its
own subscriptions (eu-west, on drv-a: the zone's primary is drv-a, the dns server Pebble
asks), with its own ACME account, and deletes them at the end.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import model, ratelimit
from controller.drivers import base, naming, slices
from controller.drivers.dns import DnsDriver
from controller.drivers.embedded import pebble
from controller.drivers.hosting import PhpDriver, WebDriver
from controller.drivers.tls import Settings, TlsDriver, ca, render
from controller.effective import spec
from controller.reconcile import engine, queue
from controller.state import store as state_store

from .conftest import Cluster

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(300)]

IP = "127.0.40.1"
NOWHERE = "127.0.43.9"  # nothing listens there
SUFFIX = "tls-test.example"


def plan_doc(ssl: bool, https_only: bool) -> dict[str, Any]:
    return {
        "apiVersion": "tenantctl.io/v1", "kind": "ServicePlan", "metadata": {"name": "tp"},
        "spec": {
            "resources": {"diskMB": 1024, "domains": 1, "subdomains": 5, "domainAliases": 5, "databases": 0},
            "permissions": {"manageHosting": False},
            "hosting": {"enabled": True, "ssl": ssl, "httpsOnly": https_only, "errorDocuments": False,
                        "php": {"handler": "fpm", "version": "8.2", "settings": {"memory_limit": "64M"}}},
            "performance": {"maxConnections": 20, "bandwidthKBps": "unlimited"},
        },
    }


class _NoDrift:
    """The dns driver frozen: no drift check, and a pass that re-applies the dns concern
    leaves the zones as they are (a test points a record elsewhere by hand)."""

    concern = "dns"

    def __init__(self, real: DnsDriver) -> None:
        self.real = real

    def slice(self, item: spec.Item) -> slices.DnsSlice:
        return self.real.slice(item)

    def apply(self, server: str | None, changes: Sequence[base.Change]) -> list[base.Result]:
        return [base.Result(c.name, "provisioned", "left as the test set it") for c in changes]


class Env:
    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.store = state_store.Store(tmp / "state.db")
        self.web, self.php, self.dns = WebDriver(cluster.ctx), PhpDriver(cluster.ctx), DnsDriver(cluster.ctx)
        self.limits = ratelimit.RateLimits()
        self.settings = Settings(account=f"test-{uuid.uuid4().hex[:8]}")
        self.tls = TlsDriver(cluster.ctx, self.settings, limits=self.limits)
        drivers: dict[str, base.Driver] = engine.default_drivers()
        drivers.update(web=self.web, php=self.php, dns=self.dns, tls=self.tls)
        # the engine's one backoff formula, with short delays for the tests
        self.engine = engine.Engine(self.store, drivers, limits=self.limits,
                                    backoff=queue.ExponentialBackoff(base=2.0, cap=8.0))
        self.subs: list[dict[str, Any]] = []
        self.ssl, self.https_only = True, False
        bundle = pebble.ca_bundle(cluster.state_dir)
        assert bundle.exists(), "Pebble is not up (env up starts it)"
        self.bundle = str(bundle)

    def sub(self, name: str, **spec: Any) -> None:
        body = {"customer": "tls-tests", "plan": "tp", "region": "eu-west", "server": "drv-a", **spec}
        self.subs.append({"apiVersion": "tenantctl.io/v1", "kind": "Subscription", "metadata": {"name": name},
                          "spec": body})

    def desired(self) -> model.DesiredState:
        docs = [plan_doc(self.ssl, self.https_only),
                {"apiVersion": "tenantctl.io/v1", "kind": "Customer", "metadata": {"name": "tls-tests"},
                 "spec": {"email": "t@example.org", "state": "active"}}, *self.subs]
        path = self.tmp / "desired.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return model.load_desired([self.cluster.servers_file, path])

    def reconcile(self) -> engine.Report:
        return self.engine.reconcile(self.desired())

    def fresh_account(self) -> None:
        """A new ACME account (Pebble reuses valid authorizations of an account)."""
        self.settings = dataclasses.replace(self.tls.settings, account=f"test-{uuid.uuid4().hex[:8]}")
        self.tls.settings = self.settings
        self.tls.ca = ca.CA(self.settings, self.tls.store, self.cluster.state_dir, self.tls.counters)

    def condition(self, name: str) -> tuple[str, str]:
        cond = {c.type: c for c in self.store.get_conditions(name)}["TlsReady"]
        return cond.status, cond.message

    def close(self) -> None:
        names = [s["metadata"]["name"] for s in self.subs]
        self.subs = []
        self.engine.drivers["dns"] = self.dns
        self.reconcile()
        for d in (self.web, self.php, self.tls):
            d.close()
        self.dns.close()
        self.store.close()
        for n in names:  # the state dir may be shared
            shutil.rmtree(self.cluster.state_dir / "retained" / n, ignore_errors=True)


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path) -> Iterator[Env]:
    e = Env(cluster, tmp_path)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def domain() -> str:
    return f"t{uuid.uuid4().hex[:10]}.{SUFFIX}"


def curl(url: str, name: str, port: int, bundle: str | None = None) -> tuple[int, str, str]:
    """(status, body, Location) or (0, error, '') when the TLS/HTTP exchange failed."""
    argv = ["curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code} %{redirect_url}",
            "--resolve", f"{name}:{port}:{IP}", url]
    if bundle:
        argv[1:1] = ["--cacert", bundle]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return 0, proc.stderr.strip(), ""
    body, _, tail = proc.stdout.rpartition("\n")
    code, _, location = tail.partition(" ")
    return int(code), body, location


def s_client(name: str, bundle: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "s_client", "-verify_return_error", "-servername", name, "-verify_hostname",
                           name, "-connect", f"{IP}:443", "-CAfile", bundle], input="", capture_output=True,
                          text=True, timeout=20, check=False)


def serial(name: str, bundle: str) -> str:
    out = s_client(name, bundle).stdout
    cert = out[out.index("-----BEGIN CERTIFICATE-----"):out.index("-----END CERTIFICATE-----") + 25]
    return subprocess.run(["openssl", "x509", "-noout", "-serial"], input=cert, capture_output=True, text=True,
                          check=True).stdout.strip()


def set_a(env: Env, name: str, address: str) -> None:
    [primary] = [s for s in env.dns.servers() if s.name == "drv-a"]
    zone = ".".join(name.split(".")[-3:]) + "."
    env.dns.client(primary).patch(zone, [{"name": f"{name}.", "type": "A", "ttl": 60, "changetype": "REPLACE",
                                          "records": [{"content": address, "disabled": False}]}])


class TestIssuance:
    def test_https_serves_every_name_with_a_verified_chain(self, env: Env, domain: str) -> None:
        alias = f"alias{domain}"
        env.sub(domain, sites=[{"name": "blog"}, {"name": alias, "type": "alias"}])
        started = time.monotonic()
        report = env.reconcile()
        print(f"\nweb+php+dns+tls for one subscription in {time.monotonic() - started:.2f}s; "
              f"ACME requests {env.tls.counters.requests}")
        assert report.ok, report.failed
        assert report.outcomes[domain]["tls"] == "provisioned"
        status, message = env.condition(domain)
        assert status == "True" and "valid until" in message, message
        for name in (domain, f"www.{domain}", f"blog.{domain}", alias, f"www.{alias}"):
            code, body, _ = curl(f"https://{name}/", name, 443, env.bundle)
            plain = curl(f"http://{name}/", name, 80)
            assert code == 200, (name, body)
            assert body == plain[1] and plain[0] == 200, name  # the same site over both
            proc = s_client(name, env.bundle)
            assert proc.returncode == 0, (name, proc.stdout[-500:], proc.stderr[-500:])
            assert "Verify return code: 0 (ok)" in proc.stdout
        # the key on the controller is private; the server's key is root's only
        key = env.cluster.state_dir / "tls" / "certs" / domain / "privkey.pem"
        assert key.stat().st_mode & 0o777 == 0o600
        mode = env.web.remote("drv-a").run(["stat", "-c", "%a %U", render.bundle_path(domain)]).text.strip()
        assert mode == "600 root"

    def test_a_second_pass_orders_nothing_and_reloads_nothing(self, env: Env, domain: str) -> None:
        env.sub(domain)
        assert env.reconcile().ok
        before = env.tls.counters.total_requests
        assert env.engine.resync(env.desired()) == {}
        assert env.reconcile().outcomes == {}
        assert env.tls.counters.total_requests == before

    def test_https_only_answers_301_over_http_except_acme_challenges(self, env: Env, domain: str) -> None:
        env.https_only = True
        env.sub(domain, sites=[{"name": "shop"}])
        assert env.reconcile().ok
        for name in (domain, f"www.{domain}", f"shop.{domain}"):
            code, _, location = curl(f"http://{name}/page?x=1", name, 80)
            assert (code, location) == (301, f"https://{name}/page?x=1")
            assert curl(f"https://{name}/", name, 443, env.bundle)[0] == 200
        code, _, _ = curl(f"http://{domain}/.well-known/acme-challenge/nothing", domain, 80)
        assert code == 404  # served (not redirected): renewals keep working

    def test_a_suspended_site_answers_the_suspended_page_over_https_too(self, env: Env, domain: str) -> None:
        """LIFE-2 with TLS: HTTPS keeps its certificate and answers 503 with the page."""
        env.https_only = True
        env.sub(domain)
        assert env.reconcile().ok
        env.subs = []
        env.sub(domain, state="suspended", stateReason="manual")
        assert env.reconcile().ok
        code, body, _ = curl(f"https://{domain}/", domain, 443, env.bundle)
        assert code == 503 and "This site is suspended" in body
        code, _, location = curl(f"http://{domain}/x", domain, 80)
        assert (code, location) == (301, f"https://{domain}/x")

    def test_a_plan_without_ssl_gets_no_certificate_and_no_443(self, env: Env, domain: str) -> None:
        env.ssl = False
        env.sub(domain)
        report = env.reconcile()
        assert report.ok, report.failed
        assert env.condition(domain) == ("True", "no SSL in the plan: no certificate, no 443 (TLS-1)")
        assert env.tls.counters.total_requests == 0
        user = naming.system_user(domain)
        listing = env.web.remote("drv-a").run(["sh", "-c", f"ls {render.TLS_DIR} | grep -c '^{user}\\.' || true"])
        assert listing.text.strip() == "0"
        vhost = env.web.remote("drv-a").run(["cat", f"/etc/nginx/tenantctl/{user}.conf"]).text
        assert ":443" not in vhost and "acme-challenge" not in vhost  # (the random domain may hold "443")
        assert s_client(domain, env.bundle).returncode != 0  # nothing on 443 serves this name
        assert curl(f"http://{domain}/", domain, 80)[0] == 200


class TestFailures:
    def test_failed_renewal_keeps_the_old_certificate_backs_off_in_the_engine_and_recovers(
            self, env: Env, domain: str) -> None:
        env.sub(domain)
        assert env.reconcile().ok
        old = serial(domain, env.bundle)
        # the A record points where nothing answers; the zone is left so (no dns drift repair)
        env.engine.drivers["dns"] = _NoDrift(env.dns)
        set_a(env, domain, NOWHERE)
        env.fresh_account()
        env.tls.store.force(domain)

        def repair() -> dict[str, dict[str, str]]:
            found = env.engine.resync(env.desired())
            env.reconcile()  # drift is repaired by the next pass, like any change
            return found

        drifted = repair()
        assert drifted[domain]["tls"].startswith("renewal requested"), drifted
        status, message = env.condition(domain)
        print(f"\nTlsReady=False: {message}")
        assert status == "False"
        assert "certificate order failed" in message and NOWHERE in message, message  # the CA's reason
        assert "keeps serving" in message
        assert curl(f"https://{domain}/", domain, 443, env.bundle)[0] == 200
        assert serial(domain, env.bundle) == old
        # the engine's record is the only backoff: the driver keeps none of its own
        first = env.store.get_backoff(f"{domain}/tls")
        assert first is not None and first.failures == 1 and NOWHERE in first.last_error
        assert not (env.cluster.state_dir / "tls" / "status" / f"{domain}.json").exists()
        # retries back off: nothing goes to the CA before the delay, whatever asks
        requests = env.tls.counters.total_requests
        repair()
        assert env.tls.counters.total_requests == requests
        time.sleep(max(0.0, (first.next_attempt - env.store.now()).total_seconds()) + 0.1)
        repair()
        assert env.tls.counters.total_requests > requests, "retried once the delay passed"
        second = env.store.get_backoff(f"{domain}/tls")
        assert second is not None and second.failures == 2
        assert 3.0 <= (second.next_attempt - env.store.now()).total_seconds() <= 4.5  # doubled
        # fixed, and the record cleared as `tenantctl tls renew` does: ordered at once, recovered
        set_a(env, domain, IP)
        env.store.clear_backoff(f"{domain}/tls")
        repair()
        assert env.condition(domain)[0] == "True", env.condition(domain)
        assert serial(domain, env.bundle) != old
        assert env.store.get_backoff(f"{domain}/tls") is None


class TestReplacedCa:
    def test_certificates_of_a_ca_restarted_with_a_new_root_are_re_issued_and_verify_again(
            self, env: Env, domain: str, tmp_path: Path) -> None:
        """Pebble makes a new root at every start (as after `env down` / `env up`): the
        certificates it issued before still look valid but no longer verify against its
        bundle; the next pass re-issues them. A Pebble of this test's own, so that the
        environment's CA keeps its root for the other tests."""
        own = tmp_path / "own-ca"
        own.mkdir()
        bundle = pebble.up(own, f"{IP}:53")  # drv-a is the zone's primary: Pebble resolves there
        try:
            env.settings = Settings(account=f"test-{uuid.uuid4().hex[:8]}", directory=pebble.directory(own),
                                    ca_bundle=str(bundle), roots=str(bundle))
            env.tls.settings = env.settings
            env.tls.ca = ca.CA(env.settings, env.tls.store, env.cluster.state_dir, env.tls.counters)
            env.sub(domain)
            assert env.reconcile().ok
            assert curl(f"https://{domain}/", domain, 443, str(bundle))[0] == 200
            old = serial(domain, str(bundle))
            pebble.down(own)
            bundle = pebble.up(own, f"{IP}:53")  # a new root, same directory URL
            code, error, _ = curl(f"https://{domain}/", domain, 443, str(bundle))
            assert code == 0 and "certificate" in error, error  # what users saw before the fix
            found = env.engine.resync(env.desired())
            assert "does not chain to the CA's current roots" in found[domain]["tls"], found
            assert env.reconcile().ok
            assert curl(f"https://{domain}/", domain, 443, str(bundle))[0] == 200
            assert serial(domain, str(bundle)) != old
            assert domain not in env.engine.resync(env.desired()), "re-issued once, then quiet"
        finally:
            pebble.down(own)


#: on the server: the tls agent dies by SIGKILL right after it wrote the first TLS include
#: of the batch (its certificate bundle is written before it; the other subscription's not)
KILL_AT_FIRST_INCLUDE = (
    "import os, signal; from controller.agent import files; _write = files.write; "
    "files.write = lambda p, d, *a, **k: (_write(p, d, *a, **k), os.kill(os.getpid(), signal.SIGKILL) "
    f"if d is not None and p.startswith('{render.TLS_DIR}/') else None)[0]; ")


class TestCrashSafety:
    def test_a_tls_agent_killed_mid_install_leaves_nginx_valid_and_the_next_pass_converges(
            self, env: Env, domain: str) -> None:
        other = f"b{domain}"
        env.sub(domain)
        env.sub(other)
        env.tls.agent_prelude = KILL_AT_FIRST_INCLUDE
        report = env.reconcile()
        failed = report.failed.get(domain, []) + report.failed.get(other, [])
        assert any("server drv-a (127.0.40.1): tls agent killed by signal 9" in m for m in failed), report.failed
        remote = env.web.remote("drv-a")
        check = remote.run(["nginx", "-t"])
        assert check.returncode == 0, check.error  # never an include naming a missing certificate
        assert remote.run(["test", "-f", "/var/lib/tenantctl/journal.json"]).returncode == 0
        # the next pass (its backoff cleared, as `tenantctl tls renew` does) rolls back and converges
        env.tls.agent_prelude = ""
        for name in (domain, other):
            env.store.clear_backoff(f"{name}/tls")
        report = env.reconcile()
        assert report.ok, report.failed
        for name in (domain, other, f"www.{other}"):
            code, body, _ = curl(f"https://{name}/", name, 443, env.bundle)
            assert code == 200, (name, body)
        assert remote.run(["test", "-e", "/var/lib/tenantctl/journal.json"]).returncode == 1
        assert remote.run(["nginx", "-t"]).returncode == 0
