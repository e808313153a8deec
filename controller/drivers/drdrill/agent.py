"""The server side of the nightly disaster-recovery drill (DR-1): the ``drdrill`` entry of
the agent (standard library, ``controller.agent`` and the backup entry's restore helpers
only: it runs on the spare server, from the zipapp, which packs every entry). Its ops
take no agent lock (like the backup entry's: no served configuration of a tenant).

* ``drill`` with ``dr`` ``restore`` makes a scratch copy of a subscription (its own
  system user ``tdr<hex>``, web space under ``DR_ROOT``, databases
  ``tenantctl_dr_<hex>_<n>``: names no tenant can have) served by an nginx vhost of its
  own on the spare's address (plain HTTP, no certificate, no DNS) and, with ``dr_php``, a
  PHP-FPM pool of the scratch user that runs only the drill's own probe (``PROBE_URL``:
  the sha256 of a restored file and PHP's version; the customer's PHP is refused).
* ``drill`` with ``dr`` ``clean`` removes every scratch copy of every DR drill (also a
  crashed one's), pools included.

The job is the backup entry's (``job.backup``, ``controller.agent.backupjobs``). Every
expected failure of a part is a result with ``ok`` False naming what failed.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import pwd
import re
import shutil
from collections.abc import Callable
from typing import Any

from controller.agent import backupjobs, files, jobs, restic, services
from controller.drivers.backup import agent as backup

#: scratch web spaces of DR drills (one directory per drill)
DR_ROOT = "/srv/tenantctl-dr"
#: scratch vhosts (nginx includes conf.d; the web driver's own directory is left alone)
DR_VHOSTS = "/etc/nginx/conf.d"
DR_VHOST = re.compile(r"^tenantctl-dr-[a-z0-9]{1,24}\.conf$")
#: scratch PHP-FPM pools: ``pool.d`` of each installed version (the php driver's own
#: ``fpm/tenantctl`` directory is left alone), the same file names as the vhosts
DR_POOLS = "/etc/php"
DR_USER = re.compile(r"^tdr[a-z0-9]{1,24}$")
DR_DB = re.compile(r"^tenantctl_dr_[a-z0-9_]{1,40}$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,400}$")
_PHP = re.compile(r"^[0-9]\.[0-9]{1,2}$")
INDEXES = ("index.html", "index.htm")
FAKE_CORRUPTION = b"\n<!-- tenantctl fake corruption (test fault hook) -->\n"
#: the URL path of the drill's PHP probe (a script of the drill's own, outside the
#: restored web space: the customer's own PHP is never run on the spare, see dr_probe);
#: defined in the backup entry's module, where the controller side reads it too
PROBE_URL = backup.PROBE_URL


def dr_user(scratch: str) -> str:
    return f"tdr{scratch[:10]}"


def _dr_run(argv: list[str], what: str) -> str:
    code, out = files.run(argv, timeout=600)
    if code != 0:
        raise backup.Problem(f"{what}: {out[-restic.TAIL:]}")
    return out


def _dr_databases(engine: str) -> list[str]:
    """The scratch databases of DR drills on this server's ``engine``."""
    if engine == "mariadb":
        out = _dr_run(["mariadb", "-N", "-B", "-e", "SHOW DATABASES"], "listing MariaDB databases")
    else:
        out = _dr_run([*backup.PG_AS, "psql", "-X", "-tA", "-d", "postgres", "-c", "SELECT datname FROM pg_database"],
                      "listing PostgreSQL databases")
    return sorted(n for n in (line.strip() for line in out.splitlines()) if DR_DB.match(n))


def dr_pool_dir(version: str) -> str:
    if not _PHP.match(version):
        raise backup.Problem(f"not a PHP version: {version!r}")
    return os.path.join(DR_POOLS, version, "fpm", "pool.d")


def dr_socket(scratch: str) -> str:
    return f"/run/php/tenantctl-dr-{scratch}.sock"


