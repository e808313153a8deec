"""Pure parts of the tls driver: names, due-ness, the nginx include, the key store's
modes, error translation, retry semantics (hints, permanence, no backoff of its own),
metrics and the ``tls`` CLI (no servers, no CA)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import socket
import struct
import threading
from pathlib import Path
from typing import cast

import pytest
import requests
from acme import messages
from typer.testing import CliRunner

from controller import errors, ratelimit
from controller.agent import jobs as transport_jobs
from controller.cli import tls as tls_cli
from controller.drivers import base, naming, transport
from controller.drivers.context import Context, Server
from controller.drivers.tls import TlsDriver, ca, decide, dns01, metrics, render
from controller.drivers.tls import settings as settings_mod
from controller.drivers.tls import store as tls_store
from controller.state import store as state_store

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SLICE = {"ssl": True, "httpsOnly": False, "enabled": True, "ip": "127.0.40.1", "server": "drv-a",
         "sites": ["blog.ex.com", "alias.org"], "siteTypes": {"blog.ex.com": "subdomain", "alias.org": "alias"}}


def cert(days: int = 90, names: tuple[str, ...] = ("ex.com", "www.ex.com")) -> decide.CertInfo:
    return decide.CertInfo(names, T0, T0 + dt.timedelta(days=days))


class TestNames:
    def test_domain_www_sites_and_aliases_with_www(self) -> None:
        assert decide.names("ex.com", SLICE) == ["ex.com", "www.ex.com", "alias.org", "www.alias.org", "blog.ex.com"]

    @pytest.mark.parametrize(("ssl", "enabled", "want"), [
        pytest.param(True, True, True, id="ssl"),
        pytest.param(False, True, False, id="no-ssl-TLS-1"),
        pytest.param(True, False, False, id="hosting-off"),
    ])
    def test_wanted(self, ssl: bool, enabled: bool, want: bool) -> None:
        assert decide.wanted({**SLICE, "ssl": ssl, "enabled": enabled}) is want


class TestDue:
    want = ["ex.com", "www.ex.com"]

    @pytest.mark.parametrize(("info", "at", "expect"), [
        pytest.param(None, T0, "no certificate yet", id="missing"),
        pytest.param(cert(), T0 + dt.timedelta(days=59), None, id="fresh"),
        pytest.param(cert(), T0 + dt.timedelta(days=60), "two thirds", id="two-thirds"),
        pytest.param(cert(), T0 + dt.timedelta(days=91), "expired", id="expired"),
        pytest.param(cert(names=("ex.com",)), T0, "does not cover www.ex.com", id="new-name"),
        pytest.param(dataclasses.replace(cert(), anchored=False), T0, "does not chain to the CA's current roots",
                     id="ca-replaced"),
    ])
    def test_due(self, info: decide.CertInfo | None, at: dt.datetime, expect: str | None) -> None:
        why = decide.due(info, self.want, at, 2 / 3)
        assert (why is None) if expect is None else (why is not None and expect in why)

    def test_the_ca_window_wins_over_two_thirds(self) -> None:
        window = T0 + dt.timedelta(days=70)
        assert decide.due(cert(), self.want, T0 + dt.timedelta(days=65), 2 / 3, window) is None
        assert "renewal window" in str(decide.due(cert(), self.want, window, 2 / 3, window))


class TestRender:
    def test_one_include_per_server_block_matching_the_vhost_hook(self) -> None:
        files = render.files("ex.com", SLICE, True)
        user = naming.system_user("ex.com")
        assert sorted(files) == sorted(f"/etc/nginx/tenantctl-tls/{user}.{s}.conf"
                                       for s in ("ex.com", "blog.ex.com", "alias.org"))
        text = files[f"/etc/nginx/tenantctl-tls/{user}.ex.com.conf"]
        assert text is not None and "listen 127.0.40.1:443 ssl http2;" in text and "return 301" not in text
        # chain and key in one file: replacing it is atomic, never a new chain with an old key
        assert f"ssl_certificate /etc/ssl/tenantctl/{user}/bundle.pem;" in text
        assert f"ssl_certificate_key /etc/ssl/tenantctl/{user}/bundle.pem;" in text

    def test_https_only_redirects_but_not_acme(self) -> None:
        text = render.include("ex.com", "ex.com", {**SLICE, "httpsOnly": True})
        assert "return 301 https://$host$request_uri;" in text and "acme-challenge" in text

    def test_no_certificate_no_include(self) -> None:
        assert set(render.files("ex.com", SLICE, False).values()) == {None}

    def test_unsafe_names_are_refused(self) -> None:
        with pytest.raises(ValueError, match="refusing"):
            render.include_path("ex.com", "bad name;")


class TestStore:
    def test_keys_are_private(self, tmp_path: Path) -> None:
        st = tls_store.Store(tmp_path)
        st.save_certificate("ex.com", b"chain", b"key")
        for p in (tmp_path / "tls" / "certs" / "ex.com").iterdir():
            assert p.stat().st_mode & 0o777 == 0o600, p
        assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700

    def test_cli_renew_requests_a_renewal_and_clears_the_engines_backoff_record(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path))
        with state_store.Store(tmp_path / "state.db") as db:
            db.record_failure("ex.com/tls", "CA said no", 3600)
            db.record_failure("ex.com/web", "unrelated", 3600)
        status = CliRunner().invoke(tls_cli.tls_app, ["status", "ex.com", "-o", "json"])
        assert status.exit_code == 0, status.output
        doc = json.loads(status.output)
        assert (doc["failures"], doc["lastError"], doc["renewalRequested"]) == (1, "CA said no", False)
        result = CliRunner().invoke(tls_cli.tls_app, ["renew", "ex.com"])
        assert result.exit_code == 0, result.output
        assert tls_store.Store(tmp_path).forced("ex.com")
        with state_store.Store(tmp_path / "state.db") as db:
            assert db.get_backoff("ex.com/tls") is None  # the only backoff record, cleared
            assert db.get_backoff("ex.com/web") is not None
        assert CliRunner().invoke(tls_cli.tls_app, ["renew", "../etc"]).exit_code == 2

    def test_cli_status_shows_the_renewal_time_from_the_drivers_setting(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path))
        monkeypatch.setattr(settings_mod, "Settings", functools.partial(settings_mod.Settings, renew_fraction=0.5))
        pem = _self_signed(T0, T0 + dt.timedelta(days=90))
        tls_store.Store(tmp_path).save_certificate("ex.com", pem, b"key")
        doc = json.loads(CliRunner().invoke(tls_cli.tls_app, ["status", "ex.com", "-o", "json"]).output)
        assert doc["renewFrom"] == (T0 + dt.timedelta(days=45)).isoformat()
        assert doc["failures"] == 0 and doc["nextAttempt"] is None


def _ca(name: str, issuer: tuple[object, str] | None = None) -> tuple[object, bytes]:
    """A CA certificate named ``name``: self-signed, or signed by ``issuer`` (key, name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    signer, signer_name = issuer if issuer is not None else (key, name)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, signer_name)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(T0).not_valid_after(T0 + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))  # type: ignore[arg-type]
    return key, cert.public_bytes(serialization.Encoding.PEM)


