"""The remote half of the web and php drivers: the ``hosting`` entry of the agent
(standard library and ``controller.agent`` only: it runs on the server, from the
zipapp). One run per server batch.

``op: apply``: make users and web spaces first (never overwriting what exists; php
pools need their users), then one transaction over the managed files (``controller.
agent.transaction``: validate once with ``nginx -t`` / ``php-fpm -t``, reload once,
verified, rolled back on failure, journaled), then remove the users and homes of
deleted subscriptions whose files are gone. ``op: check``: drift of files, users and
homes in one pass.

The web space is also the chroot of the tenant's SFTP logins (issue 14): the home is
root-owned 0751 (group: the tenant), each entry below it the tenant's, group www-data,
0750; the tenant's user is in the SFTP group and not locked (sshd refuses a locked
account even by key); its authorized_keys file is one of the transaction's files.

Logs (LOG-1): ``<home>/logs`` is root-owned, group the tenant, 0751: nginx (root) opens
the files there, so the tenant must not be able to swap them for links; nginx's workers
(www-data) reopen them after a rotation, so they traverse it. ``access.log`` and
``error.log`` are made before nginx first opens them, www-data's with the tenant's group,
0640 (as logrotate recreates them): the tenant reads them, other tenants do not.

FTPS (issue 14): each tenant's accounts are one transaction file
``/etc/pure-ftpd/tenantctl/<user>.passwd`` (``login:hash`` lines); after the
transaction the agent joins them, with the uid, gid and chroot of each file's user, into
pure-ftpd's ``tenantctl.passwd`` (0600) and rebuilds ``tenantctl.pdb`` with ``pure-pw
mkdb`` (atomic; pure-ftpd reads it at each login: a removed file refuses logins at once).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil

from controller.agent import check, files, jobs, phases, transaction

WEB_ROOT = "/srv/www"
#: = ``naming.SFTP_GROUP``: sshd chroots the members of this group (SFTP only)
SFTP_GROUP = "tenantctl-sftp"
#: the entries of the web space below its root-owned top (nginx's group, not others')
GATED = ("httpdocs", "cgi-bin", "error_docs", "anon_ftp", "sites")

#: = ``controller.drivers.hosting.ftp``
FTP_FRAGMENTS = "/etc/pure-ftpd/tenantctl"
FTP_PASSWD = "/etc/pure-ftpd/tenantctl.passwd"
FTP_PUREDB = "/etc/pure-ftpd/tenantctl.pdb"
#: = ``controller.drivers.hosting.webstats``: GoAccess reports (root writes, nginx reads)
STATS_DIR = "/var/lib/tenantctl/stats"
STATS_HTPASSWD_DIR = "/etc/nginx/tenantctl-stats"
LOG_FILES = ("access.log", "error.log")
_FTP_LOGIN = re.compile(r"^[a-z][a-z0-9._-]{0,31}@[a-z0-9.-]{1,253}$")
_FTP_HASH = re.compile(r"^\$6\$[A-Za-z0-9./]{1,16}\$[A-Za-z0-9./]{86}$")

_users: set[str] = set()
_unlocked: set[str] = set()


def _ensure_group() -> None:
    try:
        grp.getgrnam(SFTP_GROUP)
    except KeyError:
        code, out = files.run(["groupadd", "--system", SFTP_GROUP])
        if code != 0 and "already exists" not in out:
            raise RuntimeError(f"groupadd {SFTP_GROUP}: {out}") from None


def _shadow_locked() -> set[str]:
    """Users whose password field is locked (``!``): sshd without PAM refuses them
    even a key login, so tenants get ``*`` (no password, not locked)."""
    out = set()
    with open("/etc/shadow", encoding="utf-8") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if rest.startswith("!"):
                out.add(name)
    return out


def ensure_user(name: str, home: str) -> bool:
    """The tenant's user (member of ``SFTP_GROUP``, not locked) and its home: the top of
    the web space and the chroot of its SFTP logins, so root-owned and not writable by
    anyone else (OpenSSH's ChrootDirectory rule); its group reads it, others (nginx
    among them) only traverse it: every entry below is the tenant's, group www-data,
    0750, so that other tenants' PHP cannot enter (the isolation of before)."""
    changed = False
    if not _users:
        _users.update(p.pw_name for p in pwd.getpwall())
        _unlocked.update(_users - _shadow_locked())
    _ensure_group()
    if name not in _users:
        code, out = files.run(["useradd", "--user-group", "--no-create-home", "--home-dir", home,
                               "--shell", "/usr/sbin/nologin", "--groups", SFTP_GROUP, "--password", "*", name])
        if code != 0:
            raise RuntimeError(f"useradd {name}: {out}")
        _users.add(name)
        _unlocked.add(name)
        changed = True
    if name not in grp.getgrnam(SFTP_GROUP).gr_mem:
        code, out = files.run(["usermod", "--append", "--groups", SFTP_GROUP, name])
        if code != 0:
            raise RuntimeError(f"usermod {name}: {out}")
        changed = True
    if name not in _unlocked:
        code, out = files.run(["usermod", "--password", "*", name])
        if code != 0:
            raise RuntimeError(f"usermod {name}: {out}")
        _unlocked.add(name)
        changed = True
    os.makedirs(WEB_ROOT, mode=0o711, exist_ok=True)
    if os.stat(WEB_ROOT).st_mode & 0o777 != 0o711:
        os.chmod(WEB_ROOT, 0o711)
    pw = pwd.getpwnam(name)
    changed |= files.ensure_dir(home, 0, pw.pw_gid, 0o751)
    changed |= files.ensure_dir(os.path.join(home, "tmp"), pw.pw_uid, pw.pw_gid, 0o700)
    changed |= files.ensure_dir(os.path.join(home, "logs"), 0, pw.pw_gid, 0o751)
    for log in LOG_FILES:
        changed |= ensure_log(os.path.join(home, "logs", log), pw.pw_gid)
    www = grp.getgrnam("www-data").gr_gid
    for d in (STATS_DIR, os.path.join(STATS_DIR, name), STATS_HTPASSWD_DIR):
        changed |= files.ensure_dir(d, 0, www, 0o750)
    return changed


