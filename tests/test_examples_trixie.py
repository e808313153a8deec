"""The bundled example's trixie server (issue 13), through the real CLI's ``plan -o json``
(no servers): ap-southeast-2 runs Debian 13 and offers PHP 8.4, so the ``modern`` plan
(PHP 8.4) is synced there and unsynced on a bookworm server (SYNC-3, PHP-4: it runs the
available 8.2 and carries the conflict), placed there or pinned by ``spec.server``. Every
example server offers exactly its release's PHP, inside the examples' 127.0.10-13 block,
and nothing in the examples runs an outdated version (PLAT-5)."""

from __future__ import annotations

import ipaddress
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from model.cli_run import EXAMPLES, run_cli

from controller import model
from controller.model import kinds

TRIXIE, PINNED_NAME = "vol-de-nuit.example.org", "zephyr.example.org"


def plan(examples: Path, state: Path) -> dict[str, dict[str, Any]]:
    r = run_cli(["plan", "-f", str(examples), "-o", "json"], state)
    assert r.code == 0, r.stderr
    return {s["name"]: s for s in json.loads(r.stdout)["subscriptions"]}


def conflicts(s: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["property"]: (c["planValue"], c["availableValue"]) for c in s["conflicts"]}


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return plan(EXAMPLES, tmp_path_factory.mktemp("state"))


def test_one_trixie_server_offering_its_releases_php() -> None:
    ds = model.load_desired([EXAMPLES])
    by_os = {n: s.os for n, s in ds.servers.items()}
    assert [n for n, os in by_os.items() if os == "debian-13"] == ["ap-southeast-2"]
    for name, server in ds.servers.items():
        if "web" in server.roles:
            assert server.offers.php.versions == [server.release.php], name
        for ip in [server.address, *(i.address for i in server.ips)]:
            assert ipaddress.ip_address(ip) in ipaddress.ip_network("127.0.8.0/21"), (name, ip)
            assert 10 <= int(ip.split(".")[2]) <= 13, (name, ip)


def test_php_84_is_synced_on_the_trixie_server(planned: dict[str, dict[str, Any]]) -> None:
    s = planned[TRIXIE]
    assert (s["server"], s["sync"], s["conflicts"]) == ("ap-southeast-2", "synced", [])
    assert s["effective"]["hosting"]["php"]["version"] == "8.4"
    assert {d["engine"]: d["server"] for d in s["effective"]["databases"]} == {
        "mariadb": "ap-southeast-2", "postgresql": "ap-southeast-2"}


def test_php_84_in_a_bookworm_region_is_unsynced_on_82(planned: dict[str, dict[str, Any]]) -> None:
    s = planned[PINNED_NAME]
    assert s["server"] in ("eu-west-1", "eu-west-2") and s["sync"] == "unsynced"
    assert conflicts(s) == {"hosting.php.version": ("8.4", "8.2")}
    assert s["effective"]["hosting"]["php"]["version"] == "8.2"  # SYNC-3: the available value


@pytest.mark.parametrize(("region", "server", "sync", "php", "expected"), [
    pytest.param("eu-west", "eu-west-1", "unsynced", "8.2", {"hosting.php.version": ("8.4", "8.2")},
                 id="pinned-bookworm-1"),
    pytest.param("eu-west", "eu-west-2", "unsynced", "8.2", {"hosting.php.version": ("8.4", "8.2")},
                 id="pinned-bookworm-2"),
    pytest.param("ap-southeast", "ap-southeast-2", "synced", "8.4", {}, id="pinned-trixie"),
])
def test_a_subscription_pinned_to_a_bookworm_server_gets_the_php_conflict(
        tmp_path: Path, region: str, server: str, sync: str, php: str, expected: dict[str, tuple[Any, Any]]) -> None:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    subs = copy / "subscriptions.yaml"
    text = subs.read_text()
    anchor = f"metadata: {{name: {PINNED_NAME}}}\nspec:\n"
    assert anchor in text and text.rstrip().endswith("region: eu-west")
    subs.write_text(text.replace(anchor, f"{anchor}  server: {server}\n").rstrip()[:-len("eu-west")] + region + "\n")
    s = plan(copy, tmp_path / "state")[PINNED_NAME]
    assert (s["server"], s["sync"]) == (server, sync)
    assert conflicts(s) == expected
    assert s["effective"]["hosting"]["php"]["version"] == php


def test_nothing_in_the_examples_runs_an_outdated_version(planned: dict[str, dict[str, Any]]) -> None:
    ds = model.load_desired([EXAMPLES])
    for name, s in planned.items():
        eff = s["effective"]
        if eff["hosting"]["enabled"]:
            assert not kinds.outdated("php", eff["hosting"]["php"]["version"]), name
        for db in eff["databases"]:
            release = ds.servers[db["server"]].release
            assert not kinds.outdated(db["engine"], getattr(release, db["engine"])), (name, db)