def _dr_pools() -> dict[str, list[str]]:
    """``{version: [scratch pool file]}`` of every installed PHP-FPM."""
    out: dict[str, list[str]] = {}
    versions = sorted(os.listdir(DR_POOLS)) if os.path.isdir(DR_POOLS) else []
    for v in versions:
        if _PHP.match(v) and os.path.isdir(dr_pool_dir(v)):
            found = [n for n in sorted(os.listdir(dr_pool_dir(v))) if DR_VHOST.match(n)]
            if found:
                out[v] = found
    return out


def dr_clean(b: backupjobs.BackupJob) -> backupjobs.BackupOutcome:
    """Remove every DR scratch copy on this server: vhosts (nginx reloaded), PHP-FPM pools
    (their php-fpm reloaded), web spaces, databases of ``b.dr_engines``, scratch users.
    What was removed is ``repos[0].removed``; what could not be is its ``error``."""
    removed: list[str] = []
    problems: list[str] = []
    vhosts = [n for n in sorted(os.listdir(DR_VHOSTS)) if DR_VHOST.match(n)] if os.path.isdir(DR_VHOSTS) else []
    for n in vhosts:
        os.unlink(os.path.join(DR_VHOSTS, n))
        removed.append(f"vhost {n}")
    if vhosts:
        problem = services.reload(services.NGINX, [])
        if problem:
            problems.append(f"nginx reload: {problem}")
    for version, pools in _dr_pools().items():
        for n in pools:
            os.unlink(os.path.join(dr_pool_dir(version), n))
            removed.append(f"php{version} pool {n}")
        problem = services.reload(services.php_fpm(version), [])
        if problem:
            problems.append(f"php{version}-fpm reload: {problem}")
    if os.path.isdir(DR_ROOT):
        for n in sorted(os.listdir(DR_ROOT)):
            shutil.rmtree(os.path.join(DR_ROOT, n), ignore_errors=True)
            removed.append(f"web space {n}")
    for engine in b.dr_engines:
        try:
            for db in _dr_databases(engine):
                backup.drop_db(engine, db)
                removed.append(f"{engine} database {db}")
        except backup.Problem as exc:
            problems.append(str(exc))
    for user in sorted(u.pw_name for u in pwd.getpwall() if DR_USER.match(u.pw_name)):
        code, out = files.run(["userdel", "--", user], timeout=60)
        if code == 0:
            removed.append(f"user {user}")
        else:
            problems.append(f"userdel {user}: {out[-restic.TAIL:]}")
    return backupjobs.BackupOutcome(changed=bool(removed), repos=[
        backupjobs.RepoResult("", not problems, "; ".join(problems), removed=removed)])


def _checked(path: str, what: str) -> str:
    if not _PATH.match(path) or ".." in path.split("/"):
        raise backup.Problem(f"not {what}: {path!r}")
    return path


def dr_vhost(domain: str, address: str, docroot: str, scratch: str, probe: str = "") -> str:
    """The scratch copy's vhost: plain HTTP on the spare's address, static files, and with
    ``probe`` (the drill's PHP script) that one script through the scratch pool; every
    other ``.php`` is refused."""
    if not _DOMAIN.match(domain):
        raise backup.Problem(f"not a domain: {domain!r}")
    addr = ipaddress.ip_address(address)
    listen = f"[{addr}]:80" if addr.version == 6 else f"{addr}:80"
    php = ""
    if probe:
        php = (f"    location = {PROBE_URL} {{\n        include fastcgi_params;\n"
               f"        fastcgi_param SCRIPT_FILENAME {_checked(probe, 'a probe script')};\n"
               f"        fastcgi_pass unix:{dr_socket(scratch)};\n    }}\n")
    return (f"# tenantctl DR drill {scratch}: a scratch copy, removed after the drill\n"
            f"server {{\n    listen {listen};\n    server_name {domain};\n"
            f"    root {_checked(docroot, 'a document root')};\n"
            f"    index {' '.join(INDEXES)};\n    access_log off;\n{php}"
            "    location ~ \\.php$ { return 403; }\n    location / { try_files $uri $uri/ =404; }\n}\n")


