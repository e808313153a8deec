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

Interactive shell (issue 14, ``hosting.ssh``): the grant is the item's file
``/etc/ssh/tenantctl-shell.d/<user>.conf`` (a ``Match User`` block that lifts the SFTP
group's ``ForceCommand internal-sftp``, first value wins in sshd). With it, the tenant's
login shell is ``/bin/sh`` and its chroot (the web space's root-owned top) holds a
root-owned ``bin/`` with a copy (or hard link) of the static busybox (no setuid bit) and
its applets, and ``dev/`` with null, zero, tty and urandom; without it, the login shell
is nologin and those entries are removed (before the file goes: a login in between gets
no shell). sshd reads the blocks through one ``Include`` of that directory, placed
before the role's SFTP block, and serves SFTP in-process (``Subsystem sftp
internal-sftp``: the chroot has no sftp-server); until the role carries both, the agent
puts them in the main configuration (a marked block; a container restart regenerates
that file, which the drift check reports); ``sshd -t`` checks the whole configuration before
sshd is sent HUP, else the batch's shell files are removed (SFTP only) and their items
fail with sshd's message.

Hard disk quota (RES-3): the item's file ``/etc/tenantctl/quota/<user>`` holds the
tenant's block limit in KiB; after the transaction ``setquota -u`` sets it on the file
system of ``/srv/www`` (no soft limit, no inode limit), or lifts it (0) when the file
went away; a file system without quotas fails the item with setquota's message (the
role records the server's support in ``/etc/tenantctl/facts/hard-quota``; placement keeps
hard quotas off servers that do not offer them).

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
import stat

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
#: = ``controller.drivers.hosting.render.SHELL_DIR``: one sshd ``Match User`` block per
#: tenant granted a shell
SHELL_DIR = "/etc/ssh/tenantctl-shell.d"
SHELL_INCLUDE = f"Include {SHELL_DIR}/*.conf"
SHELL_MARKS = ("# BEGIN tenantctl tenants (shell)", "# END tenantctl tenants (shell)")
SFTP_MARK = "# BEGIN tenantctl tenants (SFTP)"
SUBSYSTEM = "Subsystem sftp internal-sftp"
#: the role's file (``Match Group`` of the SFTP group) and the main configurations
SSHD_TENANTS = "/etc/ssh/tenantctl-tenants.conf"
SSHD_EMBEDDED = "/etc/ssh/tenantctl_sshd_config"
SSHD_DEBIAN = "/etc/ssh/sshd_config"
SSHD_PID = "/run/sshd.pid"
BUSYBOX = "/bin/busybox"
LOGIN_SHELL = "/bin/sh"
NOLOGIN = "/usr/sbin/nologin"
#: = ``controller.drivers.hosting.render.QUOTA_DIR``
QUOTA_DIR = "/etc/tenantctl/quota"
#: what the tenant's chroot gets for a shell (root-owned, removed when revoked)
SHELL_ENTRIES = ("bin", "dev")
#: applets linked in the chroot's bin (any other runs as ``busybox NAME``: nothing in
#: busybox gains privileges without a setuid bit)
APPLETS = ("sh", "ash", "ls", "cat", "cp", "mv", "rm", "mkdir", "rmdir", "ln", "chmod", "touch", "echo", "printf",
           "pwd", "head", "tail", "grep", "egrep", "fgrep", "sed", "awk", "find", "xargs", "sort", "uniq", "wc",
           "du", "tar", "gzip", "gunzip", "zcat", "unzip", "vi", "less", "more", "diff", "date", "env", "id",
           "test", "[", "true", "false", "sleep", "basename", "dirname", "readlink", "realpath", "stat",
           "md5sum", "sha256sum", "cut", "tr", "tee", "clear", "which", "whoami", "expr", "seq", "patch")
#: (name, major, minor) character devices of the shell's /dev
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9), ("tty", 5, 0))
_FTP_LOGIN = re.compile(r"^[a-z][a-z0-9._-]{0,31}@[a-z0-9.-]{1,253}$")
_FTP_HASH = re.compile(r"^\$6\$[A-Za-z0-9./]{1,16}\$[A-Za-z0-9./]{86}$")

_users: set[str] = set()
_unlocked: set[str] = set()
#: busybox's applets (``busybox --list``, asked once per run)
_applets: set[str] = set()


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


def shell_file(user: str) -> str:
    return f"{SHELL_DIR}/{user}.conf"


def shell_granted(item: jobs.Item) -> bool:
    """The item grants its tenant a shell: it installs the tenant's sshd block."""
    assert item.user is not None
    return any(f.dest == shell_file(item.user.name) and f.src for f in item.files)


def _login_shell(user: str, shell: str) -> bool:
    if pwd.getpwnam(user).pw_shell == shell:
        return False
    code, out = files.run(["usermod", "--shell", shell, user])
    if code != 0:
        raise RuntimeError(f"usermod --shell {shell} {user}: {out}")
    return True


