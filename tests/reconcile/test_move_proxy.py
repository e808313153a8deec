"""The substitute's vhost (issue 13 item 2, DNS-4): once a move switched, the source
server's vhost forwards every request of every site to the target's address (HTTPS
upstream, with the site's name for SNI, where the plan sells SSL), keeps its ACME and TLS
hooks, and serves nothing from the old web space. (Live: tests/trixie/test_live.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.drivers.context import Context, Server
from controller.drivers.hosting import WebDriver, render
from controller.effective import spec

SUB = "ex.com"


def _slice(ssl: bool) -> Any:
    web = WebDriver(Context(Path("/nonexistent"), {"web-1": Server("web-1", "eu", "ssh", "192.0.2.10", ("web",), ())}))
    return web.slice(spec.sketch({"name": SUB, "region": "eu", "server": "web-1", "ip": "192.0.2.10",
                                  "effective": {"hosting": {"ssl": ssl},
                                                "sites": [{"name": "blog.ex.com", "type": "subdomain"}]}}))


@pytest.mark.parametrize(("ssl", "scheme"), [pytest.param(True, "https", id="ssl"),
                                             pytest.param(False, "http", id="no-ssl")])
def test_every_site_of_the_substitute_forwards_to_the_target(ssl: bool, scheme: str) -> None:
    sl = _slice(ssl)
    served = render.vhost(SUB, sl)
    text = render.vhost(SUB, sl, proxy_to="198.51.100.7")
    assert served is not None and text is not None
    assert text.count(f"proxy_pass {scheme}://198.51.100.7;") == 2  # the main domain and the subdomain
    assert text.count("proxy_set_header Host $host;") == 2 and text.count("proxy_ssl_name $host;") == 2
    assert "fastcgi_pass" in served and "fastcgi_pass" not in text and "root /srv/www" not in text
    assert text.count("listen 192.0.2.10:80;") == 2  # the source's own address
    assert text.count("include /etc/nginx/tenantctl-tls/") == 2  # HTTPS answers with its certificate
    assert ("acme-challenge" in text) == ssl
