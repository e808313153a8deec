"""Scalar value types of the desired state and their grammars.

Pure functions and pydantic annotated types: no I/O. Every validator raises
``ValueError`` with a sentence saying what was expected; the loader turns it into a
``file:line: path: message`` issue.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from typing import Annotated, Any, Final, Literal

import idna
from pydantic import BeforeValidator

UNLIMITED: Final = "unlimited"


class Unset(enum.Enum):
    """Sentinel for "inherit": an add-on value left out or set to ``default`` keeps the
    plan's value (PLAN-3). Distinct from ``None``, which is never a valid value."""

    UNSET = "default"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def _limit(v: Any) -> int | str:
    if v == UNLIMITED:
        return UNLIMITED
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected a non-negative integer or 'unlimited', got {v!r}")
    if v < 0:
        raise ValueError(f"expected a non-negative integer or 'unlimited', got {v}")
    return v


def _count(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"expected a non-negative integer, got {v!r}")
    return v


def _unset_or(fn: Any) -> Any:
    def check(v: Any) -> Any:
        if v is None or v == UNSET.value or v is UNSET:
            return UNSET
        return fn(v)

    return check


#: A numeric limit: a non-negative integer or ``unlimited`` (RES-1).
Limit = Annotated[int | Literal["unlimited"], BeforeValidator(_limit)]
#: A non-negative integer (sizes in MB, counts).
Count = Annotated[int, BeforeValidator(_count)]
#: An add-on limit: ``default`` (or absent) keeps the plan's value (PLAN-3).
AddOnLimit = Annotated[int | Literal["unlimited"] | Unset, BeforeValidator(_unset_or(_limit))]


def add_limits(a: int | str, b: int | str) -> int | str:
    """PLAN-3: numeric limits add; ``unlimited`` wins."""
    if a == UNLIMITED or b == UNLIMITED:
        return UNLIMITED
    assert isinstance(a, int) and isinstance(b, int)
    return a + b


def limit_le(a: int | str, b: int | str) -> bool:
    """``a <= b`` for limits, ``unlimited`` being the largest."""
    if b == UNLIMITED:
        return True
    if a == UNLIMITED:
        return False
    assert isinstance(a, int) and isinstance(b, int)
    return a <= b


# --- names -------------------------------------------------------------------------

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def dns_label(v: Any) -> str:
    """An RFC 1123 label: lower-case letters, digits and '-', 1 to 63 characters."""
    if not isinstance(v, str) or not _LABEL.fullmatch(v):
        raise ValueError(
            f"expected a DNS label (a-z, 0-9 and '-', 1-63 characters, no leading or trailing '-'), got {v!r}"
        )
    return v


def domain_name(v: Any) -> str:
    """A fully qualified domain name; IDN input is accepted and returned as punycode."""
    if not isinstance(v, str) or not v or v != v.strip():
        raise ValueError(f"expected a domain name, got {v!r}")
    name = v.rstrip(".") if v.endswith(".") and not v.endswith("..") else v
    if name.isascii() and "xn--" not in name.lower():
        # Fast path for plain ASCII names, where UTS-46 would only lower-case (idna costs
        # ~0.1 ms a name: 1 s for 10,000). Anything it does not accept takes the full
        # path below, which says what is wrong.
        fast = name.lower()
        labels = fast.split(".")
        if (
            len(labels) >= 2 and len(fast) <= 253 and not labels[-1].isdigit()
            and all(_LABEL.fullmatch(label) and label[2:4] != "--" for label in labels)
        ):
            return fast
    try:
        ascii_name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"expected a domain name, got {v!r}: {exc}") from None
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise ValueError(f"expected a fully qualified domain name with at least two labels, got {v!r}")
    if len(ascii_name) > 253:
        raise ValueError(f"domain name longer than 253 characters: {v!r}")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"invalid label {label!r} in domain name {v!r}")
        if label[2:4] == "--" and not label.startswith("xn--"):
            raise ValueError(f"invalid label {label!r} in domain name {v!r} (only 'xn--' may have '--' there)")
    if labels[-1].isdigit():
        raise ValueError(f"the top-level label of {v!r} cannot be numeric")
    return ascii_name


DnsLabel = Annotated[str, BeforeValidator(dns_label)]
DomainName = Annotated[str, BeforeValidator(domain_name)]

_DB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def db_name(v: Any) -> str:
    """A tenant database name: a lower-case identifier of at most 32 characters."""
    if not isinstance(v, str) or not _DB_NAME.fullmatch(v):
        raise ValueError(f"expected a database name ([a-z][a-z0-9_]*, at most 32 characters), got {v!r}")
    return v


DbName = Annotated[str, BeforeValidator(db_name)]


def ip_address(v: Any) -> str:
    """An IPv4 or IPv6 address (text, no IPv6 zone), returned in its canonical text form."""
    if not isinstance(v, str):
        raise ValueError(f"expected an IP address as text, got {v!r}")
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"expected an IP address, got {v!r}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id is not None:
        raise ValueError(f"expected an IP address without a zone ('%...'), got {v!r}")
    return str(addr)


