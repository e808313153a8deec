"""Pure decisions of the db driver: what a server has (``Observed``, gathered in one
query per server and engine) against what a subscription wants (``Wanted``) gives the
``Step``s to take, in order. No I/O here: the engines' modules gather and act.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Literal

#: Server-side names tenantctl creates (naming.database / naming.db_user): the only
#: text ever put into SQL as an identifier, and only after this check.
_IDENT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

StepKind = Literal["create_user", "set_password", "create_database", "grant", "revoke_public", "lock", "unlock"]

#: What each step repairs, as drift reports say it.
DRIFT = {
    "create_user": "user missing",
    "set_password": "password differs from the stored one",
    "create_database": "database missing",
    "grant": "grant on its database missing",
    "revoke_public": "PUBLIC may connect to it",
    "lock": "user not locked (suspended)",
    "unlock": "user locked (active)",
}


def ident(name: str) -> str:
    """``name`` if it is a safe identifier (whitelist), else ValueError: never format
    unchecked text into SQL."""
    if not _IDENT.fullmatch(name):
        raise ValueError(f"refusing unsafe SQL identifier {name!r}")
    return name


@dataclass(frozen=True)
class Login:
    """A tenant login as the server has it."""

    #: the stored password verifier (MariaDB native hash, PostgreSQL SCRAM secret)
    verifier: str
    locked: bool


@dataclass
class Observed:
    """What one server's engine has of tenantctl's databases and logins."""

    #: server-side database name -> size in bytes
    databases: dict[str, int] = field(default_factory=dict)
    logins: dict[str, Login] = field(default_factory=dict)
    #: (database, user) pairs where the user has all rights on the database
    grants: set[tuple[str, str]] = field(default_factory=set)
    #: databases PUBLIC may connect to (PostgreSQL; hardening of postgres/template1 too)
    public: set[str] = field(default_factory=set)
    #: databases a move's freeze keeps read-only (PostgreSQL: owned by their holder role;
    #: MariaDB: the login has the frozen grant): their rights are the move's to give back
    frozen: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Wanted:
    """One tenant database as the desired state and the credentials store say."""

    sub: str
    db: str
    engine: str
    server: str
    database: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Step:
    kind: StepKind
    database: str
    user: str
    password: str = field(default="", repr=False)


# --- password verifiers (compared without ever sending the password) ------------


def mariadb_native_hash(password: str) -> str:
    """MariaDB's ``mysql_native_password`` hash: ``*`` + upper hex of SHA1(SHA1(pw))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


def scram_verifier(password: str, salt: bytes, iterations: int = 4096) -> str:
    """A PostgreSQL ``SCRAM-SHA-256`` secret (what ``rolpassword`` stores)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def password_matches(engine: str, verifier: str, password: str) -> bool:
    if engine == "mariadb":
        return hmac.compare_digest(verifier.upper(), mariadb_native_hash(password))
    m = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    if not m:
        return False
    try:
        salt = base64.b64decode(m.group(2), validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(scram_verifier(password, salt, int(m.group(1))), verifier)


# --- the decision ----------------------------------------------------------------


def steps(want: Wanted, obs: Observed, *, locked: bool) -> list[Step]:
    """What to do so that the server has ``want`` (locked when suspended, LIFE-2).

    Empty when it already does: a second apply issues no statement at all. The
    password is compared through the server's verifier, so a crash between storing
    it and creating the login converges without changing it twice. A database a move
    froze (``Observed.frozen``) gets no grant: ``driver.freeze`` gives its rights back.
    """
    out: list[Step] = []
    db, user = ident(want.database), ident(want.user)
    login = obs.logins.get(user)
    if login is None:
        out.append(Step("create_user", db, user, want.password))
    elif not password_matches(want.engine, login.verifier, want.password):
        out.append(Step("set_password", db, user, want.password))
    if db not in obs.databases:
        out.append(Step("create_database", db, user))
        # PostgreSQL: created owned by the tenant's role (all rights), then closed to PUBLIC
        out.append(Step("grant", db, user) if want.engine == "mariadb" else Step("revoke_public", db, user))
    else:
        if (db, user) not in obs.grants and db not in obs.frozen:  # a freeze is undone by its move only
            out.append(Step("grant", db, user))
        if db in obs.public:
            out.append(Step("revoke_public", db, user))
    is_locked = login.locked if login is not None else False
    if locked and not is_locked:
        out.append(Step("lock", db, user))
    elif not locked and is_locked:
        out.append(Step("unlock", db, user))
    return out


def drift(want: Wanted, obs: Observed, *, locked: bool) -> list[str]:
    """What differs on the server, in words (empty: nothing)."""
    return [f"{want.db}: {DRIFT[s.kind]}" for s in steps(want, obs, locked=locked)]


def over_quota(total_bytes: int, quota_mb: object) -> str:
    """The RES-2 message when the databases' total exceeds ``databaseQuotaMB``."""
    if not isinstance(quota_mb, int | float) or isinstance(quota_mb, bool):
        return ""  # "unlimited"
    used = total_bytes / 1048576
    return f"over database quota: {used:.1f} MB of {quota_mb} MB (RES-2, no data deleted)" if used > quota_mb else ""
