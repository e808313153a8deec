"""Pure parts of the tls driver: names, due-ness, backoff, the nginx include, the key
store's modes, error translation, metrics and the ``tls`` CLI (no servers, no CA)."""

from __future__ import annotations

import datetime as dt
import socket
import struct
import threading
from pathlib import Path

import pytest
import requests
from acme import messages
from typer.testing import CliRunner

from controller.cli import tls as tls_cli
from controller.drivers import naming
from controller.drivers.context import Context, Server
from controller.drivers.tls import ca, decide, dns01, metrics, render
from controller.drivers.tls import settings as settings_mod
from controller.drivers.tls import store as tls_store

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
    ])
    def test_due(self, info: decide.CertInfo | None, at: dt.datetime, expect: str | None) -> None:
        why = decide.due(info, self.want, at, 2 / 3)
        assert (why is None) if expect is None else (why is not None and expect in why)

    def test_the_ca_window_wins_over_two_thirds(self) -> None:
        window = T0 + dt.timedelta(days=70)
        assert decide.due(cert(), self.want, T0 + dt.timedelta(days=65), 2 / 3, window) is None
        assert "renewal window" in str(decide.due(cert(), self.want, window, 2 / 3, window))

    def test_backoff_doubles_and_is_capped(self) -> None:
        assert [decide.backoff(n, 60, 6 * 3600) for n in (0, 1, 2, 3, 9, 50)] == [0, 60, 120, 240, 15360, 21600]


class TestRender:
    def test_one_include_per_server_block_matching_the_vhost_hook(self) -> None:
        files = render.files("ex.com", SLICE, True)
        user = naming.system_user("ex.com")
        assert sorted(files) == sorted(f"/etc/nginx/tenantctl-tls/{user}.{s}.conf"
                                       for s in ("ex.com", "blog.ex.com", "alias.org"))
        text = files[f"/etc/nginx/tenantctl-tls/{user}.ex.com.conf"]
        assert text is not None and "listen 127.0.40.1:443 ssl;" in text and "return 301" not in text
        assert f"ssl_certificate /etc/ssl/tenantctl/{user}/fullchain.pem;" in text

    def test_https_only_redirects_but_not_acme(self) -> None:
        text = render.include("ex.com", "ex.com", {**SLICE, "httpsOnly": True})
        assert "return 301 https://$host$request_uri;" in text and "acme-challenge" in text

    def test_no_certificate_no_include(self) -> None:
        assert set(render.files("ex.com", SLICE, False).values()) == {None}

    def test_unsafe_names_are_refused(self) -> None:
        with pytest.raises(ValueError, match="refusing"):
            render.include_path("ex.com", "bad name;")


class TestStore:
    def test_keys_and_state_are_private(self, tmp_path: Path) -> None:
        st = tls_store.Store(tmp_path)
        st.save_certificate("ex.com", b"chain", b"key")
        st.set_status("ex.com", {"failures": 1, "next_attempt": T0.isoformat()})
        for p in (tmp_path / "tls" / "certs" / "ex.com").iterdir():
            assert p.stat().st_mode & 0o777 == 0o600, p
        assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700

    def test_cli_renew_requests_a_renewal_and_clears_backoff(self, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path))
        st = tls_store.Store(tmp_path)
        st.set_status("ex.com", {"failures": 3, "next_attempt": T0.isoformat()})
        result = CliRunner().invoke(tls_cli.tls_app, ["renew", "ex.com"])
        assert result.exit_code == 0, result.output
        assert st.forced("ex.com") and st.status("ex.com")["next_attempt"] is None
        assert CliRunner().invoke(tls_cli.tls_app, ["renew", "../etc"]).exit_code == 2


class TestErrors:
    def test_the_cas_words_are_kept(self) -> None:
        err = messages.Error.with_code("connection", detail="Connection refused")
        assert ca.reason(err) == "Connection refused (connection)"
        assert ca.reason(requests.ConnectionError("boom")).startswith("CA unreachable: boom")

    def test_every_backend_error_becomes_order_failed(self) -> None:
        c = ca.CA.__new__(ca.CA)
        for exc in (messages.Error.with_code("rateLimited", detail="slow down"),
                    requests.Timeout("t"), ValueError("bad pem")):
            with pytest.raises(ca.OrderFailed), c._translated():
                raise exc


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
    from controller.drivers import base
    from controller.drivers.tls import TlsDriver

    drv = TlsDriver(Context(tmp_path, DNS_SERVERS),
                    settings_mod.Settings(directory="https://ca.invalid/dir", dns01=frozenset({"ex.com"})))
    sl = {**DNS_SLICE, "dns": {"mode": "secondary", "primaries": ["192.0.2.53"]}}
    change = base.Change("ex.com", "ensure", sl)
    out = drv._issue("drv-a", [(change, decide.names("ex.com", sl), "no certificate yet")], T0)
    assert out["ex.com"].outcome == "failed"
    assert "the customer's (dns mode secondary" in out["ex.com"].message
    assert "(DNS-01 set for this subscription)" in out["ex.com"].message
    assert drv.counters.total_requests == 0
    assert drv.store.status("ex.com")["failures"] == 1
