"""Web statistics (LOG-1, issue 14 point 3): GoAccess, from the image, turns the
subscription's access log into an HTML report every hour (a cron file per subscription),
served at ``/webstat/`` of each of its sites behind HTTP basic authentication.

The report lives outside the web space, ``/var/lib/tenantctl/stats/<user>/`` (root
writes it, nginx reads it: root:www-data 0750, made by the hosting agent), so a tenant
cannot swap a link in where root writes. The login is ``stats``; its password is
generated once and kept 0600 in ``<state>/webstats-credentials/<domain>.json`` (with
the salt of its SHA-512 crypt hash, so the rendered file is the same on every pass); the
server only gets the hash, in ``/etc/nginx/tenantctl-stats/<user>.htpasswd``
(directory root:www-data 0750).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from controller.drivers import naming
from controller.drivers.hosting import ftp

STATS_DIR = "/var/lib/tenantctl/stats"
HTPASSWD_DIR = "/etc/nginx/tenantctl-stats"
CRON_DIR = "/etc/cron.d"
LOGIN = "stats"
LOCATION = "/webstat/"


def report_dir(sub: str) -> str:
    return f"{STATS_DIR}/{naming.system_user(sub)}"


def htpasswd_path(sub: str) -> str:
    return f"{HTPASSWD_DIR}/{naming.system_user(sub)}.htpasswd"


def cron_path(sub: str) -> str:
    return f"{CRON_DIR}/tenantctl-stats-{naming.system_user(sub)}"


def minute(sub: str) -> int:
    """The minute of the hour the report is made (spread over the hour by name)."""
    return hashlib.blake2b(sub.encode(), digest_size=2).digest()[0] % 60


def credentials_path(state_dir: Path, sub: str) -> Path:
    return state_dir / "webstats-credentials" / f"{naming.home(sub).rsplit('/', 1)[1]}.json"


def password(state_dir: Path, sub: str) -> str:
    """The ``stats`` login's password (generated once)."""
    return ftp.record(credentials_path(state_dir, sub), True)["password"]


def htpasswd(state_dir: Path, sub: str) -> str:
    rec = ftp.record(credentials_path(state_dir, sub), True)
    return f"{LOGIN}:{ftp.crypt(rec['password'], rec['salt'])}\n"
