"""Documents -> custom resources: every example validates against its generated CRD,
and what the CRD refuses the loader refuses too (the CRD is never looser on a field it
types)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from controller import errors, model
from controller.cli import crds as _crds_cli  # noqa: F401  (registers `resources` on the app)
from controller.cli.main import app
from controller.kube import resource

from .support import ROOT, example_documents, schema_errors

EXAMPLES = example_documents()


@pytest.mark.parametrize(("file", "doc"), [pytest.param(f, d, id=f"{d['kind']}/{d['metadata']['name']}")
                                           for f, d in EXAMPLES])
def test_every_example_validates_against_its_crd(file: str, doc: dict[str, Any]) -> None:
    cr = resource.to_resource(doc, namespace="tenantctl")
    assert schema_errors(cr) == []
    assert cr["metadata"]["namespace"] == "tenantctl"
    assert cr["apiVersion"] == "tenantctl.io/v1" and cr["kind"] == doc["kind"]


def test_examples_cover_every_kind() -> None:
    assert {d["kind"] for _, d in EXAMPLES} == {"Region", "Server", "ServicePlan", "AddOnPlan", "Customer",
                                               "Subscription"}


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "tenantctl.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


SERVER = {"region": "eu-west", "provider": "ssh", "address": "192.0.2.10", "ips": [{"address": "192.0.2.10"}],
          "roles": ["web"]}
PLAN = {"resources": {"diskMB": 100}, "hosting": {"php": {"handler": "fpm", "version": "8.2"}}}
SUB = {"customer": "acme", "plan": "basic", "region": "eu-west", "expires": "2027-12-31"}


def _with(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return out


BAD = [
    pytest.param("Server", _with(SERVER, "provider", "aws"), "provider", id="server-provider"),
    pytest.param("Server", _with(SERVER, "region", "EU_West"), "region", id="server-region-label"),
    pytest.param("Server", _with(SERVER, "address", "192.0.2.300"), "address", id="server-address"),
    pytest.param("Server", _with(SERVER, "ips", []), "ips", id="server-no-ips"),
    pytest.param("Server", _with(SERVER, "roles", ["mail"]), "roles", id="server-role"),
    pytest.param("Server", _with(SERVER, "capacity.sites", -1), "capacity", id="server-capacity"),
    pytest.param("Server", _with(SERVER, "offers.php.versions", [8.2]), "versions", id="server-php-number"),
    pytest.param("ServicePlan", _with(PLAN, "resources.diskMB", "lots"), "diskMB", id="plan-limit-word"),
    pytest.param("ServicePlan", _with(PLAN, "resources.domains", -2), "domains", id="plan-limit-negative"),
    pytest.param("ServicePlan", _with(PLAN, "overuse.notifyAtPercent", 101), "notifyAtPercent", id="plan-percent"),
    pytest.param("ServicePlan", _with(PLAN, "hosting.php.handler", "nginx"), "handler", id="plan-handler"),
    pytest.param("ServicePlan", _with(PLAN, "backup.keepDaily", 31), "keepDaily", id="plan-keep-daily"),
    pytest.param("ServicePlan", _with(PLAN, "hosting.ssl", "yes"), "ssl", id="plan-bool"),
    pytest.param("Customer", {"email": "not-an-address"}, "email", id="customer-email"),
    pytest.param("Subscription", _with(SUB, "expires", "31/12/2027"), "expires", id="sub-expires"),
    pytest.param("Subscription", _with(SUB, "stateReason", "bored"), "stateReason", id="sub-reason"),
    pytest.param("Subscription", _with(SUB, "databases", [{"name": "App", "engine": "mariadb"}]), "databases",
                 id="sub-db-name"),
    pytest.param("Subscription", _with(SUB, "databases", [{"name": "app", "engine": "oracle"}]), "databases",
                 id="sub-db-engine"),
    pytest.param("Subscription", {"plan": "basic", "region": "eu-west"}, "customer", id="sub-no-customer"),
]


@pytest.mark.parametrize(("kind", "spec", "field"), BAD)
def test_what_the_crd_refuses_the_loader_refuses(kind: str, spec: dict[str, Any], field: str,
                                                  tmp_path: Path) -> None:
    name = "example.org" if kind == "Subscription" else "x1"
    doc = _doc(kind, name, spec)
    refused = schema_errors(resource.to_resource(doc))
    assert refused and any(field in e for e in refused), refused
    path = tmp_path / "doc.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(errors.InputError) as exc:
        model.load_desired([path])
    assert any(f".{field}" in i.path for i in exc.value.issues), exc.value


def test_inherit_is_left_out_and_dates_are_text() -> None:
    import datetime as dt

    plan = _doc("ServicePlan", "basic", {"resources": {"diskMB": "default", "domains": None, "databases": 2},
                                         "hosting": {"php": {"settings": {"memory_limit": "default"}}}})
    cr = resource.to_resource(plan)
    assert cr["spec"]["resources"] == {"databases": 2}
    assert cr["spec"]["hosting"]["php"]["settings"] == {"memory_limit": "default"}  # a PHP value, not an inherit
    sub = resource.to_resource(_doc("Subscription", "Bücher.example", {**SUB, "expires": dt.date(2027, 12, 31),
                                                                     "plan": None}))
    assert sub["spec"]["expires"] == "2027-12-31"
    assert sub["spec"]["plan"] is None  # nullable: a custom subscription (PLAN-2)
    assert sub["metadata"]["name"] == "xn--bcher-kva.example"
    assert schema_errors(sub) == []
    bad_required = resource.to_resource(_doc("Server", "x1", {**SERVER, "region": "default"}))
    assert bad_required["spec"]["region"] == "default"  # only inheriting fields drop it


def test_tenantctl_resources_prints_valid_custom_resources() -> None:
    r = CliRunner().invoke(app, ["resources", "-f", str(ROOT / "examples"), "-n", "tenantctl"])
    assert r.exit_code == 0, r.stderr
    crs = list(yaml.safe_load_all(r.stdout))
    assert len(crs) == len(EXAMPLES)
    assert all(schema_errors(cr) == [] and cr["metadata"]["namespace"] == "tenantctl" for cr in crs)
    assert "xn--mnchen-flug-thb.de" in {cr["metadata"]["name"] for cr in crs}
    assert all(cr["metadata"]["name"].isascii() for cr in crs)


def test_tenantctl_resources_refuses_an_invalid_state(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_doc("Server", "x1", {**SERVER, "provider": "aws"})))
    r = CliRunner().invoke(app, ["resources", "-f", str(path)])
    assert r.exit_code == 2 and r.stdout == "" and "spec.provider" in r.stderr
