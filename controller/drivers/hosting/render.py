"""Pure rendering of the per-tenant files of the web and php concerns (no I/O but
reading templates): nginx vhosts, PHP-FPM pools, the web-space skeleton.

Templates get already-effective values (jinja2 ``StrictUndefined``, no defaults in
templates). Values were validated by the model; still, every value goes through a
filter that either proves it cannot break the file or raises: ``ng`` (nginx tokens)
and ``ini`` (php-fpm values).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from controller.drivers import naming, slices
from controller.drivers.hosting import webstats
from controller.model import php as php_model
from controller.model import values as model_values

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
SKELETON_ENTRIES = ("httpdocs", "cgi-bin", "error_docs", "anon_ftp")
ERROR_CODES = (400, 401, 403, 404, 500, 502, 503)
PAGES_DIR = "/var/lib/tenantctl/pages"
NGINX_DIR = naming.NGINX_DIR
LOGROTATE_DIR = "/etc/logrotate.d"
#: one file per tenant with a hard disk quota (RES-3): its block limit in KiB
QUOTA_DIR = "/etc/tenantctl/quota"
#: one sshd ``Match User`` block per tenant granted a shell (issue 14)
SHELL_DIR = "/etc/ssh/tenantctl-shell.d"
#: days a month of logs counts for (retainMonths -> maxage)
DAYS_PER_MONTH = 31

_NG = re.compile(r"^[A-Za-z0-9._:/-]+$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_INI_BARE = re.compile(r"^[A-Za-z0-9_./:@%+,-]+$")
_INI_EXPR = re.compile(r"^[A-Za-z0-9_ &|~^!()]+$")  # error_reporting-style constant expressions
_INI_BAD = re.compile(r"[\x00-\x1f\x7f\"$\\;=\[\]{}]")


@dataclass(frozen=True)
class Settings:
    """Per-server knobs of the hosting drivers."""

    #: PHP-FPM children per pool at most (pm = ondemand: none while idle)
    php_max_children: int = 5


def ng(value: object) -> str:
    """An nginx token (address, name, path): refused unless plainly safe."""
    text = str(value)
    if not _NG.fullmatch(text):
        raise ValueError(f"refusing to render {text!r} into an nginx file")
    return text


def ini(value: object) -> str:
    """A php-fpm ini value: bare when safe, double-quoted otherwise, refused if it could
    close the line, the quote or the section."""
    text = str(value)
    if _INI_BAD.search(text):
        raise ValueError(f"refusing to render {text!r} into a php-fpm file")
    if _INI_BARE.match(text) or _INI_EXPR.match(text):
        return text
    return f'"{text}"'


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["ng"] = ng
    env.filters["ini"] = ini
    return env


def template(name: str) -> jinja2.Template:
    return _env().get_template(name)


# --- names not (yet) in naming ---------------------------------------------------------


def site_pool(sub: str, site: str) -> str:
    """The pool of a site whose PHP settings differ from its subscription's (PHP-2)."""
    return f"{naming.fpm_pool(sub)}-{hashlib.blake2b(site.encode(), digest_size=3).hexdigest()}"


def pool_socket(pool: str) -> str:
    return f"/run/php/tenantctl-{pool}.sock"


def logrotate_path(sub: str) -> str:
    return f"{LOGROTATE_DIR}/tenantctl-{naming.system_user(sub)}"


def vhost_path(sub: str) -> str:
    return f"{NGINX_DIR}/{naming.system_user(sub)}.conf"


def pool_path(sub: str, version: str) -> str:
    return f"{fpm_dir(version)}/{naming.fpm_pool(sub)}.conf"


def fpm_dir(version: str) -> str:
    if not re.fullmatch(r"[0-9]\.[0-9]", version):
        raise ValueError(f"not a PHP version: {version!r}")
    return f"/etc/php/{version}/fpm/tenantctl"


# --- decisions -----------------------------------------------------------------------------


own_pool_sites = slices.own_pools


def _limit(value: Any) -> int | None:
    return None if value == "unlimited" or value is None else int(value)


