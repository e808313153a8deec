"""The tenant databases' credentials, 0600 under ``<state>/db-credentials/<sub>/<db>.json``
(directories 0700).

A password is generated once (32 characters from ``secrets``) and written, atomically
and fsynced, BEFORE its login is created: a crash at any point leaves either no login
or a login whose password is on file. The file also says on which server and engine
the database lives, which is how a deletion (whose change carries only the
subscription's name) finds its databases.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.drivers import naming

DIR = "db-credentials"
_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class Credentials:
    subscription: str
    db: str
    engine: str
    server: str
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)

    def without_password(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("password")
        return d


def generate_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def sub_dir(state_dir: Path, sub: str) -> Path:
    naming.system_user(sub)  # validates the name: it becomes a directory
    if sub.startswith(".") or ".." in sub:
        raise ValueError(f"not a normalised domain: {sub!r}")
    return state_dir / DIR / sub


def path(state_dir: Path, sub: str, db: str) -> Path:
    naming.database(sub, db)  # validates db
    return sub_dir(state_dir, sub) / f"{db}.json"


def load(state_dir: Path, sub: str, db: str) -> Credentials | None:
    p = path(state_dir, sub, db)
    if not p.exists():
        return None
    return Credentials(**json.loads(p.read_text()))


def list_for(state_dir: Path, sub: str) -> list[Credentials]:
    """Every database of ``sub`` tenantctl created (and has not dropped yet)."""
    d = sub_dir(state_dir, sub)
    if not d.is_dir():
        return []
    return [Credentials(**json.loads(p.read_text())) for p in sorted(d.glob("*.json"))]


def save(state_dir: Path, creds: Credentials) -> None:
    """Write atomically (0600 temp file, fsync, rename, fsync the directory)."""
    d = _private_dir(sub_dir(state_dir, creds.subscription))
    _private_dir(d.parent)
    final = path(state_dir, creds.subscription, creds.db)
    tmp = final.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps(asdict(creds), indent=2, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, final)
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def ensure(state_dir: Path, sub: str, db: str, *, engine: str, server: str, host: str, port: int) -> Credentials:
    """The stored credentials of ``sub``'s ``db``, created (new password) when absent.

    Where a database lives is kept as first recorded; a new address or port of the
    same server is updated (the password never changes here).
    """
    old = load(state_dir, sub, db)
    if old is not None and old.engine == engine and old.server == server:
        if (old.host, old.port) != (host, port):
            old = Credentials(**{**asdict(old), "host": host, "port": port})
            save(state_dir, old)
        return old
    if old is not None:
        return old  # moved engine or server: the caller refuses it, nothing is overwritten
    creds = Credentials(subscription=sub, db=db, engine=engine, server=server, host=host, port=port,
                        database=naming.database(sub, db), user=naming.db_user(sub, db),
                        password=generate_password())
    save(state_dir, creds)
    return creds


def move(state_dir: Path, creds: Credentials, *, server: str, host: str, port: int) -> Credentials:
    """``creds`` re-pointed at another server (same database, login and password): the
    database is re-created there (region evacuation, DR-1)."""
    moved = Credentials(**{**asdict(creds), "server": server, "host": host, "port": port})
    save(state_dir, moved)
    return moved


def forget(state_dir: Path, sub: str, db: str) -> None:
    """Remove ``db``'s file (after its database and login were dropped)."""
    path(state_dir, sub, db).unlink(missing_ok=True)
    d = sub_dir(state_dir, sub)
    if d.is_dir() and not any(d.iterdir()):
        d.rmdir()
