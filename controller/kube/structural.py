"""The rules of a structural openAPIV3Schema (apiextensions.k8s.io/v1), checked offline.

No API server can run here, and kubernetes-validate only checks that a CRD is a
well-formed object (it accepts ``$ref`` and ``uniqueItems``), so ``violations(schema)``
checks what kube-apiserver would refuse or prune: see "Specifying a structural schema"
in the Kubernetes documentation. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Schema = dict[str, Any]

#: Keys kube-apiserver refuses anywhere in a v1 CRD schema.
FORBIDDEN = {"$ref", "$schema", "definitions", "$defs", "id", "patternProperties", "const",
             "dependencies", "additionalItems"}
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
#: Keys a branch of a junctor may not set (it may only add value validations).
NOT_IN_JUNCTORS = {"type", "nullable", "default", "additionalProperties", "description", "title"}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
KNOWN = {
    "type", "format", "title", "description", "default", "enum", "nullable", "properties", "required",
    "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern", "minProperties", "maxProperties",
    "uniqueItems", "example", "externalDocs", *JUNCTORS,
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-validations",
}


def violations(schema: Schema, path: str = "") -> list[str]:
    """Every reason kube-apiserver would refuse ``schema`` as a structural schema."""
    return list(_node(schema, path or "openAPIV3Schema", root=True))


def _node(s: Any, path: str, *, root: bool = False) -> Iterator[str]:
    if not isinstance(s, dict):
        yield f"{path}: a schema must be a mapping, got {type(s).__name__}"
        return
    for key in sorted(set(s) & FORBIDDEN):
        yield f"{path}: {key} is not allowed in a CRD schema"
    for key in sorted(set(s) - KNOWN - FORBIDDEN):
        yield f"{path}: unknown schema keyword {key!r}"
    if s.get("uniqueItems"):
        yield f"{path}: uniqueItems is refused: use x-kubernetes-list-type: set or map"
    t = s.get("type")
    loose = s.get("x-kubernetes-int-or-string") or s.get("x-kubernetes-preserve-unknown-fields")
    if t is None and not loose:
        yield f"{path}: no type (every node needs one unless it preserves unknown fields or is int-or-string)"
    elif t is not None and t not in TYPES:
        yield f"{path}: type {t!r} is not one of {', '.join(sorted(TYPES))}"
    if root and t != "object":
        yield f"{path}: the root must be of type object"
    if "properties" in s and "additionalProperties" in s:
        yield f"{path}: properties and additionalProperties are mutually exclusive"
    if s.get("additionalProperties") is False:
        yield f"{path}: additionalProperties: false is refused (unknown fields are pruned)"
    if ("properties" in s or isinstance(s.get("additionalProperties"), dict)) and t not in (None, "object"):
        yield f"{path}: properties on a node of type {t}"
    if "items" in s and t != "array":
        yield f"{path}: items on a node of type {t}"
    if t == "array" and not isinstance(s.get("items"), dict):
        yield f"{path}: an array needs one items schema"
    yield from _list_type(s, path)
    for key in s.get("required", []):
        if "properties" in s and key not in s["properties"]:
            yield f"{path}: required field {key!r} has no schema"
    for name, sub in s.get("properties", {}).items():
        yield from _node(sub, f"{path}.properties.{name}")
    if isinstance(s.get("additionalProperties"), dict):
        yield from _node(s["additionalProperties"], f"{path}.additionalProperties")
    if isinstance(s.get("items"), dict):
        yield from _node(s["items"], f"{path}.items")
    for junctor in JUNCTORS:
        if junctor in s:
            branches = s[junctor] if isinstance(s[junctor], list) else [s[junctor]]
            for i, branch in enumerate(branches):
                yield from _branch(branch, s, f"{path}.{junctor}[{i}]")


def _list_type(s: Schema, path: str) -> Iterator[str]:
    kind = s.get("x-kubernetes-list-type")
    if kind is None:
        return
    if s.get("type") != "array":
        yield f"{path}: x-kubernetes-list-type on a node that is not an array"
        return
    items = s.get("items", {})
    if kind == "set" and items.get("type") in ("object", "array"):
        yield f"{path}: a set must have scalar items"
    elif kind == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []
        if not keys or items.get("type") != "object":
            yield f"{path}: a map list needs object items and x-kubernetes-list-map-keys"
        for key in keys:
            if key not in items.get("required", []):
                yield f"{path}: list map key {key!r} must be a required field of its items"
    elif kind not in ("atomic", "set", "map"):
        yield f"{path}: x-kubernetes-list-type must be atomic, set or map, got {kind!r}"


def _branch(b: Any, outer: Schema, path: str) -> Iterator[str]:
    if not isinstance(b, dict):
        yield f"{path}: a schema must be a mapping"
        return
    int_or_string = outer.get("x-kubernetes-int-or-string") and b.get("type") in ("integer", "string") and len(b) == 1
    for key in sorted(set(b) & NOT_IN_JUNCTORS):
        if not (key == "type" and int_or_string):
            yield f"{path}: {key} is not allowed inside allOf/anyOf/oneOf/not"
    for key in sorted(k for k in b if k.startswith("x-kubernetes-")):
        yield f"{path}: {key} is not allowed inside allOf/anyOf/oneOf/not"
    for key in sorted(set(b) & FORBIDDEN):
        yield f"{path}: {key} is not allowed in a CRD schema"
    for name, sub in b.get("properties", {}).items():
        if name not in outer.get("properties", {}):
            yield f"{path}: property {name!r} is not specified outside the junctor"
        elif isinstance(sub, dict):
            yield from _branch(sub, outer["properties"][name], f"{path}.properties.{name}")
    if "items" in b:
        if "items" not in outer:
            yield f"{path}: items not specified outside the junctor"
        elif isinstance(b["items"], dict):
            yield from _branch(b["items"], outer["items"], f"{path}.items")
