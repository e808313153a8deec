"""Issue 14: the SSH keys that may log in to a subscription's web space are its own
(``spec.access.sshKeys``) plus the customer's (``customerSettings.access.sshKeys``)
while the plan grants manageSSH; without it the customer's are ignored and said so."""

from __future__ import annotations

import base64

import pytest

from controller.effective import spec
from effective.builder import World, condition


def key(n: int, comment: str = "") -> str:
    """A well-formed ed25519 key line (type string, then a 32-byte key)."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes([n]) * 32
    return " ".join(p for p in ("ssh-ed25519", base64.b64encode(blob).decode(), comment) if p)


def _world(granted: bool) -> World:
    w = World()
    w.plans["basic"]["permissions"] = {"manageSSH": granted}
    w.sub(access={"sshKeys": [key(1, "ops"), key(2)]},
          customerSettings={"access": {"sshKeys": [key(3, "alice"), key(1, "same key, other comment")]}})
    return w


@pytest.mark.parametrize("granted, expected, ignored", [
    pytest.param(True, [key(1, "ops"), key(2), key(3, "alice")], False, id="manageSSH-granted"),
    pytest.param(False, [key(1, "ops"), key(2)], True, id="manageSSH-not-granted"),
])
def test_customer_keys_count_only_with_manageSSH(granted: bool, expected: list[str], ignored: bool) -> None:
    item = _world(granted).item()
    spec.check(item)
    assert item["effective"]["access"] == {"sshKeys": expected}
    cond = condition(item, "CustomerSettingsApplied")
    if ignored:
        assert cond is not None and "access.sshKeys" in cond["message"]
    else:
        assert cond is None


def test_no_keys_is_an_empty_list() -> None:
    w = World()
    w.sub()
    assert w.item()["effective"]["access"] == {"sshKeys": []}


def test_an_item_recorded_before_access_still_checks() -> None:
    w = World()
    w.sub()
    item = w.item()
    del item["effective"]["access"]
    spec.check(item)
