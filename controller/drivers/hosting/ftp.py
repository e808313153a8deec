"""FTPS accounts of the web space (issue 14 point 2): logins, passwords, the per-tenant
file the hosting agent turns into pure-ftpd's PureDB.

Each account ``{name, passwordRef}`` of ``spec.access.ftpUsers`` logs in as
``<name>@<domain>`` (unique across subscriptions by construction), chrooted in the
tenant's web space with the tenant's uid and gid, over explicit TLS only (the role's
pure-ftpd runs with ``-Y 3``). Passwords never leave this module but as a SHA-512 crypt
hash:

- ``passwordRef: NAME``: the first line of ``<state>/secrets/ftp/NAME`` (the operator's
  file; a missing or empty file fails the subscription's web apply, naming the file);
- no ``passwordRef``: generated once (24 characters), kept 0600 in
  ``<state>/ftp-credentials/<domain>/<name>.json`` with the hash's salt.

The hash is made with the host's ``openssl passwd -6`` (Python's ``crypt`` is
deprecated) and a salt kept with the credentials, so the rendered file is the same
on every pass (drift is a digest). ``fragment`` is the pure part: one
``login:hash`` line per account, every field checked.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import string
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from controller.drivers import naming
from controller.model import validate as model_validate

#: the hosting agent builds ``PASSWD``/``PUREDB`` from these per-tenant files
FRAGMENT_DIR = "/etc/pure-ftpd/tenantctl"
PASSWD = "/etc/pure-ftpd/tenantctl.passwd"
PUREDB = "/etc/pure-ftpd/tenantctl.pdb"
PORT = 21

_LOGIN_NAME = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")  # = kinds.FTP_USER_NAME
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # = kinds.FTP_PASSWORD_REF
_HASH = re.compile(r"^\$6\$[A-Za-z0-9./]{1,16}\$[A-Za-z0-9./]{86}$")
_SALT_CHARS = string.ascii_letters + string.digits + "./"
_PW_CHARS = string.ascii_letters + string.digits


class User(TypedDict):
    name: str
    passwordRef: str | None


def fragment_path(sub: str) -> str:
    return f"{FRAGMENT_DIR}/{naming.system_user(sub)}.passwd"


def login(sub: str, name: str) -> str:
    """The account's login on the server (``name@domain``), checked."""
    if not _LOGIN_NAME.fullmatch(name):
        raise ValueError(f"not an FTP user name: {name!r}")
    return f"{name}@{naming.home(sub).rsplit('/', 1)[1]}"


def address(host: str) -> str:
    return f"{host}:{PORT}"


def over_limit(users: Sequence[User], limit: Any) -> str | None:
    """The resource-limit message when there are more accounts than the effective
    ``ftpAccounts`` (the model's rule, ``validate.ftp_accounts_over``: ``validate`` and
    ``plan`` refuse what the documents decide; this catches what only the effective spec
    knows, e.g. a locked subscription's recorded plan)."""
    problem = model_validate.ftp_accounts_over(len(users), limit)
    if problem is None:
        return None
    return f"{problem}; nothing of this subscription's web configuration was applied"


def fragment(sub: str, hashes: Mapping[str, str]) -> str | None:
    """The tenant's file: ``login:hash`` per account (sorted), None without accounts."""
    if not hashes:
        return None
    lines = [f"# Managed by tenantctl: FTP accounts of {naming.system_user(sub)}. Do not edit."]
    for name in sorted(hashes):
        if not _HASH.fullmatch(hashes[name]):
            raise ValueError(f"refusing to render a malformed password hash for {name!r}")
        lines.append(f"{login(sub, name)}:{hashes[name]}")
    return "\n".join(lines) + "\n"


# --- credentials (I/O under the state directory) ---------------------------------------


class CredentialError(Exception):
    """A referenced password file is missing, unreadable or empty."""


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def credentials_path(state_dir: Path, sub: str, name: str) -> Path:
    if not _LOGIN_NAME.fullmatch(name):
        raise ValueError(f"not an FTP user name: {name!r}")
    return state_dir / "ftp-credentials" / naming.home(sub).rsplit("/", 1)[1] / f"{name}.json"


def _record(state_dir: Path, sub: str, name: str, generate: bool) -> dict[str, str]:
    return record(credentials_path(state_dir, sub, name), generate)


def record(path: Path, generate: bool) -> dict[str, str]:
    """A credentials file (0600, directory 0700): its salt made once, its password too
    when ``generate``."""
    try:
        rec: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        rec = {}
    changed = False
    if "salt" not in rec:
        rec["salt"] = "".join(secrets.choice(_SALT_CHARS) for _ in range(16))
        changed = True
    if generate and "password" not in rec:
        rec["password"] = "".join(secrets.choice(_PW_CHARS) for _ in range(24))
        changed = True
    if changed:
        _write_private(path, json.dumps(rec))
    return rec


def password(state_dir: Path, sub: str, user: User) -> str:
    """The account's password (generated once, or read from its reference)."""
    ref = user["passwordRef"]
    if ref is None:
        return _record(state_dir, sub, user["name"], True)["password"]
    if not _REF.fullmatch(ref):
        raise CredentialError(f"passwordRef {ref!r} is not a file name")
    path = state_dir / "secrets" / "ftp" / ref
    try:
        first = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CredentialError(f"FTP user {user['name']}: passwordRef {ref}: cannot read {path}: "
                              f"{exc.strerror}") from None
    if not first or not first[0].strip():
        raise CredentialError(f"FTP user {user['name']}: passwordRef {ref}: {path} is empty")
    return first[0].strip()


@functools.lru_cache(maxsize=4096)
def crypt(secret: str, salt: str) -> str:
    """SHA-512 crypt of ``secret`` (what pure-ftpd and nginx's auth_basic check with libc)."""
    done = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=secret,
                          capture_output=True, text=True, timeout=30, check=False)
    out = done.stdout.strip()
    if done.returncode != 0 or not _HASH.fullmatch(out):
        raise CredentialError(f"openssl passwd failed (exit {done.returncode})")
    return out


def hashes(state_dir: Path, sub: str, users: Sequence[User]) -> dict[str, str]:
    """``{name: SHA-512 crypt hash}`` of the accounts (raises ``CredentialError``)."""
    out = {}
    for u in users:
        secret = password(state_dir, sub, u)
        if "\n" in secret or "\x00" in secret:
            raise CredentialError(f"FTP user {u['name']}: the password holds a line break")
        out[u["name"]] = crypt(secret, _record(state_dir, sub, u["name"], False)["salt"])
    return out
