"""Pure decisions of the tls concern: which names, which challenge, whether a
certificate is due. No I/O (cert-manager style checks: inputs -> reason or None). How
long to back off after a failure is not decided here: the engine owns the one backoff."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from controller.drivers import slices


@dataclass(frozen=True)
class CertInfo:
    """What the driver knows of a stored certificate."""

    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    #: False when it no longer chains to the CA's current roots (the CA was replaced)
    anchored: bool = True


def names(sub: str, slice_: slices.Tls) -> list[str]:
    """The names one certificate covers: the domain and ``www.``, every subdomain site,
    every alias and its ``www.`` (the same names the vhost serves)."""
    out = [sub, f"www.{sub}"]
    for site, kind in sorted(dict(slice_["siteTypes"]).items()):
        out += [site, f"www.{site}"] if kind == "alias" else [site]
    return list(dict.fromkeys(out))


def challenge(sub: str, want: Sequence[str], default: str, dns01: Collection[str]
              ) -> tuple[Literal["http-01", "dns-01"], str]:
    """Which ACME challenge answers this subscription's order, and why: DNS-01 where
    HTTP-01 cannot work (wildcard names) or where the settings ask for it (for every
    subscription, or for this one); HTTP-01 through nginx otherwise."""
    wild = [n for n in want if n.startswith("*.")]
    if wild:
        return "dns-01", f"HTTP-01 cannot validate wildcard names ({', '.join(wild)})"
    if sub in dns01:
        return "dns-01", "DNS-01 set for this subscription"
    if default == "dns-01":
        return "dns-01", "DNS-01 set for every subscription"
    return "http-01", "HTTP-01 through nginx (the default)"


def wanted(slice_: slices.Tls) -> bool:
    """TLS-1: a certificate only where the plan sells SSL (and a vhost can serve it)."""
    return bool(slice_["ssl"]) and bool(slice_["enabled"])


def renew_at(cert: CertInfo, fraction: float) -> dt.datetime:
    return cert.not_before + (cert.not_after - cert.not_before) * fraction


def due(cert: CertInfo | None, want: Sequence[str], now: dt.datetime, fraction: float,
        ari_start: dt.datetime | None = None) -> str | None:
    """Why a (new) certificate must be ordered now, or None while the stored one is good.
    ``ari_start``: the start of the CA's suggested renewal window when it offers one."""
    if cert is None:
        return "no certificate yet"
    missing = sorted(set(want) - set(cert.names))
    if missing:
        return f"certificate does not cover {', '.join(missing)}"
    if now >= cert.not_after:
        return f"certificate expired at {cert.not_after.isoformat()}"
    if not cert.anchored:
        return "certificate does not chain to the CA's current roots (the CA was replaced)"
    if ari_start is not None and now >= ari_start:
        return f"inside the CA's renewal window (from {ari_start.isoformat()})"
    at = renew_at(cert, fraction)
    if ari_start is None and now >= at:
        return f"two thirds of the lifetime passed at {at.isoformat()} (expires {cert.not_after.isoformat()})"
    return None


def valid(cert: CertInfo | None, now: dt.datetime) -> bool:
    """Whether a certificate can still serve (a failed renewal keeps it in place)."""
    return cert is not None and cert.not_before <= now < cert.not_after
