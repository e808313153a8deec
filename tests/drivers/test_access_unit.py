"""Issue 14 without a server: the authorized_keys file a subscription gets (none when
suspended, hosting off or keyless; every line re-checked and restricted), the status'
``access.sftp`` login, the names the agent shares with the controller, and the TLS
include's HTTP/2 and HSTS lines. The real logins are in test_access.py."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from controller.drivers import naming, slices
from controller.drivers.context import Context
from controller.drivers.hosting import WebDriver, render
from controller.drivers.hosting import agent as hosting_agent
from controller.drivers.tls import render as tls_render
from controller.effective import spec


def key(n: int, comment: str = "") -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([n]) * 32
    return " ".join(p for p in ("ssh-ed25519", base64.b64encode(blob).decode(), comment) if p)


def item(**over: Any) -> spec.Item:
    return spec.sketch({"name": "ex.com", "region": "eu", **over})


def web_slice(**over: Any) -> slices.Web:
    sl = slices.web(item(server="web-1", ip="192.0.2.10",
                         effective={"access": {"sshKeys": [key(1, "alice"), key(2)]}}))
    return slices.Web(**{**sl, **over})  # type: ignore[typeddict-item]


def test_keys_file_restricts_every_key_and_names_the_subscription() -> None:
    text = render.authorized_keys("ex.com", web_slice())
    assert text is not None
    lines = text.splitlines()
    assert lines[0].startswith("# Managed by tenantctl: subscription ex.com")
    assert lines[1:] == [f"restrict {key(1, 'alice')}", f"restrict {key(2)}"]


@pytest.mark.parametrize("over", [
    pytest.param({"state": "suspended"}, id="suspended-LIFE-2"),
    pytest.param({"sshKeys": []}, id="no-key"),
    pytest.param({"hosting": {**web_slice()["hosting"], "enabled": False}}, id="hosting-off-HOST-1"),
])
def test_no_keys_file_means_no_login(over: dict[str, Any]) -> None:
    assert render.authorized_keys("ex.com", web_slice(**over)) is None


@pytest.mark.parametrize("bad", [
    pytest.param(f'command="/bin/sh" {key(1)}', id="options"),
    pytest.param(key(1) + "\nssh-ed25519 AAAA", id="second-line"),
    pytest.param("garbage", id="garbage"),
])
def test_a_key_that_slipped_past_the_model_is_refused_at_render(bad: str) -> None:
    with pytest.raises(ValueError):
        render.authorized_keys("ex.com", web_slice(sshKeys=[bad]))


def test_the_keys_are_part_of_the_web_slice_and_old_items_have_none() -> None:
    assert web_slice()["sshKeys"] == [key(1, "alice"), key(2)]
    old = item()
    assert "access" not in old["effective"]
    assert slices.web(old)["sshKeys"] == []


def test_status_access_names_the_user_and_the_servers_own_address(tmp_path: Path) -> None:
    from controller.drivers import context

    ctx = Context(state_dir=tmp_path, servers={"web-1": context.Server("web-1", "eu", "docker", "192.0.2.1",
                                                                       ("web",), (("192.0.2.10", "shared"),))})
    drv = WebDriver(ctx)
    placed = item(server="web-1", ip="192.0.2.10")
    assert drv.access(placed) == {"sftp": f"{naming.system_user('ex.com')}@192.0.2.1:22"}
    assert drv.access(item()) == {}  # not placed
    off = item(server="web-1", effective={"hosting": {"enabled": False}})
    assert drv.access(off) == {}
    assert naming.sftp_login("ex.com", "2001:db8::1").endswith("@[2001:db8::1]:22")


def test_the_agent_and_the_controller_agree_on_names() -> None:
    assert hosting_agent.SFTP_GROUP == naming.SFTP_GROUP
    assert set(render.SKELETON_ENTRIES) <= set(hosting_agent.GATED)
    assert naming.ssh_keys("ex.com") == f"{naming.SSH_KEYS_DIR}/{naming.system_user('ex.com')}"


@pytest.mark.parametrize("https_only", [pytest.param(True, id="httpsOnly"), pytest.param(False, id="http-too")])
def test_tls_include_speaks_http2_and_sends_hsts_only_when_https_only(https_only: bool) -> None:
    sl = {"ip": "192.0.2.10", "httpsOnly": https_only, "sites": [], "siteTypes": {}}
    text = tls_render.include("ex.com", "ex.com", sl)  # type: ignore[arg-type]
    assert "listen 192.0.2.10:443 ssl http2;" in text
    assert ("Strict-Transport-Security" in text) is https_only


def test_the_role_names_what_the_drivers_write() -> None:
    import yaml

    tasks = yaml.safe_load((Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "tenantctl_server" / "tasks"
                            / "web.yml").read_text())
    [facts] = [t["ansible.builtin.set_fact"] for t in tasks if "ansible.builtin.set_fact" in t]
    assert facts["tenantctl_server_sftp_group"] == naming.SFTP_GROUP
    assert facts["tenantctl_server_ssh_keys_dir"] == naming.SSH_KEYS_DIR
