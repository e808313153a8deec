"""Desired-state documents -> custom resources of the generated CRDs.

A document already has the shape of a custom resource (``apiVersion: tenantctl.io/v1``,
``kind``, ``metadata``, ``spec``), so ``to_resource`` only makes it what the API server
stores: JSON values (a YAML date becomes ``YYYY-MM-DD``), no ``default`` or null where
the field inherits (PLAN-3: left out means the same, and the API server prunes a null
there anyway),
a Subscription's name in its ASCII form (IDN input becomes punycode, as the loader
stores it) and, if asked, a namespace. Pure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import Any

from controller.kube import crds
from controller.kube import schema as schema_mod
from controller.model import values

#: The value the loader reads as UNSET ("inherit").
INHERIT = values.UNSET.value


def to_resource(document: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
    """The custom resource of one document (raw YAML data, as read from a file)."""
    kind = document.get("kind")
    meta_in = document.get("metadata") or {}
    meta: dict[str, Any] = {"name": meta_in.get("name")}
    if kind == "Subscription" and isinstance(meta["name"], str):
        with contextlib.suppress(ValueError):  # else the loader (and the API server) say what is wrong
            meta["name"] = values.domain_name(meta["name"])
    if namespace:
        meta["namespace"] = namespace
    for key in ("labels", "annotations"):
        if meta_in.get(key):
            meta[key] = dict(meta_in[key])
    spec = _json(document.get("spec") or {})
    if isinstance(kind, str) and kind in crds.BY_KIND:
        spec = _inherit(spec, crds.spec_schema(kind)["properties"]["spec"])
    return {"apiVersion": document.get("apiVersion"), "kind": kind, "metadata": meta, "spec": spec}


def _json(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Mapping):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json(x) for x in v]
    return v


def _inherit(v: Any, schema: Mapping[str, Any]) -> Any:
    """Leave out ``default`` and null where a field is not nullable (an inheriting value)."""
    if isinstance(v, dict) and "properties" in schema:
        props = schema["properties"]
        return {k: _inherit(x, props[k]) if k in props else x for k, x in v.items()
                if not (k in props and _inherits(x, props[k]))}
    if isinstance(v, list) and isinstance(schema.get("items"), Mapping):
        return [_inherit(x, schema["items"]) for x in v]
    return v


def _inherits(v: Any, schema: Mapping[str, Any]) -> bool:
    if schema.get("nullable") or schema.get("x-kubernetes-preserve-unknown-fields"):
        return False
    return v is None or (v == INHERIT and schema_mod.INHERITED in schema.get("description", ""))
