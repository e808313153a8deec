"""What the tls driver lets an operator choose (one dataclass, a docstring per field)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from controller.provisioning import acme

Challenge = Literal["http-01", "dns-01"]


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


@dataclass(frozen=True)
class Settings:
    """ACME settings of the tls driver."""

    directory: str = field(default_factory=lambda: _env("TENANTCTL_ACME_DIRECTORY", ""))
    """The CA's directory URL (env ``TENANTCTL_ACME_DIRECTORY``); empty: the embedded Pebble of
    the state directory (``resolved``)."""
    ca_bundle: str | None = field(default_factory=lambda: os.environ.get("TENANTCTL_ACME_CA_BUNDLE") or None)
    """File of CAs to verify the directory's HTTPS with (env ``TENANTCTL_ACME_CA_BUNDLE``);
    None: the embedded Pebble's bundle for its directory, the system's trust otherwise."""
    roots: str | None = field(default_factory=lambda: os.environ.get("TENANTCTL_ACME_ROOTS") or None)
    """File of the CA's current root certificates (env ``TENANTCTL_ACME_ROOTS``): a stored
    certificate that does not chain to one of them is re-issued at the next pass (the CA was
    replaced, or rotated its roots). None: the embedded Pebble's bundle for its directory
    (Pebble makes a new root at every start), no check otherwise."""
    account: str = "default"
    """Name of the ACME account (key) to use under the state dir: tests use fresh ones."""
    email: str | None = field(default_factory=lambda: os.environ.get("TENANTCTL_ACME_EMAIL") or None)
    """Contact of the account (env ``TENANTCTL_ACME_EMAIL``)."""
    challenge: Challenge = field(
        default_factory=lambda: "dns-01" if _env("TENANTCTL_ACME_CHALLENGE", "http-01") == "dns-01" else "http-01")
    """Challenge type (env ``TENANTCTL_ACME_CHALLENGE``): HTTP-01 through nginx by default;
    ``dns-01`` through the PowerDNS API for every subscription."""
    dns01: frozenset[str] = field(default_factory=lambda: frozenset(
        n.strip() for n in os.environ.get("TENANTCTL_ACME_DNS01", "").split(",") if n.strip()))
    """Subscriptions answered with DNS-01 whatever ``challenge`` says (env
    ``TENANTCTL_ACME_DNS01``, comma-separated). Names HTTP-01 cannot validate (wildcards)
    take DNS-01 anyway."""
    dns01_resolvers: tuple[str, ...] = field(default_factory=lambda: tuple(
        r.strip() for r in os.environ.get("TENANTCTL_ACME_DNS01_RESOLVERS", "").split(",") if r.strip()))
    """``IP[:port]`` of the DNS servers that must answer a DNS-01 TXT before the challenge is
    answered (env ``TENANTCTL_ACME_DNS01_RESOLVERS``); empty: every dns server of the zone
    (primary and secondaries: the CA may ask any of them)."""
    dns01_timeout: float = 20.0
    """Seconds the DNS-01 TXT records may take to be served everywhere checked."""
    dns01_ttl: int = 60
    """TTL of the DNS-01 TXT records."""
    dns_api_port: int = 8081
    """The PowerDNS API port of the dns servers (the dns driver's ``api_port``)."""
    renew_fraction: float = 2 / 3
    """Renew once this fraction of the certificate's lifetime has passed (``tenantctl tls
    status`` shows the renewal time from it)."""
    concurrency: int = 8
    """Orders in flight at once per server batch."""
    poll_interval: float = 0.05
    """Seconds between polls of authorizations and orders (the library's loop sleeps 1 s)."""
    order_timeout: float = 90.0
    """Seconds an order may take from creation to certificate."""
    rate_wait: float = 30.0
    """Seconds to wait for a token of the CA's bucket before deferring a renewal (also
    the retry hint of a renewal deferred so)."""

    def resolved(self, state_dir: Path) -> Settings:
        """These settings with the state directory's default CA filled in when none is set
        (``provisioning.acme``: the embedded environment records its Pebble there)."""
        ca = acme.default(state_dir)
        if self.directory:
            if self.roots is None and ca is not None and ca.directory == self.directory and ca.ca_bundle:
                return dataclasses.replace(self, roots=ca.ca_bundle)
            return self
        if ca is None:
            return self
        return dataclasses.replace(self, directory=ca.directory, ca_bundle=self.ca_bundle or ca.ca_bundle,
                                   roots=self.roots or ca.ca_bundle)

    def verify(self, state_dir: Path) -> str | bool:
        """What to give ``requests`` as ``verify`` for the directory's HTTPS."""
        if self.ca_bundle:
            return self.ca_bundle
        ca = acme.default(state_dir)
        if ca is not None and ca.directory == self.directory and ca.ca_bundle:
            return ca.ca_bundle
        return True

    @property
    def rate_key(self) -> str:
        """The key of this CA's bucket in ``RateLimits``."""
        return f"acme:{self.directory}"
