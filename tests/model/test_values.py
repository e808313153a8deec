"""Grammars of scalar values (controller.model.values) and of PHP settings
(controller.model.php): what each accepts, how it normalises, what it rejects."""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model import php, values

# --- accepted values and their canonical form ------------------------------------------

ACCEPTED: list[Any] = [
    pytest.param(values.dns_label, "eu-west", "eu-west", id="label"),
    pytest.param(values.dns_label, "a", "a", id="label-one-char"),
    pytest.param(values.dns_label, "a" * 63, "a" * 63, id="label-63"),
    pytest.param(values.domain_name, "example.org", "example.org", id="domain"),
    pytest.param(values.domain_name, "Shop.Example.ORG", "shop.example.org", id="domain-upper-case"),
    pytest.param(values.domain_name, "example.org.", "example.org", id="domain-trailing-dot"),
    pytest.param(values.domain_name, "münchen-flug.de", "xn--mnchen-flug-thb.de", id="domain-idn"),
    pytest.param(values.domain_name, "xn--mnchen-flug-thb.de", "xn--mnchen-flug-thb.de", id="domain-punycode"),
    pytest.param(values.domain_name, "bücher.example.test", "xn--bcher-kva.example.test", id="domain-idn-sub"),
    pytest.param(values.db_name, "app_1", "app_1", id="db"),
    pytest.param(values.db_name, "a" * 32, "a" * 32, id="db-32"),
    pytest.param(values.email, "ops+tenant@mail.example.org", "ops+tenant@mail.example.org", id="email"),
    pytest.param(values.ip_address, "127.0.10.1", "127.0.10.1", id="ipv4"),
    pytest.param(values.ip_address, "2001:DB8:0::1", "2001:db8::1", id="ipv6-canonical"),
    pytest.param(values.cron, "0 2 * * *", "0 2 * * *", id="cron"),
    pytest.param(values.cron, "*/15 1-5 * * mon-fri", "*/15 1-5 * * mon-fri", id="cron-ranges"),
    pytest.param(values.timezone, "Europe/Paris", "Europe/Paris", id="tz"),
    pytest.param(values.php_version, "8.2", "8.2", id="php-version"),
    pytest.param(values.date, "2027-12-31", dt.date(2027, 12, 31), id="date-text"),
    pytest.param(values.date, dt.date(2027, 1, 1), dt.date(2027, 1, 1), id="date-yaml"),
    pytest.param(values._limit, "unlimited", "unlimited", id="limit-unlimited"),
    pytest.param(values._limit, 0, 0, id="limit-zero"),
    pytest.param(values._count, 10, 10, id="count"),
]


@pytest.mark.parametrize(("fn", "given_value", "expected"), ACCEPTED)
def test_accepted(fn: Callable[[Any], Any], given_value: Any, expected: Any) -> None:
    assert fn(given_value) == expected


