"""Pure rendering of what the tls concern installs on a web server: per site of the
subscription's vhost, an nginx include (``listen <ip>:443 ssl``, the certificate, and
for ``httpsOnly`` the 301 of plain HTTP except ACME challenges), dropped where the vhost
template's TLS hook includes it; plus where the certificate goes: ONE file holding the
chain and its key (0600; nginx reads the key from the same file), so that replacing it
is atomic and no instant pairs a new chain with an old key. Paths shared with the web
concern come from ``naming``; every value rendered goes through ``ng`` (refused unless
plainly safe in an nginx file)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import jinja2

from controller.drivers import naming, slices

TEMPLATE = Path(__file__).resolve().parents[3] / "templates" / "nginx" / "tls.conf.j2"
TLS_DIR = naming.TLS_DIR

_TOKEN = re.compile(r"^[A-Za-z0-9._:/-]+$")


def ng(value: object) -> str:
    """An nginx token (address, name, path), or ValueError."""
    if not _TOKEN.match(text := str(value)):
        raise ValueError(f"refusing to render {text!r} into an nginx file")
    return text


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["ng"] = ng
    return env.from_string(TEMPLATE.read_text())


def sources() -> list[Path]:
    """The template and the code that render the include."""
    return [TEMPLATE, Path(__file__).resolve()]


def bundle_path(sub: str) -> str:
    return naming.tls_bundle(sub)


def legacy_paths(sub: str) -> list[str]:
    return naming.tls_legacy(sub)


def sites(sub: str, slice_: slices.Tls) -> list[str]:
    """The first name of each server block of the vhost (the domain, then every site)."""
    return [sub, *sorted(slice_["siteTypes"])]


def include_path(sub: str, site: str) -> str:
    return naming.tls_include(sub, ng(site))


def include(sub: str, site: str, slice_: slices.Tls) -> str:
    return _template().render(sub=sub, site=site, ip=slice_["ip"], cert=bundle_path(sub), key=bundle_path(sub),
                              https_only=bool(slice_["httpsOnly"]))


def files(sub: str, slice_: slices.Tls, installed: bool) -> dict[str, str | None]:
    """``{path: text or None}`` of the includes: present only with a certificate."""
    return {include_path(sub, s): include(sub, s, slice_) if installed else None for s in sites(sub, slice_)}
