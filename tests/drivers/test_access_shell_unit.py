"""Issue 14, ``hosting.ssh``: the interactive shell without a server. What the web
driver renders (an sshd ``Match User`` block and ``restrict,pty`` keys only for an
active subscription with hosting, a key and ``hosting.ssh``), how the agent reads the
grant from the item and prepares sshd's main configuration (the ``Include`` before the
role's SFTP block, the sftp subsystem in-process, idempotent, never without the role's
block). sshd's own reading of these files is tested live (test_access.py)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from controller.agent import jobs
from controller.drivers import naming, slices
from controller.drivers.hosting import agent as hosting_agent
from controller.drivers.hosting import render
from controller.effective import spec

SUB = "ex.com"


def key(n: int) -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([n]) * 32
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}"


def web_slice(ssh: bool = True, **over: Any) -> slices.Web:
    it = spec.sketch({"name": SUB, "region": "eu", "server": "web-1", "ip": "192.0.2.10",
                      "effective": {"access": {"sshKeys": [key(1)]}, "hosting": {"ssh": ssh}}})
    sl = slices.web(it)
    return slices.Web(**{**sl, **over})  # type: ignore[typeddict-item]


def test_a_granted_shell_is_a_match_block_of_the_tenant_and_pty_keys() -> None:
    text = render.shell_sshd(SUB, web_slice())
    assert text is not None
    directives = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert directives == [f"Match User {naming.system_user(SUB)}", "ForceCommand none", "PermitTTY yes"]
    keys = render.authorized_keys(SUB, web_slice())
    assert keys is not None and keys.splitlines()[1] == f"restrict,pty {key(1)}"
    assert render.shell_path(SUB) == f"{hosting_agent.SHELL_DIR}/{naming.system_user(SUB)}.conf"


@pytest.mark.parametrize("over", [
    pytest.param({"ssh": False}, id="ssh-off"),
    pytest.param({"state": "suspended"}, id="suspended-LIFE-2"),
    pytest.param({"sshKeys": []}, id="no-key"),
    pytest.param({"hosting": {**web_slice()["hosting"], "enabled": False}}, id="hosting-off-HOST-1"),
])
def test_otherwise_sftp_only(over: dict[str, Any]) -> None:
    ssh = bool(over.pop("ssh", True))
    sl = web_slice(ssh, **over)
    assert render.shell_sshd(SUB, sl) is None
    keys = render.authorized_keys(SUB, sl)
    assert keys is None or all(line.startswith("restrict ssh-") for line in keys.splitlines()[1:])


def test_the_agent_reads_the_grant_from_the_items_sshd_file() -> None:
    user = naming.system_user(SUB)
    home = jobs.User(user, naming.home(SUB))
    granted = jobs.Item(SUB, files=[jobs.File(render.shell_path(SUB), f"files/{user}.sshd")], user=home)
    revoked = jobs.Item(SUB, files=[jobs.File(render.shell_path(SUB), None)], user=home)
    other = jobs.Item(SUB, files=[jobs.File(f"{hosting_agent.SHELL_DIR}/w0.conf", "files/w0.sshd")], user=home)
    assert hosting_agent.shell_granted(granted)
    assert not hosting_agent.shell_granted(revoked) and not hosting_agent.shell_granted(other)


EMBEDDED = """\
ListenAddress 127.0.40.1:22
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
# BEGIN tenantctl tenants (SFTP)
Include /etc/ssh/tenantctl-tenants.conf
# END tenantctl tenants (SFTP)
"""


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    main = tmp_path / "tenantctl_sshd_config"
    main.write_text(EMBEDDED)
    monkeypatch.setattr(hosting_agent, "SSHD_EMBEDDED", str(main))
    monkeypatch.setattr(hosting_agent, "SSHD_TENANTS", str(tmp_path / "tenantctl-tenants.conf"))
    (tmp_path / "tenantctl-tenants.conf").write_text("Match Group tenantctl-sftp\n    ForceCommand internal-sftp\n")
    return main


def test_sshd_gets_the_include_before_the_sftp_block_and_sftp_in_process(sshd: Path) -> None:
    assert not hosting_agent.shell_ready()
    assert hosting_agent.prepare_sshd()
    lines = sshd.read_text().splitlines()
    assert lines == ["ListenAddress 127.0.40.1:22", "AuthorizedKeysFile .ssh/authorized_keys",
                     "Subsystem sftp internal-sftp", "# BEGIN tenantctl tenants (shell)",
                     "Include /etc/ssh/tenantctl-shell.d/*.conf", "# END tenantctl tenants (shell)",
                     "# BEGIN tenantctl tenants (SFTP)", "Include /etc/ssh/tenantctl-tenants.conf",
                     "# END tenantctl tenants (SFTP)"]
    assert hosting_agent.shell_ready()
    assert not hosting_agent.prepare_sshd()  # idempotent
    assert sshd.read_text().splitlines() == lines


def test_the_roles_include_is_enough_and_no_role_block_means_no_shell(sshd: Path) -> None:
    tenants = Path(hosting_agent.SSHD_TENANTS)
    tenants.write_text(f"{hosting_agent.SHELL_INCLUDE}\n{tenants.read_text()}")
    assert hosting_agent.prepare_sshd()  # only the subsystem
    assert hosting_agent.SHELL_INCLUDE not in sshd.read_text()
    sshd.write_text("Subsystem sftp /usr/lib/openssh/sftp-server\n")
    tenants.unlink()
    with pytest.raises(RuntimeError, match="no tenants' block"):
        hosting_agent.prepare_sshd()
    assert sshd.read_text() == "Subsystem sftp /usr/lib/openssh/sftp-server\n"


def test_a_granted_shell_that_sshd_does_not_read_is_drift(sshd: Path) -> None:
    user = naming.system_user(SUB)
    expect = [jobs.Expect(SUB, {render.shell_path(SUB): "digest"}, jobs.User(user, naming.home(SUB))),
              jobs.Expect("b.com", {render.shell_path("b.com"): None},
                          jobs.User(naming.system_user("b.com"), naming.home("b.com")))]
    assert hosting_agent.shell_drift(expect) == {SUB: f"sshd does not include {hosting_agent.SHELL_DIR} (no shell)"}
    hosting_agent.prepare_sshd()
    assert hosting_agent.shell_drift(expect) == {}
