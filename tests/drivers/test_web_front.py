"""The web front as a careful host configures it (issue 14 point 5), through curl and
openssl against a TLS site on the embedded servers (Pebble's certificates): HTTP/2 on
TLS, no nginx version in any response, HSTS on an httpsOnly site (over HTTPS only),
TLS 1.2 and 1.3 only, and the default page dated when it was made, not 1970.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import test_tls
from .conftest import Cluster

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(300)]

IP = test_tls.IP


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path) -> Iterator[test_tls.Env]:
    e = test_tls.Env(cluster, tmp_path)
    try:
        yield e
    finally:
        e.close()


def head(url: str, name: str, port: int, bundle: str, *extra: str) -> tuple[str, dict[str, str], str]:
    """(HTTP version, lower-cased headers, body) of a GET."""
    out = subprocess.run(["curl", "-sS", "-m", "10", "--cacert", bundle, "--resolve", f"{name}:{port}:{IP}",
                          "-D", "-", "-o", "-", *extra, url], capture_output=True, check=True).stdout.decode()
    top, _, body = out.partition("\r\n\r\n")
    status, *lines = top.split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status.split()[0], headers, body


def s_client(name: str, bundle: str, *version: str) -> subprocess.CompletedProcess[str]:
    # the client's own floor lowered (SECLEVEL=0): only the server may refuse TLS 1.0/1.1
    return subprocess.run(["openssl", "s_client", "-servername", name, "-connect", f"{IP}:443", "-CAfile", bundle,
                           "-cipher", "DEFAULT@SECLEVEL=0", *version], input="", capture_output=True, text=True,
                          timeout=20, check=False)


def test_tls_sites_speak_http2_send_hsts_hide_nginx_version_and_date_the_default_page(
        env: test_tls.Env) -> None:
    domain = f"t{uuid.uuid4().hex[:10]}.{test_tls.SUFFIX}"
    env.https_only = True
    env.sub(domain)
    made = dt.datetime.now(dt.UTC)
    report = env.reconcile()
    assert report.ok, report.failed
    version, headers, body = head(f"https://{domain}/index.html", domain, 443, env.bundle, "--http2")
    assert version == "HTTP/2", version
    assert "This site is ready" in body
    assert headers.get("strict-transport-security") == "max-age=31536000"
    assert headers.get("server") == "nginx"  # server_tokens off: no version
    # the default page is dated when the web space was made (not 1970)
    modified = email.utils.parsedate_to_datetime(headers["last-modified"])
    assert abs((modified - made).total_seconds()) < 300, headers["last-modified"]
    # plain HTTP: the redirect, without HSTS (meaningless there) and without a version
    version, headers, body = head(f"http://{domain}/", domain, 80, env.bundle)
    assert headers.get("location", "").startswith("https://") and "strict-transport-security" not in headers
    assert headers.get("server") == "nginx" and "nginx/" not in body
    # an error page carries no version either
    _, headers, body = head(f"https://{domain}/missing-{uuid.uuid4().hex}", domain, 443, env.bundle)
    assert "nginx/" not in body and headers.get("server") == "nginx"
    # TLS 1.2 and 1.3 only (Mozilla's intermediate profile)
    assert s_client(domain, env.bundle, "-tls1_2").returncode == 0
    assert s_client(domain, env.bundle, "-tls1_3").returncode == 0
    assert s_client(domain, env.bundle, "-tls1_1").returncode != 0


def test_a_tls_site_without_https_only_sends_no_hsts(env: test_tls.Env) -> None:
    domain = f"t{uuid.uuid4().hex[:10]}.{test_tls.SUFFIX}"
    env.sub(domain)
    report = env.reconcile()
    assert report.ok, report.failed
    version, headers, _ = head(f"https://{domain}/", domain, 443, env.bundle, "--http2")
    assert version == "HTTP/2" and "strict-transport-security" not in headers