def vhost(sub: str, sl: slices.Web, proxy_to: str | None = None) -> str | None:
    """The subscription's nginx file (one server block per site), or None (HOST-1).
    ``proxy_to``: the address of the server it moved to: every request is forwarded
    there (a move's substitute, DNS-4; HTTPS upstream where the plan has SSL)."""
    hosting = sl["hosting"]
    if not hosting["enabled"]:
        return None
    user = naming.system_user(sub)
    own = set(sl["ownPools"])
    sites = [{"names": [sub, f"www.{sub}"], "docroot": naming.docroot(sub), "socket": naming.fpm_socket(sub)}]
    for name, kind in sl["siteTypes"].items():
        sites.append({
            "names": [name, f"www.{name}"] if kind == "alias" else [name],
            "docroot": naming.docroot(sub, name),
            "socket": pool_socket(site_pool(sub, name)) if name in own else naming.fpm_socket(sub),
        })
    perf = sl["performance"]
    return template("nginx/vhost.conf.j2").render(
        sub=sub, user=user, ip=sl["ip"], sites=sites, home=naming.home(sub),
        suspended=sl["state"] == "suspended", pages_dir=PAGES_DIR,
        proxy_to=proxy_to, proxy_scheme="https" if hosting.get("ssl") else "http",
        max_connections=_limit(perf["maxConnections"]), bandwidth_kbps=_limit(perf["bandwidthKBps"]),
        error_documents=bool(hosting["errorDocuments"]), error_codes=ERROR_CODES,
        acme_root=naming.acme_root(sub) if hosting.get("ssl") else None,  # TLS-1: only where SSL is sold
        logs_dir=naming.logs_dir(sub),
        stats=({"location": webstats.LOCATION, "dir": webstats.report_dir(sub) + "/",
                "htpasswd": webstats.htpasswd_path(sub)} if stats_on(sl) else None),
    )


def php_settings(settings: Mapping[str, str], permissions: Mapping[str, bool]) -> list[tuple[str, bool, str]]:
    """(directive, admin?, value): php_admin_value unless the customer may manage the
    directive's group or scripts may change it anyway (PHP-3). open_basedir is never
    taken from settings: the pool confines to the home."""
    out = []
    for key in sorted(settings):
        if key == "open_basedir":
            continue
        d = php_model.DIRECTIVES.get(key)
        if d is None:
            admin = True
        else:
            perm = "managePHPPerformance" if d.group is php_model.Group.PERFORMANCE else "managePHPCommon"
            admin = not (permissions.get(perm, False) or d.ini_all)
        out.append((key, admin, str(settings[key])))
    return out


def pool(sub: str, sl: slices.PhpSlice, cfg: Settings) -> str | None:
    """The subscription's php-fpm file (its pool, plus per-site pools), or None when
    hosting is off (HOST-1) or the subscription is suspended (LIFE-2: pool stopped)."""
    if not sl["enabled"] or sl["state"] == "suspended":
        return None
    home = naming.home(sub)
    tmp = f"{home}/tmp"
    perms = sl["permissions"]

    def settings(values: Mapping[str, str]) -> list[tuple[str, bool, str]]:
        rendered = php_settings(values, perms)
        if "session.save_path" not in values:
            rendered.append(("session.save_path", False, tmp))
        return rendered

    pools = [{"name": naming.fpm_pool(sub), "socket": naming.fpm_socket(sub),
              "settings": settings(sl["php"]["settings"])}]
    by_name = {s["name"]: s for s in sl["sites"]}
    for name in own_pool_sites(sl["php"], sl["sites"]):
        p = site_pool(sub, name)
        pools.append({"name": p, "socket": pool_socket(p), "settings": settings(by_name[name]["php"]["settings"])})
    return template("php/pool.conf.j2").render(
        sub=sub, user=naming.system_user(sub), home=home, tmp=tmp, pools=pools, max_children=cfg.php_max_children)


def sockets(sub: str, sl: slices.PhpSlice) -> list[str]:
    if not sl["enabled"] or sl["state"] == "suspended":
        return []
    return [naming.fpm_socket(sub)] + [pool_socket(site_pool(sub, n)) for n in own_pool_sites(sl["php"], sl["sites"])]


def authorized_keys(sub: str, sl: slices.Web) -> str | None:
    """The subscription's authorized_keys file (issue 14), or None: no key, hosting off
    (HOST-1) or suspended (LIFE-2: logins refused from this very transaction on). Every
    key is checked again (the model's grammar: no options) and gets tenantctl's own
    ``restrict`` (no forwarding, no pty, no ~/.ssh/rc): sshd forces internal-sftp anyway;
    with a shell (``shell_on``) ``restrict,pty``: a terminal, nothing more."""
    if not sl["hosting"]["enabled"] or sl["state"] == "suspended" or not sl["sshKeys"]:
        return None
    options = "restrict,pty" if shell_on(sl) else "restrict"
    lines = [f"# Managed by tenantctl: subscription {ng(sub)} (user {naming.system_user(sub)}). "
             "Do not edit: drift is repaired."]
    for key in sl["sshKeys"]:
        if model_values.ssh_public_key(key) != key:
            raise ValueError(f"refusing to render {key!r} into an authorized_keys file")
        lines.append(f"{options} {key}")
    return "\n".join(lines) + "\n"