class TestRoots:
    """A CA replaced under the same directory URL (Pebble makes a new root at each start):
    stored certificates that no longer chain to its roots are re-issued."""

    def test_a_chain_is_judged_by_its_top_certificate_against_the_current_roots(self) -> None:
        root_key, root = _ca("Root A")
        _, intermediate = _ca("Intermediate A", (root_key, "Root A"))
        _, other_root = _ca("Root A")  # same name, another key: a restarted CA
        leaf = _self_signed(T0, T0 + dt.timedelta(days=90))
        chain = leaf + intermediate
        assert tls_store.chains_to(chain, root)
        assert tls_store.chains_to(chain, other_root + root)
        assert not tls_store.chains_to(chain, other_root)
        assert tls_store.chains_to(root, root)  # the root itself
        assert tls_store.chains_to(chain, b"no certificates here")  # nothing to judge by

    def test_the_store_marks_a_certificate_of_a_replaced_root_and_due_re_issues_it(self, tmp_path: Path) -> None:
        root_key, root = _ca("Root A")
        _, intermediate = _ca("Intermediate A", (root_key, "Root A"))
        _, new_root = _ca("Root A")
        st = tls_store.Store(tmp_path)
        st.save_certificate("ex.com", _self_signed(T0, T0 + dt.timedelta(days=90)) + intermediate, b"key")
        want = ["ex.com"]
        at = T0 + dt.timedelta(days=1)
        assert decide.due(st.info("ex.com", root), want, at, 2 / 3) is None
        assert decide.due(st.info("ex.com"), want, at, 2 / 3) is None  # no roots: no check
        assert "current roots" in str(decide.due(st.info("ex.com", new_root), want, at, 2 / 3))

    def test_roots_come_from_the_embedded_ca_of_the_state_directory_or_the_environment(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from controller.provisioning import acme

        monkeypatch.delenv("TENANTCTL_ACME_DIRECTORY", raising=False)
        monkeypatch.delenv("TENANTCTL_ACME_ROOTS", raising=False)
        assert settings_mod.Settings().resolved(tmp_path).roots is None
        acme.set_default(tmp_path, acme.Ca("https://127.1.0.9:14000/dir", str(tmp_path / "bundle.pem")))
        assert settings_mod.Settings().resolved(tmp_path).roots == str(tmp_path / "bundle.pem")
        explicit = settings_mod.Settings(directory="https://127.1.0.9:14000/dir").resolved(tmp_path)
        assert explicit.roots == str(tmp_path / "bundle.pem")
        other = settings_mod.Settings(directory="https://acme.example/dir").resolved(tmp_path)
        assert other.roots is None  # another CA: its roots are not the embedded one's
        monkeypatch.setenv("TENANTCTL_ACME_ROOTS", "/etc/roots.pem")
        assert settings_mod.Settings(directory="https://acme.example/dir").resolved(tmp_path).roots == "/etc/roots.pem"
        assert tls_store.read_roots(str(tmp_path / "missing.pem")) is None


def _self_signed(not_before: dt.datetime, not_after: dt.datetime) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ex.com")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("ex.com")]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class TestErrors:
    def test_the_cas_words_are_kept(self) -> None:
        err = messages.Error.with_code("connection", detail="Connection refused")
        assert ca.reason(err) == "Connection refused (connection)"
        assert ca.reason(requests.ConnectionError("boom")).startswith("CA unreachable: boom")

    @pytest.mark.parametrize(("exc", "kind", "delay"), [
        pytest.param(messages.Error.with_code("rateLimited", detail="slow down"), ca.OrderFailed,
                     ca.RATE_LIMITED_DELAY, id="rate-limited-waits-an-hour"),
        pytest.param(messages.Error.with_code("serverInternal", detail="oops"), ca.OrderFailed, None, id="ca-error"),
        pytest.param(requests.Timeout("t"), ca.OrderFailed, None, id="timeout"),
        pytest.param(ValueError("bad pem"), ca.OrderFailed, None, id="bad-answer"),
        pytest.param(messages.Error.with_code("rejectedIdentifier", detail="policy forbids"), ca.Refused, None,
                     id="refused-name-is-permanent"),
    ])
    def test_every_backend_error_is_translated(self, exc: Exception, kind: type[errors.DriverError],
                                               delay: float | None) -> None:
        c = ca.CA.__new__(ca.CA)
        with pytest.raises(kind) as info, c._translated():
            raise exc
        assert type(info.value) is kind and info.value.__cause__ is exc
        assert getattr(info.value, "delay", None) == delay


class TestMetrics:
    def test_observed_values_and_forgetting(self) -> None:
        metrics.observe("m.example", expiry=2.0, renewed=1.0, failures=2)
        assert metrics.certificate_expiry()["m.example"] == 2.0
        assert metrics.renewal_failures()["m.example"] == 2
        metrics.observe("m.example", failures=0)
        assert "m.example" not in metrics.renewal_failures()
        metrics.forget("m.example")
        assert "m.example" not in metrics.last_renewal()

    def test_driver_counters_add_up_globally(self) -> None:
        before = metrics.acme_requests().get("ok", 0)
        ca.Counters(parent=metrics.COUNTERS).request("ok", 0.01)
        assert metrics.acme_requests()["ok"] == before + 1


# --- DNS-01 (pure parts and the stdlib DNS client) ------------------------------------

DNS_SERVERS = {
    "drv-a": Server("drv-a", "eu-west", "docker", "127.0.40.1", ("web", "dns"), ()),
    "drv-c": Server("drv-c", "us-east", "docker", "127.0.42.1", ("web", "dns"), ()),
}
DNS_SLICE = {**SLICE, "region": "eu-west", "dns": {"mode": "primary", "primaries": []}}


def helper(tmp_path: Path, **cfg: object) -> dns01.Dns01:
    return dns01.Dns01(Context(tmp_path, DNS_SERVERS), settings_mod.Settings(directory="https://ca/dir", **cfg))


class TestChallenge:
    @pytest.mark.parametrize(("names", "default", "subs", "want"), [
        pytest.param(["ex.com"], "http-01", set(), "http-01", id="default-http-01"),
        pytest.param(["ex.com"], "dns-01", set(), "dns-01", id="settings-for-all"),
        pytest.param(["ex.com"], "http-01", {"ex.com"}, "dns-01", id="settings-for-this-one"),
        pytest.param(["ex.com"], "http-01", {"other.com"}, "http-01", id="settings-for-another"),
        pytest.param(["ex.com", "*.ex.com"], "http-01", set(), "dns-01", id="wildcard-cannot-http-01"),
    ])
    def test_which(self, names: list[str], default: str, subs: set[str], want: str) -> None:
        assert decide.challenge("ex.com", names, default, subs)[0] == want

    def test_settings_from_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TENANTCTL_ACME_DNS01", "a.com, b.org")
        monkeypatch.setenv("TENANTCTL_ACME_DNS01_RESOLVERS", "127.0.0.1:5353")
        s = settings_mod.Settings()
        assert s.dns01 == {"a.com", "b.org"} and s.dns01_resolvers == ("127.0.0.1:5353",)
        assert s.challenge == "http-01"


class TestDns01Plan:
    def test_each_name_goes_to_its_zone_on_the_primary_checked_on_every_dns_server(self, tmp_path: Path) -> None:
        txt = {f"_acme-challenge.{n}": ["v"] for n in decide.names("ex.com", SLICE)}
        works = {w.zone: w for w in helper(tmp_path).plan("ex.com", DNS_SLICE, txt)}
        assert sorted(works) == ["alias.org.", "ex.com."]
        assert sorted(works["alias.org."].txt) == ["_acme-challenge.alias.org.", "_acme-challenge.www.alias.org."]
        assert sorted(works["ex.com."].txt) == ["_acme-challenge.blog.ex.com.", "_acme-challenge.ex.com.",
                                                "_acme-challenge.www.ex.com."]
        w = works["ex.com."]
        assert w.primary.name == "drv-a" and [s.name for s in w.secondaries] == ["drv-c"]
        assert w.check == [("127.0.40.1", 53), ("127.0.42.1", 53)]

    def test_resolvers_of_the_settings_replace_the_check(self, tmp_path: Path) -> None:
        [w] = helper(tmp_path, dns01_resolvers=("10.0.0.1:5353", "10.0.0.2")).plan(
            "ex.com", DNS_SLICE, {"_acme-challenge.ex.com": ["v"]})
        assert w.check == [("10.0.0.1", 5353), ("10.0.0.2", 53)]

    def test_a_customers_zone_cannot_take_dns01(self, tmp_path: Path) -> None:
        sl = {**DNS_SLICE, "dns": {"mode": "secondary", "primaries": ["192.0.2.53"]}}
        with pytest.raises(dns01.NotPossible, match=r"zone is the customer's \(dns mode secondary, primaries "
                                                    r"192\.0\.2\.53\).*use HTTP-01"):
            helper(tmp_path).plan("ex.com", sl, {"_acme-challenge.ex.com": ["v"]})

    def test_no_dns_server_in_the_region_is_no_primary(self, tmp_path: Path) -> None:
        with pytest.raises(dns01.Unavailable, match=r"no primary dns server .*no server with the dns role in "
                                                    r"region ap-south"):
            helper(tmp_path).plan("ex.com", {**DNS_SLICE, "region": "ap-south"}, {"_acme-challenge.ex.com": []})


def _dns_answer(query: bytes, rcode: int, txts: list[list[bytes]]) -> bytes:
    qid = query[:2]
    question = query[12:]
    out = qid + struct.pack("!HHHHH", 0x8400 | rcode, 1, len(txts), 0, 0) + question
    for strings in txts:
        rdata = b"".join(bytes([len(s)]) + s for s in strings)
        out += b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, len(rdata)) + rdata
    return out


