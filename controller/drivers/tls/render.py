"""Pure rendering of what the tls concern installs on a web server: per site of the
subscription's vhost, an nginx include (``listen <ip>:443 ssl``, the certificate, and
for ``httpsOnly`` the 301 of plain HTTP except ACME challenges), dropped where the vhost
template's TLS hook includes it; plus the certificate and key paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.drivers import naming
from controller.drivers.hosting import render as hosting_render

TLS_DIR = "/etc/nginx/tenantctl-tls"
CERT_DIR = "/etc/ssl/tenantctl"
ACME_DIR = hosting_render.ACME_DIR


def cert_path(sub: str) -> str:
    return f"{CERT_DIR}/{naming.system_user(sub)}/fullchain.pem"


def key_path(sub: str) -> str:
    return f"{CERT_DIR}/{naming.system_user(sub)}/privkey.pem"


def sites(sub: str, slice_: Mapping[str, Any]) -> list[str]:
    """The first name of each server block of the vhost (the domain, then every site)."""
    return [sub, *sorted(slice_["siteTypes"])]


def include_path(sub: str, site: str) -> str:
    """Matches the vhost template's hook ``<TLS_DIR>/<user>.<first name>.conf*``."""
    return f"{TLS_DIR}/{naming.system_user(sub)}.{hosting_render.ng(site)}.conf"


def include(sub: str, site: str, slice_: Mapping[str, Any]) -> str:
    return hosting_render.template("nginx/tls.conf.j2").render(
        sub=sub, site=site, ip=slice_["ip"], cert=cert_path(sub), key=key_path(sub),
        https_only=bool(slice_["httpsOnly"]))


def files(sub: str, slice_: Mapping[str, Any], installed: bool) -> dict[str, str | None]:
    """``{path: text or None}`` of the includes: present only with a certificate."""
    return {include_path(sub, s): include(sub, s, slice_) if installed else None for s in sites(sub, slice_)}