def _link_or_copy(src: str, dest: str) -> None:
    """``dest`` the same bytes as ``src``, root-owned 0755 without setuid: a hard link
    on the same file system (the tenant cannot write either), else a copy."""
    st = os.stat(src)
    if os.path.lexists(dest):
        cur = os.lstat(dest)
        if (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev) or (
                os.path.isfile(dest) and not os.path.islink(dest) and cur.st_size == st.st_size
                and files.read(dest) == files.read(src)):
            if cur.st_mode & 0o7777 != 0o755 or cur.st_uid != 0:
                os.chown(dest, 0, 0, follow_symlinks=False)
                os.chmod(dest, 0o755)
            return
        os.unlink(dest)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    os.chown(dest, 0, 0)
    os.chmod(dest, 0o755)


def ensure_shell(user: str, home: str, granted: bool) -> bool:
    """The tenant's login shell and the chroot's ``bin``/``dev`` (see the docstring)."""
    if not granted:
        changed = _login_shell(user, NOLOGIN)
        for entry in SHELL_ENTRIES:
            path = os.path.join(home, entry)
            if os.path.lexists(path):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
                changed = True
        return changed
    if not os.path.isfile(BUSYBOX):
        raise RuntimeError(f"{BUSYBOX} is missing (package busybox-static): no shell")
    changed = False
    bindir = os.path.join(home, "bin")
    if not os.path.isdir(bindir) or os.path.islink(bindir):
        changed = True
    changed |= files.ensure_dir(bindir, 0, 0, 0o755)
    _link_or_copy(BUSYBOX, os.path.join(bindir, "busybox"))
    if not _applets:
        code, out = files.run([BUSYBOX, "--list"])
        _applets.update(out.split() if code == 0 else [])
    for applet in APPLETS:
        link = os.path.join(bindir, applet)
        if applet in _applets and not os.path.lexists(link):
            os.symlink("busybox", link)
            changed = True
    devdir = os.path.join(home, "dev")
    changed |= files.ensure_dir(devdir, 0, 0, 0o755)
    for name, major, minor in DEVICES:
        path = os.path.join(devdir, name)
        if not os.path.lexists(path):
            try:
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
                os.chmod(path, 0o666)
            except OSError:
                continue  # a file system mounted nodev: the shell works without them
            changed = True
    changed |= _login_shell(user, LOGIN_SHELL)  # last: the tree is in place first
    return changed


def sshd_config() -> str:
    return SSHD_EMBEDDED if os.path.exists(SSHD_EMBEDDED) else SSHD_DEBIAN


def _subsystem_line(line: str) -> bool:
    return line.split()[:2] == ["Subsystem", "sftp"]


def shell_ready() -> bool:
    """sshd reads the shell blocks (the ``Include`` is in the role's tenants file or in
    the main configuration) and serves SFTP in-process (``Subsystem sftp
    internal-sftp``: a shell's chroot has no sftp-server, and sshd 9.2 takes no
    Subsystem inside a Match block)."""
    main = files.read(sshd_config())
    lines = [] if main is None else main.decode(errors="replace").splitlines()
    tenants = files.read(SSHD_TENANTS)
    included = SHELL_INCLUDE in lines or (tenants is not None and SHELL_INCLUDE in tenants.decode(
        errors="replace").splitlines())
    internal = [ln.split()[2:3] for ln in lines if _subsystem_line(ln)] == [["internal-sftp"]]
    return included and internal


def prepare_sshd() -> bool:
    """Make ``shell_ready`` true in the main configuration: the ``Include`` in a marked
    block before the role's SFTP block, the sftp subsystem in-process (the same protocol
    for root and every tenant). True if it changed the file."""
    if shell_ready():
        return False
    path = sshd_config()
    data = files.read(path)
    lines = [] if data is None else data.decode().splitlines()
    if SFTP_MARK not in lines:
        raise RuntimeError(f"{path} has no tenants' block ({SFTP_MARK!r}): the role was not applied")
    lines = [SUBSYSTEM if _subsystem_line(ln) else ln for ln in lines]
    if SUBSYSTEM not in lines:
        lines.insert(lines.index(SFTP_MARK), SUBSYSTEM)
    tenants = files.read(SSHD_TENANTS)
    if SHELL_INCLUDE not in lines and not (tenants is not None and SHELL_INCLUDE in tenants.decode(
            errors="replace").splitlines()):
        at = lines.index(SFTP_MARK)
        lines[at:at] = [SHELL_MARKS[0], SHELL_INCLUDE, SHELL_MARKS[1]]
    files.write(path, ("\n".join(lines) + "\n").encode(), os.stat(path).st_mode & 0o777)
    return True


def shell_state() -> dict[str, bytes | None]:
    try:
        names = sorted(os.listdir(SHELL_DIR))
    except FileNotFoundError:
        return {}
    return {n: files.read(os.path.join(SHELL_DIR, n)) for n in names}