class TestQueryTxt:
    def serve(self, rcode: int, txts: list[list[bytes]]) -> tuple[str, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)

        def one() -> None:
            with sock:
                data, peer = sock.recvfrom(512)
                sock.sendto(b"\x00" * 3, peer)  # garbage first: ignored
                sock.sendto(_dns_answer(data, rcode, txts), peer)

        threading.Thread(target=one, daemon=True).start()
        return sock.getsockname()

    def test_txt_strings_are_joined_per_record(self) -> None:
        addr, port = self.serve(0, [[b"abc", b"def"], [b"xyz"]])
        assert dns01.query_txt(addr, "_acme-challenge.ex.com", port=port) == ["abcdef", "xyz"]

    def test_nxdomain_is_no_answer(self) -> None:
        addr, port = self.serve(3, [])
        assert dns01.query_txt(addr, "_acme-challenge.ex.com", port=port) == []

    def test_servfail_is_an_error(self) -> None:
        addr, port = self.serve(2, [])
        with pytest.raises(ValueError, match="rcode 2"):
            dns01.query_txt(addr, "_acme-challenge.ex.com", port=port)


def test_a_customers_zone_fails_dns01_before_the_ca_is_asked(tmp_path: Path) -> None:
    drv = TlsDriver(Context(tmp_path, DNS_SERVERS),
                    settings_mod.Settings(directory="https://ca.invalid/dir", dns01=frozenset({"ex.com"})))
    sl = {**DNS_SLICE, "dns": {"mode": "secondary", "primaries": ["192.0.2.53"]}}
    change = base.Change("ex.com", "ensure", sl)
    out = drv._issue("drv-a", [(change, decide.names("ex.com", sl), "no certificate yet")], T0)
    assert out["ex.com"].outcome == "failed"
    assert "the customer's (dns mode secondary" in out["ex.com"].message
    assert "(DNS-01 set for this subscription)" in out["ex.com"].message
    assert drv.counters.total_requests == 0
    # retrying cannot help until the zone or the settings change: permanent, no hint
    assert out["ex.com"].permanent and out["ex.com"].retry_after is None