def _dr_serve(conf: str, scratch: str) -> None:
    path = os.path.join(DR_VHOSTS, f"tenantctl-dr-{scratch}.conf")
    files.write(path, conf.encode(), 0o644)
    code, out = files.run(["nginx", "-t"], timeout=60)
    if code != 0:
        os.unlink(path)
        raise backup.Problem(f"nginx -t refused the scratch vhost: {out[-restic.TAIL:]}")
    problem = services.reload(services.NGINX, [])
    if problem:
        raise backup.Problem(f"nginx reload: {problem}")


def dr_pool(scratch: str, user: str, home: str) -> str:
    """The scratch copy's PHP-FPM pool: its own user, confined to its scratch directory."""
    if not DR_USER.match(user):
        raise backup.Problem(f"not a scratch user: {user!r}")
    return (f"; tenantctl DR drill {scratch}: a scratch copy, removed after the drill\n"
            f"[tenantctl-dr-{scratch}]\nuser = {user}\ngroup = {user}\nlisten = {dr_socket(scratch)}\n"
            "listen.owner = www-data\nlisten.group = www-data\nlisten.mode = 0660\n"
            "pm = ondemand\npm.max_children = 2\npm.process_idle_timeout = 10s\nchdir = /\n"
            "security.limit_extensions = .php\nclear_env = yes\n"
            f"php_admin_value[open_basedir] = {_checked(home, 'a scratch directory')}/\n")


def _dr_php(version: str, scratch: str, user: str, home: str) -> None:
    path = os.path.join(dr_pool_dir(version), f"tenantctl-dr-{scratch}.conf")
    files.write(path, dr_pool(scratch, user, home).encode(), 0o644)
    code, out = files.run([f"php-fpm{version}", "-t"], timeout=60)
    if code != 0:
        os.unlink(path)
        raise backup.Problem(f"php-fpm{version} -t refused the scratch pool: {out[-restic.TAIL:]}")
    problem = services.reload(services.php_fpm(version), [dr_socket(scratch)])
    if problem:
        raise backup.Problem(f"php{version}-fpm reload: {problem}")


def dr_probe(target: str) -> bytes:
    """The drill's PHP probe: prints the sha256 of the restored file ``target`` (read by
    PHP as the scratch user) and PHP's version (``<hex> <major>.<minor>``)."""
    _checked(target, "a file to probe")  # no quote or backslash: safe in a single-quoted PHP string
    return ("<?php\n// tenantctl DR drill probe (removed with the scratch copy)\n"
            "header('Content-Type: text/plain');\n"
            f"$h = @hash_file('sha256', '{target}');\n"
            "echo ($h === false ? 'unreadable' : $h), ' ', PHP_MAJOR_VERSION, '.', PHP_MINOR_VERSION;\n").encode()


def _dr_files(r: restic.Restic, b: backupjobs.BackupJob, unit: backupjobs.Unit, part: backupjobs.Part,
              user: str) -> dict[str, Any]:
    _checked(part.path, "an absolute path")
    os.makedirs(DR_ROOT, mode=0o711, exist_ok=True)
    os.chmod(DR_ROOT, 0o711)
    target = os.path.join(DR_ROOT, b.scratch)
    os.makedirs(target, mode=0o750, exist_ok=True)
    copy_, res = backup.restored_files(r, part, target)
    docroot = os.path.join(copy_, "httpdocs")
    index = probe_file(docroot)
    probed = index or first_file(docroot)
    probe = ""
    if b.dr_php and probed:
        probe = os.path.join(target, "tenantctl-dr-probe.php")
        files.write(probe, dr_probe(os.path.join(docroot, probed)), 0o640)
        res.update(php_file=probed, php_digest=files.digest(files.read(os.path.join(docroot, probed)) or b""),
                   php_version=b.dr_php)
    _dr_run(["chown", "-R", f"{user}:www-data", "--", target], "chown of the scratch web space")
    _dr_run(["chmod", "-R", "g+rX,o-rwx", "--", target], "chmod of the scratch web space")
    if index:
        res.update(index=index, index_digest=files.digest(files.read(os.path.join(docroot, index)) or b""))
    if b.dr_fake_corrupt_index and probed:
        with open(os.path.join(docroot, probed), "ab") as fh:
            fh.write(FAKE_CORRUPTION)
    if probe:
        _dr_php(b.dr_php, b.scratch, user, target)
    _dr_serve(dr_vhost(unit.subscription, b.dr_address, docroot, b.scratch, probe), b.scratch)
    return res