def reload_sshd(job: jobs.Job, before: dict[str, bytes | None], results: dict[str, jobs.ItemResult]) -> None:
    """After the transaction: when the shell blocks changed, or a granted one is not
    read, check sshd's whole configuration and send it HUP (existing sessions stay);
    a configuration sshd refuses loses this batch's shell blocks (SFTP only)."""
    granted = [i for i in job.items if i.user is not None and i.action != "delete" and results[i.name].ok
               and shell_granted(i)]
    if shell_state() == before and (not granted or shell_ready()):
        return
    if granted:
        prepare_sshd()
    code, out = files.run(["/usr/sbin/sshd", "-t", "-f", sshd_config()], timeout=60)
    if code != 0:
        for i in granted:
            assert i.user is not None
            files.write(shell_file(i.user.name), None)
            results[i.name] = jobs.ItemResult(False, f"sshd refused the shell block, SFTP only: {out.strip()}", True)
        code, out = files.run(["/usr/sbin/sshd", "-t", "-f", sshd_config()], timeout=60)
        if code != 0:
            raise RuntimeError(f"sshd -t: {out.strip()}")
    code, out = files.run(["pkill", "--signal", "HUP", "--pidfile", SSHD_PID])
    if code not in (0, 1):
        raise RuntimeError(f"reloading sshd: {out.strip()}")


def shell_drift(expect: list[jobs.Expect]) -> dict[str, str]:
    """Subscriptions granted a shell whose block sshd does not read (a restarted
    container regenerates the main configuration without the ``Include``)."""
    if shell_ready():
        return {}
    out = {}
    for e in expect:
        if e.user is not None and e.expect.get(shell_file(e.user.name)) is not None:
            out[e.name] = f"sshd does not include {SHELL_DIR} (no shell)"
    return out


def quota_file(user: str) -> str:
    return f"{QUOTA_DIR}/{user}"


def quota_limit(data: bytes | None) -> int:
    """The KiB limit of a quota file (0: none)."""
    if data is None:
        return 0
    lines = [ln.strip() for ln in data.decode().splitlines() if ln.strip() and not ln.startswith("#")]
    if len(lines) != 1 or not lines[0].isdigit():
        raise RuntimeError("malformed quota file")
    return int(lines[0])


def set_quotas(job: jobs.Job, before: set[str], results: dict[str, jobs.ItemResult]) -> None:
    """``setquota`` for every item that has a quota file, or had one before this
    transaction (its limit lifted: also before a deleted tenant's user goes, so that a
    later user with its uid does not inherit it); a failure fails that item only."""
    mount = ""
    for item in job.items:
        if item.user is None or not results[item.name].ok:
            continue
        path = quota_file(item.user.name)
        granted = any(f.dest == path and f.src for f in item.files)
        if not granted and path not in before:
            continue
        try:
            limit = quota_limit(files.read(path) if granted else None)
            if not mount:
                code, out = files.run(["findmnt", "--noheadings", "--first-only", "--output", "TARGET",
                                       "--target", WEB_ROOT])
                if code != 0 or not out.strip():
                    raise RuntimeError(f"findmnt {WEB_ROOT}: {out.strip()}")
                mount = out.strip()
            code, out = files.run(["setquota", "-u", item.user.name, "0", str(limit), "0", "0", mount], timeout=60)
            if code != 0:
                raise RuntimeError(f"setquota: {out.strip()}")
        except (OSError, RuntimeError) as exc:
            results[item.name] = jobs.ItemResult(False, f"hard quota: {exc}", True)


def quota_files() -> set[str]:
    try:
        return {os.path.join(QUOTA_DIR, n) for n in os.listdir(QUOTA_DIR)}
    except FileNotFoundError:
        return set()


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
                changed |= ensure_shell(item.user.name, item.user.home, shell_granted(item))
        except (OSError, RuntimeError) as exc:
            return jobs.ItemResult(False, f"web space: {exc}")
        return jobs.ItemResult(True, "", changed)

    shells = shell_state()
    quotas = quota_files()
    out = transaction.Transaction(job, stage, prepare).run()
    results = dict(out.results)
    with phases.timed("quota"):
        set_quotas(job, quotas, results)
    try:
        with phases.timed("sshd"):
            reload_sshd(job, shells, results)
    except (OSError, RuntimeError) as exc:
        for item in job.items:
            if item.user is not None and results[item.name].ok and any(f.dest.startswith(SHELL_DIR + "/")
                                                                        for f in item.files):
                results[item.name] = jobs.ItemResult(False, f"sshd: {exc}", True)
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
        drift = check.drift(job.expect)
        for name, what in shell_drift(job.expect).items():
            drift[name] = f"{drift[name]}; {what}" if name in drift else what
        return jobs.Outcome(jobs.VERSION, drift=drift)
    raise ValueError(f"the hosting agent does not do {job.op!r}")