# --- retry semantics: hints and permanence, the engine's backoff only -----------------------


class FakeCA:
    """Stands in for ``ca.CA``: every order fails with the CA's words."""

    def __init__(self, error: errors.DriverError | None = None) -> None:
        self.orders = 0
        self.error = error or ca.OrderFailed("Error creating new order :: the CA is unwell (serverInternal)")

    def begin(self, names: list[str], key: bytes, kind: str) -> ca.Pending:
        self.orders += 1
        raise self.error


class FakeRemote:
    """Stands in for a ``Transport`` of drv-a: the agent is there; ``ship`` answers ``code``."""

    address = "127.0.40.1"
    label = "server drv-a (127.0.40.1)"

    def __init__(self, code: int = 0, stdout: bytes = b"") -> None:
        self.code, self.stdout = code, stdout
        self.last_timings: dict[str, float] = {}

    def run(self, argv: list[str], **kw: object) -> transport.Completed:
        return transport.Completed(0, b"", b"")

    def ship(self, files: list[transport.File], then: list[str], **kw: object) -> transport.Completed:
        job = json.loads(next(f.data for f in files if f.path == "job.json") or b"{}")
        out = self.stdout or json.dumps({"version": 1, "results": {i["name"]: {"ok": True} for i in job["items"]},
                                         "drift": {}}).encode()
        return transport.Completed(self.code, out, b"Killed" if self.code else b"")

    def close(self) -> None:
        pass


