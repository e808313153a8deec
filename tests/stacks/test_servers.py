"""MOCK tests of the ``servers`` stack (pulumi.runtime.set_mocks, no CLI or cloud)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import servers_stack
import yaml
from typer.testing import CliRunner

from controller import model
from controller.cli import infra  # noqa: F401  (registers `infra`)
from controller.cli.main import app
from controller.kube import inventory

from .conftest import RecordingMocks

REGIONS: dict[str, Any] = {
    "eu-west": {"location": "fsn1", "timezone": "Europe/Paris", "servers": [
        {"name": "eu-west-1", "type": "cx32", "roles": ["web", "db-mariadb", "dns", "backup"], "dedicatedIps": 2,
         "capacity": {"sites": 400, "diskMB": 150000}, "offers": {"php": {"versions": ["8.2"], "handlers": ["fpm"]}}},
        {"name": "eu-west-2", "type": "cx22", "roles": ["db-postgresql"]},
    ]},
    "us-east": {"location": "ash", "servers": [{"name": "us-east-1", "type": "cpx31", "roles": ["web", "dns"]}]},
}


def spec(**over: Any) -> servers_stack.Spec:
    base = servers_stack.Spec(provider="hcloud", image="debian-12", admin_cidrs=("198.51.100.0/24",),
                              ssh_keys={"tenantctl": "ssh-ed25519 AAAAexample tenantctl"}, regions={}, servers=())
    servers = []
    for region, r in REGIONS.items():
        for s in r["servers"]:
            servers.append(servers_stack.ServerSpec(
                name=s["name"], region=region, location=r["location"], type=s["type"], roles=tuple(s["roles"]),
                dedicated_ips=s.get("dedicatedIps", 0),
                extra={k: s[k] for k in ("capacity", "offers") if k in s}))
    regions = {k: {"location": v["location"], "timezone": v.get("timezone")} for k, v in REGIONS.items()}
    return servers_stack.Spec(**{**base.__dict__, "regions": regions, "servers": tuple(servers), **over})


@pulumi.runtime.test
def test_creates_servers_firewalls_keys_and_dedicated_ips(mocks: RecordingMocks) -> Any:
    """MOCK: the resources the stack asks hcloud for."""
    inv = servers_stack.build(spec())

    def check(inv: dict[str, Any]) -> None:
        servers = {c.name: c.inputs for c in mocks.of_type("hcloud:index/server:Server")}
        assert sorted(servers) == ["eu-west-1", "eu-west-2", "us-east-1"]
        assert servers["eu-west-1"]["serverType"] == "cx32" and servers["eu-west-1"]["location"] == "fsn1"
        assert servers["us-east-1"]["location"] == "ash" and servers["us-east-1"]["image"] == "debian-12"
        assert len(servers["eu-west-1"]["firewallIds"]) == 1 and servers["eu-west-1"]["sshKeys"]
        keys = mocks.of_type("hcloud:index/sshKey:SshKey")
        assert [k.inputs["name"] for k in keys] == ["tenantctl"]
        fws = {c.name: c.inputs["rules"] for c in mocks.of_type("hcloud:index/firewall:Firewall")}
        ports = {n: {(r["protocol"], r.get("port")) for r in rules} for n, rules in fws.items()}
        assert ports["fw-eu-west-1"] == {("icmp", None), ("tcp", "22"), ("tcp", "80"), ("tcp", "443"),
                                         ("tcp", "53"), ("udp", "53")}
        assert ports["fw-eu-west-2"] == {("icmp", None), ("tcp", "22")}  # a database server serves nobody
        ssh = next(r for r in fws["fw-eu-west-2"] if r.get("port") == "22")
        assert ssh["sourceIps"] == ["198.51.100.0/24"]
        fips = mocks.of_type("hcloud:index/floatingIp:FloatingIp")
        assert sorted(f.name for f in fips) == ["eu-west-1-dedicated-1", "eu-west-1-dedicated-2"]
        assert all(f.inputs["homeLocation"] == "fsn1" and f.inputs["type"] == "ipv4" for f in fips)
        by_name = {s["name"]: s for s in inv["servers"]}
        assert len(by_name["eu-west-1"]["dedicatedIps"]) == 2 and by_name["eu-west-2"]["dedicatedIps"] == []
        assert by_name["eu-west-1"]["capacity"] == {"sites": 400, "diskMB": 150000}
        assert inv["provider"] == "hcloud" and inv["version"] == 1

    return inv.apply(check)


@pulumi.runtime.test
def test_inventory_becomes_server_documents_that_validate(mocks: RecordingMocks, tmp_path: Path) -> Any:
    """MOCK: the exported inventory -> `tenantctl infra servers --regions` -> `validate` accepts it."""
    inv = servers_stack.build(spec())

    def check(inv: dict[str, Any]) -> None:
        outputs = tmp_path / "outputs.json"
        outputs.write_text(json.dumps({"inventory": inv}))  # what `pulumi stack output --json` prints
        r = CliRunner().invoke(app, ["infra", "servers", "--inventory", str(outputs), "--regions"])
        assert r.exit_code == 0, r.output
        docs = tmp_path / "servers.yaml"
        docs.write_text(r.output)
        kinds = [d["kind"] for d in yaml.safe_load_all(r.output)]
        assert kinds == ["Region", "Region", "Server", "Server", "Server"]
        ds = model.load_desired([docs])
        assert sorted(ds.servers) == ["eu-west-1", "eu-west-2", "us-east-1"]
        assert ds.servers["eu-west-1"].provider == "ssh"
        assert [ip.type for ip in ds.servers["eu-west-1"].ips] == ["shared", "dedicated", "dedicated"]
        assert ds.regions["eu-west"].timezone == "Europe/Paris"
        assert inventory.server_documents(inv)[0]["spec"]["address"] == ds.servers["eu-west-1"].address

    return inv.apply(check)


def test_unsupported_provider_is_refused() -> None:
    """MOCK-free: the provider check runs before any resource."""
    with pytest.raises(ValueError, match="'aws' is not supported"):
        servers_stack.build(spec(provider="aws"))


def test_read_spec_refuses_unknown_roles(mocks: RecordingMocks) -> None:
    """MOCK config: a role tenantctl does not know stops the program with its key."""
    pulumi.runtime.set_all_config({"tenantctl-test:regions": json.dumps(
        {"eu-west": {"location": "fsn1", "servers": [{"name": "a", "type": "cx22", "roles": ["mail"]}]}})})
    try:
        with pytest.raises(ValueError, match=r"regions\.eu-west: server 'a' has roles \['mail'\]"):
            servers_stack.read_spec(pulumi.Config())
        pulumi.runtime.set_all_config({"tenantctl-test:regions": '{"eu-west": {"location": "fsn1", "servers": '
                                                                  '[{"name": "a", "type": "cx22", "roles": ["web"]}]}}',
                                       "tenantctl-test:adminCidrs": '["192.0.2.0/24"]'})
        parsed = servers_stack.read_spec(pulumi.Config())
        assert parsed.provider == "hcloud" and parsed.admin_cidrs == ("192.0.2.0/24",)
        assert parsed.servers[0].location == "fsn1"
    finally:
        pulumi.runtime.set_all_config({})


@pulumi.runtime.test
def test_main_reads_the_stack_config(mocks: RecordingMocks) -> Any:
    """MOCK: the program Pulumi runs (main) with a config like Pulumi.example.yaml."""
    example = yaml.safe_load((Path(servers_stack.__file__).parent / "Pulumi.example.yaml").read_text())["config"]
    config = {k.replace("tenantctl-servers:", "tenantctl-test:"): v if isinstance(v, str) else json.dumps(v)
              for k, v in example.items()}
    pulumi.runtime.set_all_config(config)
    try:
        inv = servers_stack.main()
    finally:
        pulumi.runtime.set_all_config({})

    def check(inv: dict[str, Any]) -> None:
        servers = {c.name: c.inputs for c in mocks.of_type("hcloud:index/server:Server")}
        assert sorted(servers) == ["eu-west-1", "us-east-1"]
        assert servers["us-east-1"]["location"] == "ash"
        assert len(mocks.of_type("hcloud:index/floatingIp:FloatingIp")) == 1
        assert [s["name"] for s in inv["servers"]] == ["eu-west-1", "us-east-1"]
        assert inv["regions"]["us-east"] == {"location": "ash", "timezone": "America/New_York"}

    return inv.apply(check)
