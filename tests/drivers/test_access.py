"""SFTP by key into the web space (issue 14 point 1) against the embedded servers, with
the real OpenSSH client of the host: a tenant uploads into httpdocs and nginx serves
it, the session is chrooted (``/`` is the web space, other tenants' spaces are out of
reach, no shell), suspension refuses the login at once and activation brings it back, a
removed key is refused after the next apply; root's own login by key keeps working.
``hosting.ssh`` gives an interactive shell (busybox) in the same chroot, lost on the
pass that turns it off.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.drivers import base, naming
from controller.drivers.hosting import render

from .conftest import Cluster
from .test_hosting import Env, curl, sub_doc

pytestmark = [pytest.mark.embedded, pytest.mark.timeout(300)]

SERVER, ADDRESS = "drv-a", "127.0.40.1"


class Keys:
    """Key pairs made with the real ssh-keygen, and the sftp client run in batch mode."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.known_hosts = tmp / "known_hosts"

    def make(self, name: str) -> tuple[Path, str]:
        path = self.tmp / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(path)],
                       check=True)
        return path, (self.tmp / f"{name}.pub").read_text().strip()

    def _opts(self, key: Path) -> list[str]:
        return ["-i", str(key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]

    def sftp(self, key: Path, sub: str, commands: str) -> subprocess.CompletedProcess[str]:
        batch = self.tmp / "batch"
        batch.write_text(commands)
        return subprocess.run(["sftp", *self._opts(key), "-b", str(batch), f"{naming.system_user(sub)}@{ADDRESS}"],
                              capture_output=True, text=True, timeout=60, check=False)

    def ssh(self, key: Path, sub: str, *argv: str, tty: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", *self._opts(key), "-tt" if tty else "-T", f"{naming.system_user(sub)}@{ADDRESS}",
                               *argv], input="", capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def env(cluster: Cluster, tmp_path: Path) -> Iterator[Env]:
    e = Env(cluster, tmp_path)
    try:
        yield e
    finally:
        e.close()


def refused(out: subprocess.CompletedProcess[str]) -> bool:
    return out.returncode != 0 and "Permission denied" in out.stderr


def test_sftp_upload_is_served_chrooted_and_isolated(env: Env, tmp_path: Path) -> None:
    a, b = "a-sftp.access.test", "b-sftp.access.test"
    keys = Keys(tmp_path)
    key_a, pub_a = keys.make("alice")
    key_b, pub_b = keys.make("bob")
    env.subs = [sub_doc(a, access={"sshKeys": [pub_a]}), sub_doc(b, access={"sshKeys": [pub_b]})]
    report = env.reconcile()
    assert report.ok, report.failed
    # the web space is the chroot: root-owned, the tenant's group reads, others traverse
    assert env.ssh(SERVER, "stat", "-c", "%U:%G %a", naming.home(a)).text.split() == [
        f"root:{naming.system_user(a)}", "751"]
    index = tmp_path / "index.php"
    index.write_text("<?php echo 'uploaded by ', posix_getpwuid(posix_geteuid())['name'], \"\\n\";\n")
    out = keys.sftp(key_a, a, f"put {index} /httpdocs/index.php\nls -1 /\nls -1 /..\n")
    assert out.returncode == 0, out.stderr
    code, body = curl(a, ADDRESS, "/index.php")
    assert code == 200 and body.strip() == f"uploaded by {naming.system_user(a)}", body
    # ls / shows the web space only (and /.. is / again)
    listing = [line.strip().rstrip("/") for line in out.stdout.splitlines() if not line.startswith("sftp>")]
    assert {"/httpdocs", "/error_docs", "/tmp"} <= set(listing), listing
    assert not {"/etc", "/srv", "/usr", "/root"} & set(listing), listing
    # another tenant's web space is out of reach: not even a path to it
    out = keys.sftp(key_a, a, f"get {naming.docroot(b)}/index.html {tmp_path / 'stolen'}\n")
    assert out.returncode != 0 and not (tmp_path / "stolen").exists()
    out = keys.sftp(key_a, a, f"get /../{b}/httpdocs/index.html {tmp_path / 'stolen'}\n")
    assert out.returncode != 0 and not (tmp_path / "stolen").exists()
    # a key logs in only as its own tenant
    assert refused(keys.sftp(key_a, b, "ls /\n"))
    assert keys.sftp(key_b, b, "ls /\n").returncode == 0
    # no shell: the forced internal-sftp never runs a command
    shell = keys.ssh(key_a, a, "id")
    assert "uid=" not in shell.stdout
    # root still logs in by tenantctl's key (the driver's own transport)
    assert env.ssh(SERVER, "id", "-u").text.strip() == "0"


def test_suspension_refuses_logins_at_once_and_a_removed_key_after_the_next_apply(env: Env, tmp_path: Path) -> None:
    s = "s-sftp.access.test"
    keys = Keys(tmp_path)
    key1, pub1 = keys.make("one")
    key2, pub2 = keys.make("two")
    env.subs = [sub_doc(s, access={"sshKeys": [pub1, pub2]})]
    assert env.reconcile().ok
    assert keys.sftp(key1, s, "ls /\n").returncode == 0
    env.subs = [sub_doc(s, state="suspended", stateReason="manual", access={"sshKeys": [pub1, pub2]})]
    report = env.reconcile()
    assert report.ok, report.failed
    assert refused(keys.sftp(key1, s, "ls /\n"))  # LIFE-2
    env.subs = [sub_doc(s, access={"sshKeys": [pub1, pub2]})]
    assert env.reconcile().ok
    assert keys.sftp(key2, s, "ls /\n").returncode == 0
    env.subs = [sub_doc(s, access={"sshKeys": [pub2]})]
    assert env.reconcile().ok
    assert refused(keys.sftp(key1, s, "ls /\n"))
    assert keys.sftp(key2, s, "ls /\n").returncode == 0
    # deletion: the user and its key file are gone with the web space
    env.subs = []
    assert env.reconcile().ok
    assert refused(keys.sftp(key2, s, "ls /\n"))
    assert env.ssh(SERVER, "test", "-e", naming.ssh_keys(s)).returncode != 0


def test_a_web_space_of_the_old_layout_becomes_a_chroot_and_a_lost_key_file_is_drift(env: Env, tmp_path: Path) -> None:
    s = "m-sftp.access.test"
    keys = Keys(tmp_path)
    key, pub = keys.make("mig")
    env.subs = [sub_doc(s, access={"sshKeys": [pub]})]
    assert env.reconcile().ok
    user, home = naming.system_user(s), naming.home(s)
    # the layout before issue 14: the home is the tenant's, its entries open to others
    old = (f"chown {user}:www-data {home} && chmod 0750 {home} && chown {user}:{user} {home}/httpdocs "
           f"&& chmod 0755 {home}/httpdocs && usermod --password '!' {user} && rm {naming.ssh_keys(s)}")
    assert env.ssh(SERVER, "sh", "-c", old).returncode == 0
    assert refused(keys.sftp(key, s, "ls /\n"))
    ds = env.desired()
    item = env.engine.plan(ds).subscriptions[s].typed
    change = base.Change(s, "ensure", env.web.slice(item))
    assert naming.ssh_keys(s) in env.web.drifted(SERVER, [change]).get(s, "")  # the lost key file is drift
    [result] = env.web.apply(SERVER, [change])
    assert result.outcome == "provisioned", result
    stat = env.ssh(SERVER, "stat", "-c", "%U:%G %a", home, f"{home}/httpdocs").text.split()
    assert stat == [f"root:{user}", "751", f"{user}:www-data", "750"], stat
    assert keys.sftp(key, s, "ls /httpdocs\n").returncode == 0
    assert env.web.drifted(SERVER, [change]) == {}


def test_hosting_ssh_gives_a_shell_in_the_same_chroot_until_turned_off(env: Env, tmp_path: Path) -> None:
    a, b = "a-shell.access.test", "b-shell.access.test"
    keys = Keys(tmp_path)
    key_a, pub_a = keys.make("shelly")
    key_b, pub_b = keys.make("plain")

    def subs(ssh: bool) -> list[dict[str, object]]:
        return [sub_doc(a, access={"sshKeys": [pub_a]}, customizations={"hosting": {"ssh": ssh}}),
                sub_doc(b, access={"sshKeys": [pub_b]})]
    env.subs = subs(True)
    report = env.reconcile()
    assert report.ok, report.failed
    home = naming.home(a)
    out = keys.ssh(key_a, a, f"echo hi; id -u; ls /; cat /../{b}/httpdocs/index.html; ls /srv /etc/passwd")
    lines = out.stdout.splitlines()
    assert lines[:2] == ["hi", env.ssh(SERVER, "id", "-u", naming.system_user(a)).text.strip()], out
    listing = set(lines[2:])
    assert {"bin", "dev", "httpdocs", "logs", "tmp"} <= listing, out
    assert not {"etc", "srv", "usr", "root", "proc"} & listing, out  # the web space only
    assert out.returncode != 0 and "No such file" in out.stderr  # other tenants, the host: out of reach
    # a terminal when asked for one; SFTP still works (in-process: no sftp-server in the chroot)
    tty = keys.ssh(key_a, a, "[ -t 0 ] && echo terminal", tty=True)
    assert "terminal" in tty.stdout, tty
    upload = tmp_path / "up.txt"
    upload.write_text("by sftp\n")
    assert keys.sftp(key_a, a, f"put {upload} /httpdocs/up.txt\n").returncode == 0
    assert keys.ssh(key_a, a, "cat /httpdocs/up.txt").stdout == "by sftp\n"
    # the shell is root's, unwritable and without privileges
    st = env.ssh(SERVER, "stat", "-c", "%U:%G %a", home, f"{home}/bin", f"{home}/bin/busybox").text.split()
    assert st == [f"root:{naming.system_user(a)}", "751", "root:root", "755", "root:root", "755"], st
    assert "Read-only" in keys.ssh(key_a, a, "touch /bin/x || echo Read-only").stdout
    # the other tenant has no shell: SFTP only
    plain = keys.ssh(key_b, b, "echo hi")
    assert "hi" not in plain.stdout.splitlines() and keys.sftp(key_b, b, "ls /\n").returncode == 0
    # a restarted container's sshd configuration lacks the Include: drift, repaired by an apply
    ds = env.desired()
    change = base.Change(a, "ensure", env.web.slice(env.engine.plan(ds).subscriptions[a].typed))
    main = "/etc/ssh/tenantctl_sshd_config"
    assert env.ssh(SERVER, "sed", "-i", "/tenantctl tenants (shell)/d;/tenantctl-shell.d/d", main).returncode == 0
    assert "sshd does not include" in env.web.drifted(SERVER, [change]).get(a, "")
    [result] = env.web.apply(SERVER, [change])
    assert result.outcome == "provisioned", result
    assert keys.ssh(key_a, a, "echo back").stdout.splitlines() == ["back"]
    # turned off: SFTP only on this very pass, the shell's files gone
    env.subs = subs(False)
    assert env.reconcile().ok
    off = keys.ssh(key_a, a, "echo hi")
    assert "hi" not in off.stdout.splitlines(), off
    assert keys.sftp(key_a, a, "ls /httpdocs\n").returncode == 0
    assert env.ssh(SERVER, "sh", "-c", f'test -e {home}/bin || test -e {home}/dev').returncode != 0
    assert env.ssh(SERVER, "getent", "passwd", naming.system_user(a)).text.strip().endswith(":/usr/sbin/nologin")


def test_without_quota_support_the_role_says_why_and_the_conflict_stands(env: Env) -> None:
    """RES-3 on the embedded servers (no quota on their file system): the role records
    why, a subscription asking for a hard quota stays Unsynced with the conflict, and
    no quota file reaches the server."""
    fact = env.ssh(SERVER, "cat", "/etc/tenantctl/facts/hard-quota").text.strip()
    assert fact.startswith("false: ") and "no quota enabled" in fact, fact
    s = "q-none.access.test"
    env.subs = [sub_doc(s, customizations={"hosting": {"hardQuota": True}})]
    report = env.reconcile()
    assert report.ok, report.failed
    item = env.engine.plan(env.desired()).subscriptions[s].item
    assert item["sync"] == "unsynced" and item["effective"]["hosting"]["hardQuota"] is False
    assert [(c["property"], c["planValue"], c["availableValue"]) for c in item["conflicts"]] == [
        ("hosting.hardQuota", True, False)]
    assert env.ssh(SERVER, "test", "-e", render.quota_path(s)).returncode != 0