def tls_driver(tmp_path: Path, remote: FakeRemote | None = None, **cfg: object) -> TlsDriver:
    drv = TlsDriver(Context(tmp_path, DNS_SERVERS), settings_mod.Settings(
        directory="https://ca.invalid/dir", challenge="http-01", dns01=frozenset(), **cfg))  # type: ignore[arg-type]
    drv.ca = FakeCA()  # type: ignore[assignment]
    drv._transports["drv-a"] = cast(transport.Transport, remote or FakeRemote())
    return drv


CHANGE = base.Change("ex.com", "ensure", DNS_SLICE)


def test_a_failed_order_is_reported_with_no_backoff_of_the_drivers_own(tmp_path: Path) -> None:
    drv = tls_driver(tmp_path)
    assert isinstance(drv.limits, ratelimit.RateLimits)  # the CA's default limits when none is injected
    for attempt in (1, 2):
        (res,) = drv.apply("drv-a", [CHANGE])
        assert res.outcome == "failed" and "the CA is unwell (serverInternal)" in res.message
        assert res.retry_after is None and not res.permanent  # the engine's formula decides the wait
        assert cast(FakeCA, drv.ca).orders == attempt  # asked again: the engine holds retries, not the driver
    assert not (tmp_path / "tls" / "status").exists()
    assert metrics.renewal_failures()["ex.com"] >= 2
    metrics.forget("ex.com")


