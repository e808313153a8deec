"""Secrets and fixed names of MariaDB point-in-time recovery (issue 10, BKP-4).

What belongs here: the replication login the binary-log archivers use on every
``db-mariadb`` server (its name, and per source server a generated password kept 0600
under ``<state>/secrets/binlog/<server>.json``), the ``server-id`` each MariaDB server
gets and the replica id each archiver uses (both derived from addresses, deterministic;
``mariadb.cnf.j2`` computes the same ``server-id``), and the fixed paths, Unix user and
service name that the ``tenantctl_server`` role sets up on every ``backup`` server.
Nothing here touches a server.

What does not: which repository servers archive which source (``drivers.backup.binlog``),
running the archivers (the ``binlog`` agent entry).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import string
from pathlib import Path

from controller.provisioning import keys

#: the MariaDB login of the archivers (REPLICATION SLAVE, BINLOG MONITOR; from the
#: archiving repository servers' addresses only)
LOGIN = "tenantctl_binlog"
#: the Unix user (and group) that runs the archivers and owns the archive
USER = "tenantctl-binlog"
#: one directory per source server below it: ``<ARCHIVE_ROOT>/<source>/mariadb-bin.NNNNNN``
ARCHIVE_ROOT = "/var/lib/tenantctl-binlog"
#: the archivers' configuration (sources.json, one option file per source)
ETC = "/etc/tenantctl-binlog"
#: the SysV service of the archivers' supervisor
SERVICE = "tenantctl-binlog"
#: basename of the binary logs (``log-bin`` in mariadb.cnf.j2)
BASENAME = "mariadb-bin"
#: days a MariaDB server keeps its binary logs (longer than the nightly interval)
EXPIRE_DAYS = 7

_PASSWORD = re.compile(r"^[A-Za-z0-9]{24,}$")
_ALPHABET = string.ascii_letters + string.digits
_MAX_ID = 2**32 - 1



def server_id(address: str) -> int:
    """The MariaDB ``server-id`` of the server at ``address``: an IPv4 address as its
    32-bit number, any other address from its SHA-1 (never 0). mariadb.cnf.j2 computes
    the same value."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return int(ip) or 1
    return int(hashlib.sha1(address.encode()).hexdigest()[:8], 16) or 1


def archiver_id(archiver: str, source: str) -> int:
    """The replica id an archiver on repository server ``archiver`` presents to
    ``source`` (two archivers of one source must differ: MariaDB drops a dump thread
    when another replica registers with the same id)."""
    digest = hashlib.sha1(f"tenantctl-binlog:{keys.server_name(archiver)}:{keys.server_name(source)}".encode())
    return (int(digest.hexdigest()[:8], 16) % (_MAX_ID - 1)) + 1


def _secrets_dir(state_dir: Path) -> Path:
    keys.private_dir(state_dir / "secrets")
    return keys.private_dir(state_dir / "secrets" / "binlog")


def password(state_dir: Path, source: str) -> str:
    """The archivers' password on ``source`` (made on first use, kept 0600)."""
    path = _secrets_dir(state_dir) / f"{keys.server_name(source)}.json"
    with keys.made_once(path.parent):
        if path.exists():
            doc = json.loads(path.read_text())
            value = doc.get("password") if isinstance(doc, dict) else None
            if isinstance(value, str) and _PASSWORD.match(value):
                return value
        value = "".join(secrets.choice(_ALPHABET) for _ in range(32))
        keys.write_private(path, json.dumps({"password": value}).encode())
    return value