REJECTED: list[Any] = [
    pytest.param(values.dns_label, "EU-west", "DNS label", id="label-upper"),
    pytest.param(values.dns_label, "-eu", "DNS label", id="label-leading-hyphen"),
    pytest.param(values.dns_label, "a" * 64, "DNS label", id="label-64"),
    pytest.param(values.dns_label, "eu-west\n", "DNS label", id="label-trailing-newline"),
    pytest.param(values.dns_label, 7, "DNS label", id="label-int"),
    pytest.param(values.domain_name, "localhost", "at least two labels", id="domain-one-label"),
    pytest.param(values.domain_name, "example.123", "cannot be numeric", id="domain-numeric-tld"),
    pytest.param(values.domain_name, "a..example.org", "domain name", id="domain-empty-label"),
    pytest.param(values.domain_name, " example.org", "domain name", id="domain-space"),
    pytest.param(values.domain_name, "ex_ample.org", "domain name", id="domain-underscore"),
    pytest.param(values.domain_name, "x.example.org;", "domain name", id="domain-semicolon"),
    pytest.param(values.domain_name, ("a" * 60 + ".") * 5 + "org", "too long|longer than 253", id="domain-too-long"),
    pytest.param(values.domain_name, "xn--zz.example.org", "domain name", id="domain-bad-punycode"),
    pytest.param(values.domain_name, "", "domain name", id="domain-empty"),
    pytest.param(values.db_name, "1app", "database name", id="db-leading-digit"),
    pytest.param(values.db_name, "app\n", "database name", id="db-trailing-newline"),
    pytest.param(values.db_name, "app-db", "database name", id="db-hyphen"),
    pytest.param(values.db_name, "a" * 33, "database name", id="db-33"),
    pytest.param(values.email, "ops@example.org\n", "e-mail", id="email-trailing-newline"),
    pytest.param(values.email, "ops@localhost", "e-mail", id="email-no-dot"),
    pytest.param(values.email, "a b@example.org", "e-mail", id="email-space"),
    pytest.param(values.ip_address, "127.0.0.256", "IP address", id="ip-out-of-range"),
    pytest.param(values.ip_address, 2130706433, "as text", id="ip-integer"),
    pytest.param(values.ip_address, "fe80::1%eth0", "zone", id="ip-zone"),
    pytest.param(values.cron, "@daily", "cron", id="cron-macro"),
    pytest.param(values.cron, "0 2 * * *\n", "cron", id="cron-trailing-newline"),
    pytest.param(values.cron, "0\n2 * * *", "cron", id="cron-newline-between-fields"),
    pytest.param(values.cron, "0 24 * * *", "cron", id="cron-hour-24"),
    pytest.param(values.cron, "0 0 2 * * *", "cron", id="cron-six-fields"),
    pytest.param(values.cron, "0 2 * * *;reboot", "cron", id="cron-semicolon"),
    pytest.param(values.timezone, "Mars/Olympus", "time zone", id="tz-unknown"),
    pytest.param(values.timezone, "../../etc/passwd", "time zone", id="tz-path"),
    pytest.param(values.php_version, 8.2, "quoted string", id="php-version-float"),
    pytest.param(values.php_version, "8", "PHP version", id="php-version-major"),
    pytest.param(values.php_version, "8.2.1", "PHP version", id="php-version-patch"),
    pytest.param(values.date, 20271231, "date", id="date-int"),
    pytest.param(values.date, dt.datetime(2027, 1, 1), "without a time", id="date-datetime"),
    pytest.param(values.date, "2027-02-30", "out of range", id="date-impossible"),
    pytest.param(values.date, "20271231", "date", id="date-basic-format"),
    pytest.param(values._limit, -1, "non-negative", id="limit-negative"),
    pytest.param(values._limit, True, "non-negative", id="limit-bool"),
    pytest.param(values._limit, 1.5, "non-negative", id="limit-float"),
    pytest.param(values._limit, "Unlimited", "non-negative", id="limit-capitalised"),
    pytest.param(values._count, "unlimited", "non-negative integer", id="count-unlimited"),
]


@pytest.mark.parametrize(("fn", "given_value", "message"), REJECTED)
def test_rejected(fn: Callable[[Any], Any], given_value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fn(given_value)


@pytest.mark.parametrize(
    ("a", "b", "total"),
    [
        pytest.param(1, 2, 3, id="numbers-add"),
        pytest.param("unlimited", 2, "unlimited", id="unlimited-wins-left"),
        pytest.param(2, "unlimited", "unlimited", id="unlimited-wins-right"),
    ],
)
def test_add_limits(a: int | str, b: int | str, total: int | str) -> None:  # PLAN-3
    assert values.add_limits(a, b) == total


# --- domain names: property tests ------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True).filter(lambda s: s[2:4] != "--")
_tld = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(lambda s: s[2:4] != "--")
ascii_domains = st.builds(lambda ls, tld: ".".join([*ls, tld]), st.lists(_label, min_size=1, max_size=4), _tld)


@given(ascii_domains)
def test_valid_ascii_domain_is_returned_unchanged(name: str) -> None:
    assert values.domain_name(name) == name


@given(ascii_domains)
def test_domain_name_is_idempotent_and_case_insensitive(name: str) -> None:
    once = values.domain_name(name.upper())
    assert once == name
    assert values.domain_name(once) == once


@given(ascii_domains, st.sampled_from(list(";\n\r\t \"'`$={}[]\\/_!*")), st.data())
def test_domain_with_a_forbidden_char_is_rejected(name: str, bad: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(name)))
    with pytest.raises(ValueError):
        values.domain_name(name[:i] + bad + name[i:])


# --- PHP settings (PHP-3) --------------------------------------------------------------

PHP_ACCEPTED: list[Any] = [
    pytest.param("memory_limit", "128m", "128M", id="size-upper-cased"),
    pytest.param("memory_limit", -1, "-1", id="size-no-limit"),
    pytest.param("upload_max_filesize", "1G", "1G", id="size-giga"),
    pytest.param("post_max_size", 1048576, "1048576", id="size-bytes"),
    pytest.param("max_execution_time", 30, "30", id="int"),
    pytest.param("max_execution_time", "030", "30", id="int-leading-zero"),
    pytest.param("log_errors", True, "on", id="bool-true"),
    pytest.param("short_open_tag", False, "off", id="bool-false"),
    pytest.param("allow_url_fopen", "Off", "off", id="bool-text"),
    pytest.param("display_errors", "stderr", "stderr", id="display-stderr"),
    pytest.param("error_reporting", "E_ALL & ~E_NOTICE", "E_ALL & ~E_NOTICE", id="text-expression"),
    pytest.param("include_path", ".:/usr/share/php", ".:/usr/share/php", id="text-path"),
    pytest.param("date.timezone", "America/New_York", "America/New_York", id="text-timezone"),
]