@pytest.mark.parametrize(("error", "retry_after", "permanent"), [
    pytest.param(ca.OrderFailed("too many certificates (rateLimited)", delay=ca.RATE_LIMITED_DELAY),
                 ca.RATE_LIMITED_DELAY, False, id="rate-limited-by-the-ca-hints-an-hour"),
    pytest.param(ca.Refused("Error creating new order :: policy forbids issuing (rejectedIdentifier)"), None, True,
                 id="refused-name-is-permanent"),
])
def test_the_kind_of_a_ca_failure_reaches_the_engine(tmp_path: Path, error: errors.DriverError,
                                                      retry_after: float | None, permanent: bool) -> None:
    drv = tls_driver(tmp_path)
    drv.ca = FakeCA(error)  # type: ignore[assignment]
    (res,) = drv.apply("drv-a", [CHANGE])
    assert (res.outcome, res.retry_after, res.permanent) == ("failed", retry_after, permanent)
    assert str(error) in res.message
    metrics.forget("ex.com")


def test_an_exhausted_rate_limit_asks_for_a_retry_after_its_wait(tmp_path: Path) -> None:
    drv = tls_driver(tmp_path, rate_wait=0.0)
    limits = ratelimit.RateLimits()
    limits.configure(drv.settings.rate_key, ratelimit.Limit(rate_per_s=0.001, burst=1))
    drv.use_limits(limits)
    assert limits.acquire(drv.settings.rate_key, timeout=0)  # the one token, taken elsewhere
    (res,) = drv.apply("drv-a", [CHANGE])
    assert res.outcome == "failed" and "rate limit of acme:https://ca.invalid/dir" in res.message
    assert res.retry_after == 0.0 and cast(FakeCA, drv.ca).orders == 0
    metrics.forget("ex.com")


