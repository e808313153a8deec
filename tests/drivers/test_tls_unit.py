"""Pure parts of the tls driver: names, due-ness, backoff, the nginx include, the key
store's modes, error translation, metrics and the ``tls`` CLI (no servers, no CA)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import requests
from acme import messages
from typer.testing import CliRunner

from controller.cli import tls as tls_cli
from controller.drivers import naming
from controller.drivers.tls import ca, decide, metrics, render
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
