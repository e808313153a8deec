"""Status of custom resources (pure): shaped by the CRD, transition times that move only
on a flip, and a PATCH only when something changed."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator

from controller.kube import crds, status

T0, T1 = "2026-11-30T10:00:00+00:00", "2026-11-30T11:00:00+00:00"

ITEM: dict[str, Any] = {
    "name": "mermoz.example.org", "customer": "mermoz-club", "plan": "business", "addons": [], "region": "eu-west",
    "server": "eu-west-1", "ip": "127.0.10.1", "state": "active", "stateReason": None, "sync": "synced",
    "conflicts": [{"property": "hosting.php.version", "planValue": "8.3", "availableValue": "8.2"}],
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Reconciled", "message": ""},
        {"type": "WebReady", "status": "True", "reason": "Provisioned", "message": "",
         "lastTransitionTime": "2026-11-29T08:00:00+00:00"},
    ],
    "effective": {"hosting": {"php": {"version": "8.2"}}}, "concerns": {"web": "provisioned", "db": "failed"},
    "dnsServers": ["127.0.10.1:53"], "fingerprint": "abc", "unknownToTheCrd": 1,
}


def _validate(st: dict[str, Any]) -> list[str]:
    schema = crds.spec_schema("Subscription")["properties"]["status"]
    v = OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)
    return [f"{e.json_path}: {e.message}" for e in v.iter_errors(st)]


def test_subscription_status_is_what_the_crd_keeps() -> None:
    st = status.subscription_status(ITEM, generation=3, now=T0)
    assert _validate(st) == []
    assert st["observedGeneration"] == 3 and st["server"] == "eu-west-1" and st["sync"] == "synced"
    assert "fingerprint" not in st and "unknownToTheCrd" not in st and "customer" not in st
    assert st["stateReason"] is None  # nullable: kept
    assert st["effective"] == ITEM["effective"]  # preserved as it is
    assert [c["type"] for c in st["conditions"]] == ["Ready", "WebReady"]
    assert all(c["observedGeneration"] == 3 for c in st["conditions"])
    web = st["conditions"][1]
    assert web["lastTransitionTime"] == "2026-11-29T08:00:00+00:00"  # the engine's own time is kept


def test_transition_time_moves_only_on_a_flip() -> None:
    first = status.subscription_status(ITEM, generation=3, now=T0)
    same = status.subscription_status(ITEM, generation=3, now=T1, previous=first)
    assert same == first
    assert status.status_patch(first, same) is None
    flipped_item = {**ITEM, "conditions": [{"type": "Ready", "status": "False", "reason": "WebFailed",
                                            "message": "nginx -t failed"}]}
    flipped = status.subscription_status(flipped_item, generation=3, now=T1, previous=first)
    assert flipped["conditions"] == [{"type": "Ready", "status": "False", "reason": "WebFailed",
                                      "message": "nginx -t failed", "lastTransitionTime": T1,
                                      "observedGeneration": 3}]
    reason_only = {**ITEM, "conditions": [{"type": "Ready", "status": "True", "reason": "Other", "message": "x"}]}
    kept = status.subscription_status(reason_only, generation=3, now=T1, previous=first)
    assert kept["conditions"][0]["lastTransitionTime"] == T0  # same status: no transition


def test_patch_only_what_changed() -> None:
    first = status.subscription_status(ITEM, generation=3, now=T0)
    assert status.status_patch(None, first) == {"status": first}
    moved = status.subscription_status({**ITEM, "server": "eu-west-2", "dnsServers": []}, generation=4, now=T1,
                                       previous=first)
    patch = status.status_patch(first, moved)
    assert patch is not None
    body = patch["status"]
    assert body["server"] == "eu-west-2" and body["observedGeneration"] == 4 and body["dnsServers"] == []
    assert "effective" not in body and "sync" not in body  # unchanged: not sent
    gone = status.status_patch(first, {k: v for k, v in first.items() if k != "ip"})
    assert gone == {"status": {"ip": None}}  # a removed field is deleted by the merge patch


@pytest.mark.parametrize(("old", "new", "patch"), [
    pytest.param({"a": 1}, {"a": 1}, {}, id="same"),
    pytest.param({"a": 1}, {"a": 2}, {"a": 2}, id="changed"),
    pytest.param({"a": 1, "b": 2}, {"a": 1}, {"b": None}, id="removed"),
    pytest.param({"a": {"x": 1, "y": 2}}, {"a": {"x": 1, "y": 3}}, {"a": {"y": 3}}, id="nested"),
    pytest.param({"a": [1, 2]}, {"a": [2]}, {"a": [2]}, id="list-replaced"),
])
def test_merge_patch(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert status.merge_patch(old, new) == patch


def _apply(doc: Any, patch: Any) -> Any:  # RFC 7386, to check the patch round-trips
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _apply(out.get(k), v)
    return out


def test_patch_applied_gives_the_new_status() -> None:
    a = status.subscription_status(ITEM, generation=1, now=T0)
    b = status.subscription_status({**ITEM, "state": "suspended", "stateReason": "overuse", "conflicts": []},
                                   generation=2, now=T1, previous=a)
    patch = status.status_patch(a, b)
    assert patch is not None and _apply(a, patch["status"]) == b


def test_basic_status() -> None:
    st = status.basic_status([{"type": "Ready", "status": "True", "reason": "Valid"}], generation=5, now=T0)
    assert st == {"observedGeneration": 5, "conditions": [{"type": "Ready", "status": "True", "reason": "Valid",
                                                           "message": "", "lastTransitionTime": T0,
                                                           "observedGeneration": 5}]}
    schema = crds.spec_schema("Server")["properties"]["status"]
    assert list(OAS30Validator(schema).iter_errors(st)) == []