def shell_on(sl: Mapping[str, Any]) -> bool:
    """Issue 14: an interactive shell in the SFTP chroot (``hosting.ssh``, what manageSSH
    lets the customer switch), for an active subscription with hosting and a key."""
    h = sl["hosting"]
    return bool(h["enabled"] and h["ssh"] and sl["state"] != "suspended" and sl["sshKeys"])


def shell_path(sub: str) -> str:
    """sshd's block that lifts ForceCommand for the tenant (= the hosting agent's)."""
    return f"{SHELL_DIR}/{naming.system_user(sub)}.conf"


def shell_sshd(sub: str, sl: Mapping[str, Any]) -> str | None:
    """The tenant's sshd ``Match User`` block when ``shell_on``, else None (SFTP only)."""
    if not shell_on(sl):
        return None
    user = naming.system_user(sub)
    if not _USER.fullmatch(user):
        raise ValueError(f"refusing to render user {user!r} into an sshd file")
    return template("sshd/shell.conf.j2").render(sub=ng(sub), user=user)


def quota_path(sub: str) -> str:
    """The tenant's hard quota file (= the hosting agent's ``QUOTA_DIR``)."""
    return f"{QUOTA_DIR}/{naming.system_user(sub)}"


def quota(sub: str, sl: Mapping[str, Any]) -> str | None:
    """RES-3: the tenant's hard block limit in KiB (``resources.diskMB``) when the
    effective spec asks for a hard quota (placement turned it off where the server does
    not offer one: SYNC-3), else None (the agent then lifts any limit). Kept while
    suspended: the data stays (LIFE-2)."""
    disk = sl["diskMB"]
    if not sl["hosting"]["enabled"] or not sl["hosting"]["hardQuota"] or disk == model_values.UNLIMITED:
        return None
    if isinstance(disk, bool) or not isinstance(disk, int) or disk < 0:
        raise ValueError(f"refusing to render disk limit {disk!r}")
    return (f"# Managed by tenantctl: hard disk quota of {ng(sub)} (resources.diskMB {disk}), KiB. Do not edit.\n"
            f"{disk * 1024}\n")


def stats_on(sl: Mapping[str, Any]) -> bool:
    """LOG-1: web statistics are made and served (hosting on, webStats on, active)."""
    h = sl["hosting"]
    return bool(h["enabled"] and h["webStats"] and sl["state"] != "suspended")


def webstats_cron(sub: str, sl: Mapping[str, Any]) -> str | None:
    """The hourly GoAccess run of the subscription (``webstats``), or None."""
    if not stats_on(sl):
        return None
    return template("cron/webstats.j2").render(
        sub=sub, user=naming.system_user(sub), minute=webstats.minute(sub), log=f"{naming.logs_dir(sub)}/access.log",
        report=f"{webstats.report_dir(sub)}/index.html")


def logrotate(sub: str, sl: Mapping[str, Any]) -> str | None:
    """LOG-1: the subscription's logrotate file (its ``logs`` group: rotate daily or
    weekly, compress, keep ``retainMonths``), or None when hosting is off. New files
    are www-data's (as nginx leaves a log it reopens) with the tenant's group, 0640:
    the tenant reads them in a root-owned directory; nginx reopens its logs after."""
    if not sl["hosting"]["enabled"]:
        return None
    logs = sl["logs"]
    rotate = str(logs["rotate"])
    if rotate not in ("daily", "weekly", "monthly"):
        raise ValueError(f"refusing to render rotation {rotate!r}")
    months = int(logs["retainMonths"])
    days = months * DAYS_PER_MONTH
    per_month = {"daily": DAYS_PER_MONTH, "weekly": 5, "monthly": 1}[rotate]
    return template("logrotate/subscription.j2").render(
        sub=sub, user=naming.system_user(sub), logs_dir=naming.logs_dir(sub), rotate=rotate,
        count=max(1, months * per_month), maxage=max(1, days), compress=bool(logs["compress"]))


@functools.cache
def static_files() -> tuple[tuple[str, bytes], ...]:
    """The skeleton (LIFE-7) and the suspended page, as (relative path, bytes)."""
    out = [(f"skel/{p.relative_to(TEMPLATES / 'skel')}", p.read_bytes())
           for p in sorted((TEMPLATES / "skel").rglob("*")) if p.is_file()]
    out.append(("pages/suspended.html", (TEMPLATES / "pages" / "suspended.html").read_bytes()))
    return tuple(out)
