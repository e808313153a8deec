"""Custom-resource status from tenantctl's status documents, and the patch that writes it.

``subscription_status`` turns one item of ``tenantctl status -o json`` (what the engine
records per subscription) into the ``status`` of its Subscription resource, shaped and
pruned by the generated CRD (what the API server would keep); ``observedGeneration`` is
the generation the pass saw; a condition's ``lastTransitionTime`` moves only when its
status flips (cert-manager's rule). ``status_patch`` gives the JSON merge patch (RFC
7386) from the status on the object to the new one, or None when nothing changed, so a
front-end writes status only on a change. Pure: the operator does the API calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.kube import crds

Schema = Mapping[str, Any]


def conditions(new: list[Mapping[str, Any]], previous: list[Mapping[str, Any]] | None, *, now: str,
               generation: int | None = None) -> list[dict[str, Any]]:
    """Conditions with a ``lastTransitionTime`` that moves only when ``status`` flips.

    A time the engine recorded is kept; else the previous one of the same type if its
    status is the same; else ``now``. Sorted by type, one per type (the last wins)."""
    before = {c.get("type"): c for c in previous or []}
    out: dict[str, dict[str, Any]] = {}
    for c in new:
        kind = str(c.get("type"))
        cond: dict[str, Any] = {"type": kind, "status": str(c.get("status", "Unknown")),
                                "reason": str(c.get("reason") or "Unknown"), "message": str(c.get("message") or "")}
        old = before.get(kind)
        if c.get("lastTransitionTime"):
            cond["lastTransitionTime"] = c["lastTransitionTime"]
        elif old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            cond["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            cond["lastTransitionTime"] = now
        if generation is not None:
            cond["observedGeneration"] = generation
        out[kind] = cond
    return [out[k] for k in sorted(out)]


def prune(value: Any, schema: Schema) -> Any:
    """``value`` as the API server stores it under ``schema``: unknown fields dropped
    (except where the schema preserves them) and nulls dropped where not nullable."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return value
    if isinstance(value, Mapping):
        if "properties" in schema:
            props = schema["properties"]
            return {k: prune(v, props[k]) for k, v in value.items()
                    if k in props and (v is not None or props[k].get("nullable"))}
        if isinstance(schema.get("additionalProperties"), Mapping):
            return {k: prune(v, schema["additionalProperties"]) for k, v in value.items() if v is not None}
        return dict(value)
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(v, schema["items"]) for v in value]
    return value


def subscription_status(item: Mapping[str, Any], *, generation: int | None, now: str,
                        previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``status`` of a Subscription resource from its status document."""
    prev_conditions = list((previous or {}).get("conditions") or [])
    status = {**item, "observedGeneration": generation,
              "conditions": conditions(list(item.get("conditions") or []), prev_conditions, now=now,
                                       generation=generation)}
    schema = crds.spec_schema("Subscription")["properties"]["status"]
    out: dict[str, Any] = prune(status, schema)
    return out


def basic_status(conds: list[Mapping[str, Any]], *, generation: int | None, now: str,
                 previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``status`` of a Region, Server, plan or Customer: conditions and generation."""
    prev = list((previous or {}).get("conditions") or [])
    out: dict[str, Any] = {"conditions": conditions(conds, prev, now=now, generation=generation)}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 JSON merge patch that turns ``old`` into ``new`` (lists are replaced)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        if k not in old:
            patch[k] = v
        elif old[k] != v:
            patch[k] = merge_patch(old[k], v)
    return patch


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The body of a PATCH of the ``status`` subresource, or None if nothing changed."""
    if current is not None and dict(current) == dict(desired):
        return None
    return {"status": merge_patch(dict(current or {}), dict(desired))}