def ensure_log(path: str, gid: int) -> bool:
    """A log file nginx writes and the tenant reads (www-data:<tenant> 0640)."""
    www = pwd.getpwnam("www-data").pw_uid
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        try:
            os.fchown(fd, www, gid)
            os.fchmod(fd, 0o640)
        finally:
            os.close(fd)
        return True
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    changed = False
    if (st.st_uid, st.st_gid) != (www, gid):
        os.chown(path, www, gid, follow_symlinks=False)
        changed = True
    if st.st_mode & 0o7777 != 0o640:
        os.chmod(path, 0o640)
        changed = True
    return changed


def ftp_passwd() -> bytes:
    """pure-ftpd's passwd file from every tenant's account file (see the docstring)."""
    lines = []
    try:
        entries = sorted(os.listdir(FTP_FRAGMENTS))
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if not entry.endswith(".passwd"):
            continue
        try:
            pw = pwd.getpwnam(entry[: -len(".passwd")])
        except KeyError:
            continue  # the user goes with its file: a leftover is ignored
        with open(os.path.join(FTP_FRAGMENTS, entry), encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                login, _, hashed = line.partition(":")
                if not _FTP_LOGIN.fullmatch(login) or not _FTP_HASH.fullmatch(hashed):
                    raise RuntimeError(f"{entry}: malformed account line")
                lines.append(f"{login}:{hashed}:{pw.pw_uid}:{pw.pw_gid}::{pw.pw_dir}/./::::::::::::\n")
    return "".join(lines).encode()


def rebuild_ftp() -> bool:
    """Rebuild the PureDB when the joined accounts changed; True if it did."""
    if not os.path.isdir(FTP_FRAGMENTS) and not os.path.exists(FTP_PASSWD):
        return False  # no FTP on this server
    data = ftp_passwd()
    if files.read(FTP_PASSWD) == data and os.path.exists(FTP_PUREDB):
        return False
    files.write(FTP_PASSWD, data, 0o600)
    code, out = files.run(["pure-pw", "mkdb", FTP_PUREDB, "-f", FTP_PASSWD], timeout=60)
    if code != 0:
        raise RuntimeError(f"pure-pw mkdb: {out.strip()}")
    os.chmod(FTP_PUREDB, 0o600)
    return True


def copy_tree(src: str, dest: str, uid: int, gid: int) -> None:
    """Copy a skeleton entry once, owned by the tenant (never over existing files),
    dated now: the staged skeleton is dated 1970, which would break Last-Modified."""
    shutil.copytree(src, dest, symlinks=False, copy_function=shutil.copy)
    for root, _dirs, names in os.walk(dest):
        os.chown(root, uid, gid)
        os.chmod(root, 0o755)
        os.utime(root)
        for f in names:
            p = os.path.join(root, f)
            os.chown(p, uid, gid)
            os.chmod(p, 0o644)
            os.utime(p)


def ensure_webspace(user: str, home: str, entries: list[str], docroots: list[str], skel: str) -> bool:
    pw = pwd.getpwnam(user)
    www = grp.getgrnam("www-data").gr_gid
    changed = False
    for entry in entries:
        dest = os.path.join(home, entry)
        if not os.path.lexists(dest):
            copy_tree(os.path.join(skel, entry), dest, pw.pw_uid, pw.pw_gid)
            changed = True
    if docroots:
        changed |= files.ensure_dir(os.path.join(home, "sites"), pw.pw_uid, www, 0o750)
    for root in docroots:
        if not os.path.lexists(root):
            copy_tree(os.path.join(skel, "httpdocs"), root, pw.pw_uid, pw.pw_gid)
            changed = True
    for entry in GATED:  # the gate of each entry (the home itself is open to traverse)
        dest = os.path.join(home, entry)
        if os.path.isdir(dest) and not os.path.islink(dest):
            changed |= files.ensure_dir(dest, pw.pw_uid, www, 0o750)
    return changed


def remove_user(user: str, home: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        pass
    else:
        code, out = files.run(["userdel", "--force", user])
        if code != 0 and "does not exist" not in out:
            raise RuntimeError(f"userdel {user}: {out}")
    try:
        grp.getgrnam(user)
        files.run(["groupdel", user])
    except KeyError:
        pass
    if home.startswith(WEB_ROOT + "/") and os.path.lexists(home):
        shutil.rmtree(home)
    stats = os.path.join(STATS_DIR, user)
    if os.path.lexists(stats):
        shutil.rmtree(stats)


def apply(job: jobs.Job, stage: str) -> jobs.Outcome:
    skel = os.path.join(stage, job.skel)

    def prepare(item: jobs.Item) -> jobs.ItemResult | None:
        if item.user is None or item.action == "delete":
            return None
        try:
            with phases.timed("users"):
                changed = ensure_user(item.user.name, item.user.home)
                changed |= ensure_webspace(item.user.name, item.user.home, item.webspace, item.docroots, skel)
        except (OSError, RuntimeError) as exc:
            return jobs.ItemResult(False, f"web space: {exc}")
        return jobs.ItemResult(True, "", changed)

    out = transaction.Transaction(job, stage, prepare).run()
    results = dict(out.results)
    if any(f.dest.startswith(FTP_FRAGMENTS + "/") for item in job.items for f in item.files):
        try:
            with phases.timed("ftp"):
                rebuild_ftp()
        except (OSError, RuntimeError) as exc:
            for item in job.items:
                if any(f.dest.startswith(FTP_FRAGMENTS + "/") for f in item.files) and results[item.name].ok:
                    results[item.name] = jobs.ItemResult(False, f"FTP accounts: {exc}", True)
    for item in job.items:  # users and homes go once their files are gone
        if item.action == "delete" and item.user is not None and results[item.name].ok:
            try:
                with phases.timed("remove_users"):
                    remove_user(item.user.name, item.user.home)
            except (OSError, RuntimeError) as exc:
                results[item.name] = jobs.ItemResult(False, f"removal: {exc}", True)
    return jobs.Outcome(out.version, results=results, reloaded=out.reloaded, recovered=out.recovered)


def handle(job: jobs.Job, stage: str) -> jobs.Outcome:
    if job.op == "apply":
        return apply(job, stage)
    if job.op == "check":
        return jobs.Outcome(jobs.VERSION, drift=check.drift(job.expect))
    raise ValueError(f"the hosting agent does not do {job.op!r}")
