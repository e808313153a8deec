"""The CRDs generated from the model: checked in, structural, and faithful to the loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
from typer.testing import CliRunner

from controller.cli import crds as _crds_cli  # noqa: F401  (registers `crds` on the app)
from controller.cli.main import app
from controller.kube import crds, schema, structural
from controller.model import kinds

from .support import ROOT

DEPLOYED = ROOT / "deploy" / "crds"
KINDS = [k.kind for k in crds.KINDS]


def test_regenerating_gives_the_checked_in_files(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["crds", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    generated = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert generated == {p.name: p.read_text() for p in DEPLOYED.glob("*.yaml")}
    assert len(generated) == 6


def test_check_reports_a_stale_file(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["crds", "--out", str(tmp_path)]).exit_code == 0
    assert runner.invoke(app, ["crds", "--out", str(tmp_path), "--check"]).exit_code == 0
    stale = tmp_path / "servers.tenantctl.io.yaml"
    stale.write_text(stale.read_text().replace("db-postgresql", "db-oracle"))
    r = runner.invoke(app, ["crds", "--out", str(tmp_path), "--check"])
    assert r.exit_code == 1
    assert "servers.tenantctl.io.yaml: differs from the model" in r.output


def test_stdout_is_one_stream_of_six_crds() -> None:
    import yaml

    r = CliRunner().invoke(app, ["crds"])
    assert r.exit_code == 0
    docs = list(yaml.safe_load_all(r.output))
    assert [d["spec"]["names"]["kind"] for d in docs] == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    crd = crds.definition(kind)
    version = crd["spec"]["versions"][0]
    assert structural.violations(version["schema"]["openAPIV3Schema"]) == []
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["group"] == "tenantctl.io" and version["name"] == "v1"
    text = crds.render(crd)
    for refused in ("$ref", "anyOf:\n            - type: 'null'", "uniqueItems", "additionalProperties: false", "&id"):
        assert refused not in text


@pytest.mark.parametrize(("bad", "expected"), [
    pytest.param({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, "$ref is not allowed", id="ref"),
    pytest.param({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
                 "no type", id="anyOf-null"),
    pytest.param({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"},
                                                         "uniqueItems": True}}}, "uniqueItems", id="uniqueItems"),
    pytest.param({"type": "object", "properties": {"a": {"enum": ["x"]}}}, "no type", id="untyped"),
    pytest.param({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
                 "mutually exclusive", id="closed-object"),
    pytest.param({"type": "object", "properties": {"a": {"type": "array", "x-kubernetes-list-type": "set",
                                                         "items": {"type": "object"}}}}, "scalar items", id="set"),
    pytest.param({"type": "object", "properties": {"a": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
        "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}}, "must be a required", id="map"),
    pytest.param({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}},
                 "type is not allowed inside", id="typed-branch"),
    pytest.param({"type": "object", "properties": {"a": {"type": "string", "const": "x"}}}, "const", id="const"),
])
def test_structural_check_refuses(bad: dict[str, Any], expected: str) -> None:
    found = structural.violations(bad)
    assert any(expected in v for v in found), found


def test_subscription_columns_and_short_names() -> None:
    sub = crds.definition("Subscription")["spec"]
    cols = [c["name"] for c in sub["versions"][0]["additionalPrinterColumns"]]
    assert cols[:6] == ["Customer", "Plan", "Server", "State", "Sync", "Ready"]
    assert sub["names"]["shortNames"] == ["sub", "subs"]
    every = [s for k in KINDS for s in crds.definition(k)["spec"]["names"]["shortNames"]]
    # kubectl's own short names must stay theirs
    builtin = {"cm", "cs", "ds", "deploy", "ep", "ev", "hpa", "ing", "limits", "netpol", "no", "ns", "pdb", "po",
               "psp", "pv", "pvc", "quota", "rc", "rs", "sa", "sc", "sts", "svc", "crd", "crds", "csr", "pc"}
    assert len(every) == len(set(every)) and not set(every) & builtin


def _enums(s: Any, path: str = "") -> list[tuple[str, list[Any]]]:
    out: list[tuple[str, list[Any]]] = []
    if isinstance(s, dict):
        if "enum" in s:
            out.append((path, s["enum"]))
        for k, v in s.items():
            out += _enums(v, f"{path}.{k}")
    return out


ALIASES = [kinds.OptHandler, kinds.OptPolicy, kinds.OptDnsMode, kinds.OptRotate, kinds.Handler, kinds.Role,
           kinds.Engine, kinds.IpType, kinds.Provider, kinds.CustomerState, kinds.SubState, kinds.SuspendReason,
           kinds.SiteType]


@pytest.mark.parametrize("alias", ALIASES, ids=lambda a: a.__metadata__[-1].func.__qualname__ + str(id(a) % 97))
def test_enums_are_what_the_model_accepts(alias: Any) -> None:
    enum = schema.VALIDATED[alias.__metadata__[-1].func]["enum"]
    adapter = pydantic.TypeAdapter(alias)
    for value in enum:
        assert adapter.validate_python(value) == value
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python("not-" + enum[0])
    assert enum, "an enum with no value"


def test_every_validator_of_the_model_has_a_schema() -> None:
    # generation raises TypeError on a validator it does not know: all six generate
    assert all(crds.spec_schema(k)["properties"]["spec"]["type"] == "object" for k in KINDS)
    assert len(_enums(crds.spec_schema("Subscription"))) >= 10


def test_an_unknown_validator_stops_generation() -> None:
    from typing import Annotated

    def shoe_size(v: Any) -> int:
        return int(v)

    class Shoe(kinds.Strict):
        size: Annotated[int, pydantic.PlainValidator(shoe_size)]

    with pytest.raises(TypeError, match=r"Shoe\.size: no CRD schema for the validator"):
        schema.model_schema(Shoe)