IpAddress = Annotated[str, BeforeValidator(ip_address)]

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def email(v: Any) -> str:
    if not isinstance(v, str) or not _EMAIL.fullmatch(v):
        raise ValueError(f"expected an e-mail address, got {v!r}")
    return v


Email = Annotated[str, BeforeValidator(email)]


#: Five fields of cron characters separated by spaces: nothing that could end a crontab line.
_CRON = re.compile(r"[0-9A-Za-z*/,?#-]+(?: +[0-9A-Za-z*/,?#-]+){4}")


def cron(v: Any) -> str:
    """A five-field cron expression, fields separated by spaces."""
    from croniter import croniter  # 30 ms to import: only when a schedule is checked

    if not isinstance(v, str) or not _CRON.fullmatch(v) or not croniter.is_valid(v):
        raise ValueError(f"expected a cron expression with five fields (e.g. '0 2 * * *'), got {v!r}")
    return v


Cron = Annotated[str, BeforeValidator(cron)]


def timezone(v: Any) -> str:
    import zoneinfo

    if not isinstance(v, str):
        raise ValueError(f"expected an IANA time zone name, got {v!r}")
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"expected an IANA time zone name (e.g. Europe/Paris), got {v!r}") from None
    return v


TimeZone = Annotated[str, BeforeValidator(timezone)]


def php_version(v: Any) -> str:
    if isinstance(v, float):
        raise ValueError(f"expected a PHP version as a quoted string like \"8.2\", got the number {v!r}")
    if not isinstance(v, str) or not re.fullmatch(r"[5-9]\.[0-9]", v):
        raise ValueError(f"expected a PHP version like \"8.2\", got {v!r}")
    return v


PhpVersion = Annotated[str, BeforeValidator(php_version)]

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def date(v: Any) -> dt.date:
    """A calendar date: a YAML date or an ISO-8601 ``YYYY-MM-DD`` string (no time, no number)."""
    if isinstance(v, dt.datetime):
        raise ValueError(f"expected a date like 2027-12-31 without a time, got {v.isoformat()!r}")
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str) and _DATE.fullmatch(v):
        try:
            return dt.date.fromisoformat(v)
        except ValueError as exc:
            raise ValueError(f"expected a date like 2027-12-31, got {v!r}: {exc}") from None
    raise ValueError(f"expected a date like 2027-12-31 (ISO-8601), got {v!r}")


# --- access (issue 14) -------------------------------------------------------------

#: Key types OpenSSH 9 accepts for user authentication (DSA is off by default: refused).
SSH_KEY_TYPES: Final = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
_SSH_BLOB = re.compile(r"[A-Za-z0-9+/]+={0,2}")
#: A comment: printable ASCII, nothing that could end the line of an authorized_keys file.
_SSH_COMMENT = re.compile(r"[\x20-\x7e]{0,200}")


def _ssh_blob_type(blob: str) -> str | None:
    """The key type the base64 blob says it holds (its first SSH string), or None."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 4:
        return None
    n = int.from_bytes(raw[:4], "big")
    if n == 0 or len(raw) < 4 + n + 4:  # the type, then at least one more field
        return None
    try:
        return raw[4:4 + n].decode("ascii")
    except UnicodeDecodeError:
        return None


def ssh_public_key(v: Any) -> str:
    """One OpenSSH public key line: ``<type> <base64 blob> [comment]``, the blob holding
    a key of that type. No options (``command=``, ``from=``, ...): a key line that starts
    with anything but a known type is refused. Returned normalised (single spaces)."""
    shown = repr(v if not isinstance(v, str) or len(v) <= 60 else v[:57] + "...")
    if not isinstance(v, str) or "\n" in v or "\r" in v or "\x00" in v:
        raise ValueError(f"expected one OpenSSH public key line ('ssh-ed25519 AAAA... comment'), got {shown}")
    parts = v.strip().split(None, 2)
    if not parts or parts[0] not in SSH_KEY_TYPES:
        first = parts[0] if parts else ""
        if "=" in first or "," in first or first.startswith(("no-", "restrict", "cert-authority")):
            raise ValueError(f"an SSH key may not carry options ({first.split('=', 1)[0]!r}): give the bare "
                             f"'<type> <key> [comment]' line, got {shown}")
        raise ValueError(f"expected an OpenSSH public key line starting with one of {', '.join(sorted(SSH_KEY_TYPES))}, "
                         f"got {shown}")
    if len(parts) < 2 or not _SSH_BLOB.fullmatch(parts[1]) or _ssh_blob_type(parts[1]) != parts[0]:
        raise ValueError(f"expected a base64 {parts[0]} key after the type, got {shown}")
    comment = parts[2].strip() if len(parts) == 3 else ""
    if not _SSH_COMMENT.fullmatch(comment):
        raise ValueError(f"an SSH key comment must be printable ASCII (at most 200 characters), got {shown}")
    return " ".join(p for p in (parts[0], parts[1], comment) if p)


SshPublicKey = Annotated[str, BeforeValidator(ssh_public_key)]