def test_a_killed_tls_agent_is_temporary_and_names_the_server(tmp_path: Path) -> None:
    drv = tls_driver(tmp_path, FakeRemote(code=137))
    no_ssl = base.Change("ex.com", "ensure", {**DNS_SLICE, "ssl": False})
    (res,) = drv.apply("drv-a", [no_ssl])
    assert res.outcome == "failed" and res.retry_after == 10.0 and not res.permanent
    assert "server drv-a (127.0.40.1): tls agent killed by signal 9" in res.message
    with pytest.raises(errors.TemporaryError, match=r"server drv-a \(127\.0\.40\.1\): tls agent killed by signal 9"):
        drv.drifted("drv-a", [no_ssl])


def test_a_crashed_tls_agent_is_permanent(tmp_path: Path) -> None:
    (res,) = tls_driver(tmp_path, FakeRemote(code=1)).apply("drv-a", [base.Change("ex.com", "delete", DNS_SLICE)])
    assert res.outcome == "failed" and res.permanent and "tls agent failed (exit 1)" in res.message


@pytest.mark.parametrize(("driver", "has", "lacks"), [
    pytest.param("web", {"templates/nginx/vhost.conf.j2", "templates/pages", "templates/skel",
                         "controller/drivers/naming.py", "controller/drivers/hosting/agent.py",
                         "controller/drivers/hosting/render.py", "controller/agent/transaction.py"},
                 {"templates/php/pool.conf.j2", "templates/nginx/tls.conf.j2", "controller/agent/bundle.py",
                  "controller/drivers/tls/agent.py", "controller/model/php.py"}, id="web"),
    pytest.param("php", {"templates/php/pool.conf.j2", "controller/drivers/naming.py",
                         "controller/drivers/hosting/agent.py", "controller/agent/services.py",
                         "controller/model/php.py"},
                 {"templates/nginx/vhost.conf.j2", "templates/skel", "templates/nginx/tls.conf.j2"}, id="php"),
    pytest.param("tls", {"templates/nginx/tls.conf.j2", "controller/drivers/tls/render.py",
                         "controller/drivers/tls/agent.py", "controller/drivers/naming.py"},
                 {"templates/nginx/vhost.conf.j2", "templates/php/pool.conf.j2", "controller/drivers/tls/ca.py",
                  "controller/drivers/hosting/agent.py"},
                 id="tls"),
])
def test_each_driver_names_exactly_the_sources_of_what_it_writes(
        tmp_path: Path, driver: str, has: set[str], lacks: set[str]) -> None:
    from controller.drivers.hosting import PhpDriver, WebDriver

    ctx = Context(tmp_path, DNS_SERVERS)
    drv: base.Versioned = {"web": lambda: WebDriver(ctx), "php": lambda: PhpDriver(ctx),
                           "tls": lambda: TlsDriver(ctx, settings_mod.Settings(directory="https://ca/dir"))}[driver]()
    assert isinstance(drv, base.Versioned)
    root = Path(__file__).resolve().parents[2]
    paths = list(drv.sources())
    assert all(p.exists() for p in paths), [p for p in paths if not p.exists()]
    named = {p.resolve().relative_to(root).as_posix() for p in paths}
    assert has <= named, has - named
    assert not lacks & named, lacks & named


def test_the_bundle_is_installed_before_the_includes_that_name_it(tmp_path: Path) -> None:
    drv = tls_driver(tmp_path)
    drv.store.save_certificate("ex.com", b"CHAIN\n", b"KEY\n")
    files = drv._files(CHANGE)
    user = naming.system_user("ex.com")
    assert files[0] == (transport_jobs.File(f"/etc/ssl/tenantctl/{user}/bundle.pem", None, 0o600), b"CHAIN\nKEY\n")
    includes = [f.dest for f, data in files[1:] if data is not None]
    assert includes and all(p.startswith(f"{render.TLS_DIR}/{user}.") for p in includes)
    # the layout before bundles is removed (removals run in reverse: after the includes moved on)
    assert [(f.dest, data) for f, data in files[-2:]] == [(p, None) for p in render.legacy_paths("ex.com")]
    # deleting: nothing is written, the includes go before the bundle they name
    gone = drv._files(base.Change("ex.com", "delete", DNS_SLICE))
    assert all(data is None for _f, data in gone) and gone[0][0].dest.endswith("/bundle.pem")
