"""Issue 14 points 2 and 3 without a server: the FTP account file a subscription gets
(``login:hash`` lines, none while suspended or with hosting off, refused over
``resources.ftpAccounts``), passwords generated once and kept 0600 or read from their
reference, never rendered; the agent's join into pure-ftpd's passwd file; the logrotate
file and the vhost's log lines (LOG-1); the model's FTP user names. The real logins and
rotations are in tests/access/."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pydantic
import pytest

from controller.drivers import base, naming
from controller.drivers.context import Context, Server
from controller.drivers.hosting import WebDriver, ftp, render, webstats
from controller.drivers.hosting import agent as hosting_agent
from controller.drivers.hosting import drivers as hosting_drivers
from controller.effective import spec
from controller.model import kinds

SUB = "ex.com"


def item(users: list[dict[str, Any]] | None = None, **over: Any) -> spec.Item:
    effective = {"access": {"sshKeys": [], "ftpUsers": users or []}, **over.pop("effective", {})}
    return spec.sketch({"name": SUB, "region": "eu", "server": "web-1", "ip": "192.0.2.10",
                        "effective": effective, **over})


def driver(tmp_path: Path) -> WebDriver:
    return WebDriver(Context(tmp_path, {"web-1": Server("web-1", "eu", "ssh", "192.0.2.10", ("web",), ())}))


def libc_crypt(secret: str, hashed: str) -> bool:
    """The check pure-ftpd makes (libc's crypt), not the openssl that made the hash."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(secret, hashed) == hashed


# --- accounts --------------------------------------------------------------------------------


def test_generated_passwords_are_kept_0600_rendered_only_as_stable_hashes(tmp_path: Path) -> None:
    web = driver(tmp_path)
    sl = web.slice(item([{"name": "bob"}, {"name": "deploy.ci"}], effective={"resources": {"ftpAccounts": 2}}))
    text = web.ftp_fragment(SUB, sl)
    assert text is not None
    lines = text.splitlines()
    assert lines[0].startswith("# Managed by tenantctl: FTP accounts of " + naming.system_user(SUB))
    assert [line.split(":")[0] for line in lines[1:]] == ["bob@ex.com", "deploy.ci@ex.com"]
    creds = ftp.credentials_path(tmp_path, SUB, "bob")
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
    secret = ftp.password(tmp_path, SUB, ftp.User(name="bob", passwordRef=None))
    assert len(secret) == 24 and secret not in text
    assert libc_crypt(secret, lines[1].split(":", 1)[1])
    # the same file on every pass (drift is a digest), the same password
    assert web.ftp_fragment(SUB, sl) == text
    assert ftp.password(tmp_path, SUB, ftp.User(name="bob", passwordRef=None)) == secret


def test_a_password_reference_is_a_file_under_secrets_ftp(tmp_path: Path) -> None:
    web = driver(tmp_path)
    sl = web.slice(item([{"name": "bob", "passwordRef": "bob-ex"}]))
    with pytest.raises(hosting_drivers.Refused, match=r"passwordRef bob-ex: cannot read .*secrets/ftp/bob-ex"):
        web.ftp_fragment(SUB, sl)
    (tmp_path / "secrets" / "ftp").mkdir(parents=True)
    (tmp_path / "secrets" / "ftp" / "bob-ex").write_text("\n")
    with pytest.raises(hosting_drivers.Refused, match="is empty"):
        web.ftp_fragment(SUB, sl)
    (tmp_path / "secrets" / "ftp" / "bob-ex").write_text("correct horse battery\n")
    text = web.ftp_fragment(SUB, sl)
    assert text is not None and "correct horse" not in text
    assert libc_crypt("correct horse battery", text.splitlines()[1].split(":", 1)[1])


@pytest.mark.parametrize(("users", "limit", "refused"), [
    pytest.param(3, 2, True, id="one-too-many"),
    pytest.param(2, 2, False, id="at-the-limit"),
    pytest.param(5, "unlimited", False, id="unlimited"),
    pytest.param(1, 0, True, id="none-allowed"),
])
def test_the_account_count_is_a_resource_limit(tmp_path: Path, users: int, limit: Any, refused: bool) -> None:
    web = driver(tmp_path)
    sl = web.slice(item([{"name": f"u{i}"} for i in range(users)], effective={"resources": {"ftpAccounts": limit}}))
    if refused:
        with pytest.raises(hosting_drivers.Refused, match=rf"{users} FTP users but the plan allows {limit} "
                                                          r"\(resources.ftpAccounts\); nothing"):
            web.ftp_fragment(SUB, sl)
        assert not (tmp_path / "ftp-credentials").exists()  # nothing generated either
    else:
        assert web.ftp_fragment(SUB, sl) is not None


def test_over_the_limit_the_whole_web_change_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    web = driver(tmp_path)
    sent: list[Any] = []
    web._run = lambda server, job, files: sent.append(job)  # type: ignore[method-assign,assignment,return-value]
    sl = web.slice(item([{"name": "a"}, {"name": "b"}], effective={"resources": {"ftpAccounts": 1}}))
    [result] = web.apply("web-1", [base.Change(SUB, "ensure", sl)])
    assert result.outcome == "failed" and "resources.ftpAccounts" in result.message
    assert sent == []


@pytest.mark.parametrize("over", [
    pytest.param({"state": "suspended"}, id="suspended-LIFE-2"),
    pytest.param({"effective": {"hosting": {"enabled": False}}}, id="hosting-off-HOST-1"),
])
def test_no_account_file_means_no_login(tmp_path: Path, over: dict[str, Any]) -> None:
    web = driver(tmp_path)
    over = {**over, "effective": {"resources": {"ftpAccounts": 0}, **over.get("effective", {})}}
    # suspended or off: no file, and the limit is not even looked at (logins must go)
    assert web.ftp_fragment(SUB, web.slice(item([{"name": "bob"}], **over))) is None


def test_status_names_the_ftp_endpoint_only_with_accounts(tmp_path: Path) -> None:
    web = driver(tmp_path)
    assert web.access(item([{"name": "bob"}])) == {"sftp": naming.sftp_login(SUB, "192.0.2.10"),
                                                   "ftp": "192.0.2.10:21"}
    assert "ftp" not in web.access(item([]))


@pytest.mark.parametrize("hashes", [
    pytest.param({"bob": "$6$salt$short"}, id="malformed-hash"),
    pytest.param({"bob": "$6$salt$" + "a" * 86 + "\nevil@ex.com:x"}, id="line-break"),
    pytest.param({"Bob:0:0": "$6$salt$" + "a" * 86}, id="name-with-colons"),
    pytest.param({"bob": "$6$salt$" + "a" * 86 + "\n"}, id="hash-with-trailing-newline"),
])
def test_nothing_unchecked_reaches_the_account_file(hashes: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"refusing|not an FTP user name"):
        ftp.fragment(SUB, hashes)


@pytest.mark.parametrize(("users", "message"), [
    pytest.param([{"name": "bob"}, {"name": "bob"}], "listed twice", id="twice"),
    pytest.param([{"name": "bob@evil"}], "expected", id="at-sign"),
    pytest.param([{"name": "Bob"}], "expected", id="upper-case"),
    pytest.param([{"name": "b" * 33}], "expected", id="too-long"),
    pytest.param([{"name": "bob\n"}], "expected", id="trailing-newline"),
    pytest.param([{"name": "bob", "passwordRef": "../../ssh/id_ed25519"}], "not a path", id="ref-is-a-path"),
    pytest.param([{"name": "bob", "password": "x"}], "Extra inputs", id="no-inline-password"),
])
def test_the_model_refuses_unsafe_ftp_users(users: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        kinds.Access.model_validate({"ftpUsers": users})


# --- the agent's join ----------------------------------------------------------------------------


def test_the_agent_joins_account_files_with_each_tenants_uid_gid_and_chroot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    me = pwd.getpwuid(os.getuid())
    frag = tmp_path / "frags"
    frag.mkdir()
    good = "$6$abcdefgh$" + "A" * 86
    (frag / f"{me.pw_name}.passwd").write_text(f"# header\nbob@ex.com:{good}\n")
    (frag / "nosuchuser-xyz.passwd").write_text(f"ghost@gone.com:{good}\n")  # a leftover: ignored
    monkeypatch.setattr(hosting_agent, "FTP_FRAGMENTS", str(frag))
    assert hosting_agent.ftp_passwd().decode() == (
        f"bob@ex.com:{good}:{me.pw_uid}:{me.pw_gid}::{me.pw_dir}/./::::::::::::\n")
    (frag / f"{me.pw_name}.passwd").write_text(f"bob@ex.com:{good}:0:0::/./\n")
    with pytest.raises(RuntimeError, match="malformed account line"):
        hosting_agent.ftp_passwd()


def test_controller_and_agent_agree_on_paths() -> None:
    assert (ftp.FRAGMENT_DIR, ftp.PASSWD, ftp.PUREDB) == (
        hosting_agent.FTP_FRAGMENTS, hosting_agent.FTP_PASSWD, hosting_agent.FTP_PUREDB)
    assert ftp.fragment_path(SUB).startswith(hosting_agent.FTP_FRAGMENTS + "/")
    assert ftp.fragment_path(SUB).endswith(f"/{naming.system_user(SUB)}.passwd")


# --- logs (LOG-1) --------------------------------------------------------------------------------


def test_every_site_logs_into_the_web_space() -> None:
    web = driver(Path("/nonexistent"))
    text = render.vhost(SUB, web.slice(item(effective={"sites": [{"name": "blog.ex.com"}]})))
    assert text is not None
    home = naming.home(SUB)
    assert text.count(f"access_log {home}/logs/access.log combined;") == 2
    assert text.count(f"error_log {home}/logs/error.log;") == 2


@pytest.mark.parametrize(("logs", "expect", "absent"), [
    pytest.param({"rotate": "daily", "retainMonths": 3, "compress": True},
                 ["    daily\n", "    rotate 93\n", "    maxage 93\n", "    compress\n", "    delaycompress\n"],
                 ["nocompress"], id="daily"),
    pytest.param({"rotate": "weekly", "retainMonths": 12, "compress": False},
                 ["    weekly\n", "    rotate 60\n", "    maxage 372\n", "    nocompress\n"], ["    compress\n", "delaycompress"],
                 id="weekly-uncompressed"),
])
def test_logrotate_file_follows_the_logs_group(logs: dict[str, Any], expect: list[str], absent: list[str]) -> None:
    web = driver(Path("/nonexistent"))
    text = render.logrotate(SUB, web.slice(item(effective={"logs": logs})))
    assert text is not None
    home, user = naming.home(SUB), naming.system_user(SUB)
    assert f"{home}/logs/access.log {home}/logs/error.log {{\n" in text
    assert f"    create 0640 www-data {user}\n" in text  # nginx hands reopened logs to its workers
    assert 'kill -USR1 "$(cat /run/nginx.pid)"' in text
    for line in expect:
        assert line in text
    for line in absent:
        assert line not in text
    assert render.logrotate_path(SUB) == f"/etc/logrotate.d/tenantctl-{user}"


def test_no_logrotate_file_without_hosting_and_no_unknown_rotation() -> None:
    web = driver(Path("/nonexistent"))
    assert render.logrotate(SUB, web.slice(item(effective={"hosting": {"enabled": False}}))) is None
    sl = web.slice(item())
    sl["logs"]["rotate"] = "hourly; postrotate rm -rf /"
    with pytest.raises(ValueError, match="refusing to render rotation"):
        render.logrotate(SUB, sl)


def test_the_hash_is_made_by_the_real_openssl() -> None:
    done = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("OpenSSL")
    hashed = ftp.crypt("s3cret", "abcdefgh")
    assert hashed.startswith("$6$abcdefgh$") and libc_crypt("s3cret", hashed) and not libc_crypt("other", hashed)


# --- web statistics (LOG-1) ----------------------------------------------------------------------


def test_web_statistics_are_served_behind_a_password_and_made_hourly(tmp_path: Path) -> None:
    web = driver(tmp_path)
    sl = web.slice(item(effective={"hosting": {"webStats": True}}))
    user = naming.system_user(SUB)
    text = render.vhost(SUB, sl)
    assert text is not None
    assert (f"    location ^~ /webstat/ {{\n        alias /var/lib/tenantctl/stats/{user}/;\n"
            f"        index index.html;\n        auth_basic \"Web statistics\";\n"
            f"        auth_basic_user_file /etc/nginx/tenantctl-stats/{user}.htpasswd;\n    }}\n") in text
    cron = render.webstats_cron(SUB, sl)
    assert cron is not None
    [line] = [x for x in cron.splitlines() if x[:1].isdigit()]
    fields = line.split()
    assert fields[0] == str(webstats.minute(SUB)) and fields[1:6] == ["*", "*", "*", "*", "root"]
    assert f"goaccess {naming.home(SUB)}/logs/access.log --log-format=COMBINED" in line
    assert f"-o /var/lib/tenantctl/stats/{user}/index.html" in line
    files = {path: t for path, t, _n, _m in web._extra(SUB, sl)}
    login, hashed = (files[webstats.htpasswd_path(SUB)] or "").strip().split(":")
    assert login == "stats" and libc_crypt(webstats.password(tmp_path, SUB), hashed)
    assert stat.S_IMODE(webstats.credentials_path(tmp_path, SUB).stat().st_mode) == 0o600
    assert files[webstats.cron_path(SUB)] == cron


@pytest.mark.parametrize("over", [
    pytest.param({"effective": {"hosting": {"webStats": False}}}, id="webStats-off"),
    pytest.param({"state": "suspended", "effective": {"hosting": {"webStats": True}}}, id="suspended"),
])
def test_no_statistics_without_webstats_or_while_suspended(tmp_path: Path, over: dict[str, Any]) -> None:
    web = driver(tmp_path)
    sl = web.slice(item(**over))
    assert "webstat" not in (render.vhost(SUB, sl) or "")
    files = {path: t for path, t, _n, _m in web._extra(SUB, sl)}
    assert files[webstats.cron_path(SUB)] is None and files[webstats.htpasswd_path(SUB)] is None
