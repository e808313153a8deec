"""The PHP directives tenantctl manages, their group (PHP-3) and value grammar.

A setting is accepted only if its directive is listed here and its value matches the
directive's kind. Free text is limited to a conservative character set, so that no
value can close a line or a section of a generated ini/pool file: a newline, ``;``,
``[``, ``]``, quotes, ``$``, ``=`` or a control character is always rejected.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Final


class Group(enum.StrEnum):
    """PHP-3 setting groups; each has its own customer permission (SYNC-4)."""

    PERFORMANCE = "performance"
    COMMON = "common"


class Kind(enum.Enum):
    SIZE = "size"  # 128M, 1G, 512K, bytes, or -1 (no limit)
    INT = "int"  # non-negative integer (seconds, counts)
    BOOL = "bool"  # on/off (normalised)
    DISPLAY = "display"  # on/off/stderr/stdout (display_errors)
    TEXT = "text"  # restricted free text (paths, expressions, names)


@dataclass(frozen=True)
class Directive:
    name: str
    group: Group
    kind: Kind
    #: PHP_INI_ALL: scripts may change it with ini_set(), so it stays changeable
    #: (``php_value``) even where the customer may not set it (PHP-3).
    ini_all: bool


def _d(name: str, group: Group, kind: Kind, ini_all: bool) -> tuple[str, Directive]:
    return name, Directive(name, group, kind, ini_all)


P, C = Group.PERFORMANCE, Group.COMMON

DIRECTIVES: Final[dict[str, Directive]] = dict(
    [
        _d("memory_limit", P, Kind.SIZE, True),
        _d("max_execution_time", P, Kind.INT, True),
        _d("max_input_time", P, Kind.INT, False),
        _d("post_max_size", P, Kind.SIZE, False),
        _d("upload_max_filesize", P, Kind.SIZE, False),
        _d("max_input_vars", P, Kind.INT, False),
        _d("max_file_uploads", P, Kind.INT, False),
        _d("realpath_cache_size", P, Kind.SIZE, False),
        _d("default_socket_timeout", P, Kind.INT, True),
        _d("output_buffering", P, Kind.INT, False),
        _d("opcache.enable", P, Kind.BOOL, False),
        _d("opcache.memory_consumption", P, Kind.INT, False),
        _d("opcache.max_accelerated_files", P, Kind.INT, False),
        _d("pcre.backtrack_limit", P, Kind.INT, True),
        _d("error_reporting", C, Kind.TEXT, True),
        _d("display_errors", C, Kind.DISPLAY, True),
        _d("display_startup_errors", C, Kind.BOOL, True),
        _d("log_errors", C, Kind.BOOL, True),
        _d("html_errors", C, Kind.BOOL, True),
        _d("allow_url_fopen", C, Kind.BOOL, False),
        _d("file_uploads", C, Kind.BOOL, False),
        _d("short_open_tag", C, Kind.BOOL, False),
        _d("open_basedir", C, Kind.TEXT, False),
        _d("include_path", C, Kind.TEXT, True),
        _d("session.save_path", C, Kind.TEXT, True),
        _d("session.gc_maxlifetime", C, Kind.INT, True),
        _d("session.cookie_secure", C, Kind.BOOL, True),
        _d("session.cookie_httponly", C, Kind.BOOL, True),
        _d("date.timezone", C, Kind.TEXT, True),
        _d("default_charset", C, Kind.TEXT, True),
        _d("mail.add_x_header", C, Kind.BOOL, False),
        _d("zlib.output_compression", C, Kind.BOOL, True),
        _d("max_input_nesting_level", C, Kind.INT, False),
    ]
)

_SIZE = re.compile(r"^(-1|[0-9]{1,12}[KMGkmg]?)$")
_INT = re.compile(r"^[0-9]{1,12}$")
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0", "none", ""}
#: Conservative free-text alphabet: enough for paths, include paths, time zones,
#: charsets and error_reporting expressions (E_ALL & ~E_NOTICE).
_TEXT_MAX: Final = 512
_TEXT = re.compile(r"^[A-Za-z0-9_ .,:/@%+\-~&|^!()]*$")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f;\[\]\"'`$=\\{}]")


def normalise(name: Any, value: Any) -> str:
    """Check a setting and return its value as the canonical string tenantctl renders.

    Raises ``ValueError`` naming what was expected.
    """
    if not isinstance(name, str) or name not in DIRECTIVES:
        raise ValueError(f"unknown PHP directive {name!r} (PHP-3: expected one of the managed directives)")
    d = DIRECTIVES[name]
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"expected a scalar value for {name}, got {type(value).__name__}")
    bad = _FORBIDDEN.search(text)
    if bad:
        raise ValueError(
            f"value of {name} contains {bad.group()!r}: newlines, ';', '[', ']', quotes, '$', '=', "
            "backslashes, braces and control characters are not allowed"
        )
    low = text.strip().lower()
    if d.kind is Kind.SIZE:
        if not _SIZE.fullmatch(text):
            raise ValueError(f"expected a size for {name} like 128M, 1G, 512K or -1, got {text!r}")
        return text.upper()
    if d.kind is Kind.INT:
        if not _INT.fullmatch(text):
            raise ValueError(f"expected a non-negative integer for {name}, got {text!r}")
        return str(int(text))
    if d.kind in (Kind.BOOL, Kind.DISPLAY):
        if low in _TRUE:
            return "on"
        if low in _FALSE:
            return "off"
        if d.kind is Kind.DISPLAY and low in ("stderr", "stdout"):
            return low
        raise ValueError(f"expected on or off for {name}, got {text!r}")
    if len(text) > _TEXT_MAX:
        raise ValueError(f"value of {name} is longer than {_TEXT_MAX} characters ({len(text)})")
    if not _TEXT.fullmatch(text):
        raise ValueError(
            f"value of {name} has characters outside letters, digits, spaces and . , : / @ % + - ~ & | ^ ! ( )"
        )
    return text


def group_of(name: str) -> Group:
    return DIRECTIVES[name].group