#: static files a drill may fetch when the site has no index page (never a script)
STATIC = (".html", ".htm", ".txt", ".css", ".js", ".svg", ".png", ".jpg", ".gif", ".ico")
_PROBE = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")


def _files_in(docroot: str) -> list[str]:
    """The document root's files a drill may name (relative, name order, no dot files)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(docroot):
        dirnames.sort()
        for f in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, f), docroot)
            if _PROBE.match(rel) and not f.startswith(".") and os.path.isfile(os.path.join(dirpath, f)):
                out.append(rel)
    return out


def probe_file(docroot: str) -> str:
    """What the drill fetches over HTTP (relative to ``docroot``): an index page, else the
    first static file in name order ("" : nothing static to fetch)."""
    for n in INDEXES:
        if os.path.isfile(os.path.join(docroot, n)):
            return n
    return next((rel for rel in _files_in(docroot) if rel.lower().endswith(STATIC)), "")


def first_file(docroot: str) -> str:
    """The file the PHP probe hashes when nothing static is served (e.g. ``index.php``)."""
    return next(iter(_files_in(docroot)), "")


def dr_restore(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    """A scratch copy of each unit (in practice one) from ``b.local`` (another region's
    repository), served on ``b.dr_address``; per part the recomputed sums."""
    r = backup.local_repo(b, stage, "dr restore")
    if b.dr_fresh:
        left = dr_clean(b).repos[0]
        if not left.ok:
            raise backup.Problem(f"earlier drills' leftovers could not be removed: {left.error}")
    user = dr_user(b.scratch)
    if not DR_USER.match(user):
        raise ValueError(f"dr restore: not a scratch user: {user!r}")
    try:
        pwd.getpwnam(user)
    except KeyError:
        _dr_run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                 os.path.join(DR_ROOT, b.scratch), "--shell", "/usr/sbin/nologin", "--", user],
                "useradd of the scratch user")
    parts: list[backupjobs.PartResult] = []
    for u in b.units:
        for p in u.parts:
            work: Callable[[], dict[str, Any]]
            if p.kind == "files":
                work = functools.partial(_dr_files, r, b, u, p, user)
            elif p.kind == "db":  # stays until dr_clean
                work = functools.partial(backup.loaded_stats, r, p, f"tenantctl_dr_{b.scratch}_{len(parts)}",
                                         "the scratch copy")
            else:
                work = functools.partial(backup.restored_settings, r, p)
            parts.append(backup.part_result(u, p, work))
    return backupjobs.BackupOutcome(parts=parts)


def drill(b: backupjobs.BackupJob, stage: str) -> backupjobs.BackupOutcome:
    if b.dr == "clean":
        return dr_clean(b)
    if not backup.SCRATCH.match(b.scratch):
        raise ValueError(f"drill: not a scratch name: {b.scratch!r}")
    if b.dr == "restore":
        return dr_restore(b, stage)
    raise ValueError(f"drill: unknown dr phase {b.dr!r}")


OPS: dict[str, Callable[[backupjobs.BackupJob, str], backupjobs.BackupOutcome]] = {"drill": drill}


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    return backup.dispatch("drdrill", OPS, job, stage)
