"""Names on servers derived from a subscription: one place for each of them.

A subscription is bound for life to one system user (domain.md section 1); its
databases are server-wide names, so two subscriptions may both declare ``app``. Every
name here is a pure function of the subscription's (ASCII) domain and is safe in file
names, shell arguments and SQL identifiers (``[a-z0-9_.-]`` only).

Names that two concerns share live here, not in either concern: the ACME challenge
directory (the web concern's vhost serves it, the tls concern writes it), the TLS
include of a site (the vhost's TLS hook includes it, the tls concern writes it), the
certificate bundle it names and the web logs (the web concern writes them, the usage
collection reads them).
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"^[a-z0-9.-]{1,253}$")


def _h(text: str, n: int) -> str:
    return hashlib.blake2b(text.encode(), digest_size=n).hexdigest()


def _check(sub: str) -> str:
    if not _SAFE.match(sub):
        raise ValueError(f"not a normalised domain: {sub!r}")
    return sub


def system_user(sub: str) -> str:
    """The subscription's Unix user: ``w`` + 10 hex digits (stable, <= 32 chars)."""
    return "w" + _h(_check(sub), 5)


def home(sub: str) -> str:
    """The subscription's home: its web space (LIFE-7) lives below it."""
    return f"/srv/www/{_check(sub)}"


def logs_dir(sub: str) -> str:
    """LOG-1: the subscription's web logs, in its web space (``~/logs`` over SFTP). The
    web concern writes them (vhost, logrotate), the usage collection reads them."""
    return f"{home(sub)}/logs"


def docroot(sub: str, site: str | None = None) -> str:
    """Document root of the main domain (``httpdocs``) or of a subdomain/alias site."""
    return f"{home(sub)}/httpdocs" if site is None else f"{home(sub)}/sites/{_check(site)}"


def fpm_pool(sub: str) -> str:
    """PHP-FPM pool name (one pool per subscription, PHP-1)."""
    return system_user(sub)


def fpm_socket(sub: str) -> str:
    return f"/run/php/tenantctl-{fpm_pool(sub)}.sock"


def database(sub: str, db: str) -> str:
    """Server-wide database name of the subscription's database ``db``."""
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", db):
        raise ValueError(f"not a database name: {db!r}")
    return f"{db}_{_h(_check(sub), 4)}"


def db_user(sub: str, db: str) -> str:
    """The login of that database (its own user, grants on it only)."""
    return f"u{_h(_check(sub) + '/' + db, 6)}"


ACME_DIR = "/var/lib/tenantctl-acme"
#: one vhost per tenant (``<user>.conf``)
NGINX_DIR = "/etc/nginx/tenantctl"
TLS_DIR = "/etc/nginx/tenantctl-tls"
CERT_DIR = "/etc/ssl/tenantctl"


def acme_root(sub: str) -> str:
    """Where HTTP-01 challenge files of the subscription are served from
    (``<root>/.well-known/acme-challenge/<token>``)."""
    return f"{ACME_DIR}/{system_user(sub)}"


def tls_include(sub: str, site: str) -> str:
    """The TLS include of one server block (named by its first name): the vhost
    template's hook includes ``<TLS_DIR>/<user>.<first name>.conf*``."""
    return f"{TLS_DIR}/{system_user(sub)}.{_check(site)}.conf"


def tls_bundle(sub: str) -> str:
    """The subscription's certificate: full chain followed by its private key (0600)."""
    return f"{CERT_DIR}/{system_user(sub)}/bundle.pem"


def tls_legacy(sub: str) -> list[str]:
    """Where chain and key were kept apart before bundles (removed when found)."""
    return [f"{CERT_DIR}/{system_user(sub)}/fullchain.pem", f"{CERT_DIR}/{system_user(sub)}/privkey.pem"]


# --- access (issue 14) ------------------------------------------------------------------

#: the supplementary group of every tenant user: sshd's ``Match Group`` chroots its
#: members in their web space, SFTP only, keys from ``SSH_KEYS_DIR``
SFTP_GROUP = "tenantctl-sftp"
#: root-owned, one file per tenant user (``AuthorizedKeysFile /etc/ssh/tenantctl-keys/%u``)
SSH_KEYS_DIR = "/etc/ssh/tenantctl-keys"
SSH_PORT = 22


def ssh_keys(sub: str) -> str:
    """The subscription's authorized_keys file (root-owned, 0644; absent: no login)."""
    return f"{SSH_KEYS_DIR}/{system_user(sub)}"


def sftp_login(sub: str, address: str) -> str:
    """``USER@HOST:PORT`` of the subscription's SFTP access (the status' ``access.sftp``)."""
    host = f"[{address}]" if ":" in address else address
    return f"{system_user(sub)}@{host}:{SSH_PORT}"
