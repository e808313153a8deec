"""Secret material tenantctl keeps under its state directory, made on first use.

``ssh_key``: tenantctl's own ed25519 key, the one root's ``authorized_keys`` holds on
every server. ``credentials``: the admin logins bootstrap creates on a server (MariaDB,
PostgreSQL, the PowerDNS API key) and the exporters' read-only monitoring logins,
generated once per server and kept 0600; the drivers read them to reach those services.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import string
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from controller.provisioning import errors

_ALPHABET = string.ascii_letters + string.digits
#: generated secrets (32 characters of ``[A-Za-z0-9]``) of every server
GENERATED = ("mariadb_admin_password", "postgresql_admin_password", "pdns_api_key",
             "mariadb_exporter_password", "postgresql_exporter_password")
#: fixed admin login names
USERS = {"mariadb_admin_user": "tenantctl", "postgresql_admin_user": "tenantctl"}


#: a server's name as secrets and certificates use it: one DNS label
SERVER_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def server_name(server: str) -> str:
    """``server``, checked to be a DNS label (it names files and certificates)."""
    if not isinstance(server, str) or not SERVER_NAME.match(server):
        raise ValueError(f"server name {server!r} is not a DNS label")
    return server


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_bytes(data)
    tmp.replace(path)


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can read (made if missing)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def ssh_key(state_dir: Path) -> Path:
    """tenantctl's own SSH private key for the servers (generated once, 0600)."""
    key = private_dir(state_dir / "ssh") / "id_ed25519"
    if not key.exists():
        done = subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tenantctl", "-f", str(key)],
            check=False, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise errors.ProvisioningError(f"ssh-keygen for {key} failed: {done.stderr.strip()}")
    key.chmod(0o600)
    return key


def credentials(state_dir: Path, server: str) -> dict[str, str]:
    """Generated credentials of one server (created on first use, kept 0600)."""
    path = private_dir(state_dir / "secrets") / f"{server}.json"
    with made_once(path.parent):
        creds: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if any(k not in creds for k in (*GENERATED, *USERS)):
            for key in GENERATED:
                creds.setdefault(key, "".join(secrets.choice(_ALPHABET) for _ in range(32)))
            for key, user in USERS.items():
                creds.setdefault(key, user)
            tmp = path.with_suffix(".tmp")
            tmp.touch(mode=0o600)
            tmp.chmod(0o600)
            tmp.write_text(json.dumps(creds, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)
        path.chmod(0o600)
    return creds


_MADE = threading.RLock()
_held = threading.local()


@contextlib.contextmanager
def made_once(directory: Path) -> Iterator[None]:
    """Serialise a read-generate-write of secrets kept in ``directory`` across threads
    and processes: two callers finding a password missing at once would each make one,
    and a repository or login set up with the loser's password breaks later. Re-entrant
    in one thread (a server certificate is made under the lock of the folder that also
    holds the CA it may have to make first)."""
    held: set[Path] = _held.__dict__.setdefault("dirs", set())
    key = directory.resolve()
    with _MADE:
        if key in held:
            yield
            return
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
                fcntl.flock(lock, fcntl.LOCK_UN)
