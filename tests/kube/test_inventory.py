"""Pulumi inventories -> Server and Region documents (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import model
from controller.kube import inventory

SERVER = {"name": "eu-west-1", "region": "eu-west", "location": "fsn1", "serverType": "cx32",
          "ipv4": "203.0.113.10", "ipv6": "2001:db8::10", "dedicatedIps": ["198.51.100.7"],
          "roles": ["web", "dns"], "capacity": {"sites": 300}, "offers": {"php": {"versions": ["8.2"]}}}
INV = {"version": 1, "provider": "hcloud", "regions": {"eu-west": {"location": "fsn1", "timezone": "Europe/Paris"}},
       "servers": [SERVER]}


def test_server_document() -> None:
    [doc] = inventory.server_documents({"inventory": INV, "other": 1})
    assert doc == {
        "apiVersion": "tenantctl.io/v1", "kind": "Server",
        "metadata": {"name": "eu-west-1",
                     "labels": {"tenantctl.io/provider": "hcloud", "tenantctl.io/location": "fsn1",
                                "tenantctl.io/servertype": "cx32"},
                     "annotations": {"tenantctl.io/ipv6": "2001:db8::10"}},
        "spec": {"region": "eu-west", "provider": "ssh", "address": "203.0.113.10",
                 "ips": [{"address": "203.0.113.10", "type": "shared"}, {"address": "198.51.100.7", "type": "dedicated"}],
                 "roles": ["web", "dns"], "capacity": {"sites": 300}, "offers": {"php": {"versions": ["8.2"]}}},
    }


def test_documents_load(tmp_path: Path) -> None:
    second = {"name": "us-east-1", "region": "us-east", "ipv4": "203.0.113.20", "roles": ["web"]}
    inv = {**INV, "servers": [second, SERVER]}
    docs = inventory.region_documents(inv) + inventory.server_documents(inv)
    assert [d["metadata"]["name"] for d in docs] == ["eu-west", "us-east", "eu-west-1", "us-east-1"]
    path = tmp_path / "infra.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    ds = model.load_desired([path])
    assert ds.regions["eu-west"].timezone == "Europe/Paris" and ds.regions["us-east"].timezone == "UTC"
    assert ds.servers["us-east-1"].ips[0].type == "shared"


@pytest.mark.parametrize(("outputs", "message"), [
    pytest.param({"servers": "x"}, "expected the `servers` stack's outputs", id="not-an-inventory"),
    pytest.param([], "expected the `servers` stack's outputs", id="a-list"),
    pytest.param({**INV, "version": 2}, "version 2 is not supported", id="version"),
    pytest.param({**INV, "servers": [{**SERVER, "ipv4": None}]}, "server 'eu-west-1': ipv4 is missing",
                 id="unknown-address"),
    pytest.param({**INV, "servers": [{**SERVER, "roles": []}]}, "roles is missing", id="no-roles"),
    pytest.param({**INV, "servers": [SERVER, SERVER]}, "listed twice", id="duplicate"),
    pytest.param({**INV, "servers": ["eu-west-1"]}, "expected a server mapping", id="not-a-mapping"),
])
def test_bad_inventories(outputs: Any, message: str) -> None:
    with pytest.raises(inventory.InventoryError, match=message):
        inventory.server_documents(outputs)