@pytest.mark.parametrize(("name", "value", "expected"), PHP_ACCEPTED)
def test_php_accepted(name: str, value: Any, expected: str) -> None:
    assert php.normalise(name, value) == expected


PHP_REJECTED: list[Any] = [
    pytest.param("extension", "evil.so", "unknown PHP directive", id="unknown-directive"),
    pytest.param("auto_prepend_file", "/tmp/x", "unknown PHP directive", id="unknown-prepend"),
    pytest.param(1, "x", "unknown PHP directive", id="directive-not-text"),
    pytest.param("memory_limit", "128MB", "expected a size", id="size-suffix"),
    pytest.param("memory_limit", "1" * 13, "expected a size", id="size-overlong"),
    pytest.param("memory_limit", None, "scalar", id="none"),
    pytest.param("memory_limit", 1.5, "scalar", id="float"),
    pytest.param("memory_limit", ["128M"], "scalar", id="list"),
    pytest.param("max_execution_time", -5, "non-negative integer", id="int-negative"),
    pytest.param("allow_url_fopen", "maybe", "on or off", id="bool-unknown"),
    pytest.param("display_errors", "stdout2", "on or off", id="display-unknown"),
    pytest.param("open_basedir", "/www/é/", "characters outside", id="text-non-ascii"),
    pytest.param("open_basedir", "/www/" + "x" * 600, "longer than 512", id="text-overlong"),
    pytest.param("memory_limit", "128M\nextension=evil.so", "contains '\\\\n'", id="inject-newline"),
    pytest.param("include_path", ".;x", "contains ';'", id="inject-semicolon"),
    pytest.param("open_basedir", "[PHP]", "contains '\\['", id="inject-section"),
    pytest.param("session.save_path", '"/tmp"', "contains '\"'", id="inject-double-quote"),
    pytest.param("session.save_path", "'/tmp'", "contains \"'\"", id="inject-single-quote"),
    pytest.param("include_path", "${HOME}", "contains '\\$'", id="inject-dollar"),
    pytest.param("error_reporting", "E_ALL=1", "contains '='", id="inject-equals"),
    pytest.param("include_path", "C:\\php", "contains '\\\\\\\\'", id="inject-backslash"),
    pytest.param("memory_limit", "128M\x00", "contains '\\\\x00'", id="inject-nul"),
    pytest.param("date.timezone", "\x1b[31m", "contains '\\\\x1b'", id="inject-escape"),
    pytest.param("date.timezone", "UTC\x7f", "contains '\\\\x7f'", id="inject-del"),
    pytest.param("include_path", "`id`", "contains '`'", id="inject-backtick"),
]


@pytest.mark.parametrize(("name", "value", "message"), PHP_REJECTED)
def test_php_rejected(name: Any, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        php.normalise(name, value)


FORBIDDEN = [chr(c) for c in range(0x20)] + ["\x7f", ";", "[", "]", '"', "'", "`", "$", "=", "\\", "{", "}"]
_safe_text = st.text(alphabet=string.ascii_letters + string.digits + " ./:_-", max_size=40)


@given(st.sampled_from(sorted(php.DIRECTIVES)), _safe_text, st.sampled_from(FORBIDDEN), _safe_text)
def test_php_value_with_forbidden_char_is_rejected(name: str, head: str, bad: str, tail: str) -> None:
    with pytest.raises(ValueError):
        php.normalise(name, head + bad + tail)


@given(st.sampled_from(sorted(php.DIRECTIVES)), st.text(max_size=60))
def test_php_normalised_values_are_safe_and_stable(name: str, value: str) -> None:
    try:
        out = php.normalise(name, value)
    except ValueError:
        return
    assert not any(c in out for c in FORBIDDEN)
    assert out.isascii()
    assert php.normalise(name, out) == out


def test_every_directive_has_a_group() -> None:  # PHP-3
    groups = {d.group for d in php.DIRECTIVES.values()}
    assert groups == {php.Group.PERFORMANCE, php.Group.COMMON}
    assert php.group_of("memory_limit") is php.Group.PERFORMANCE
    assert php.group_of("display_errors") is php.Group.COMMON
