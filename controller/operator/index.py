"""What the operator indexes, and which subscriptions an event concerns. Pure.

kopf keeps one in-memory index per kind (object name -> the object as last seen) and
three fan-out indexes of Subscriptions (by plan, by add-on, by customer), filled from
the watch streams; ``affected`` answers "which subscriptions does a change of this
object touch" from those indexes, without listing anything: a plan edit reaches the
subscriptions of that plan only. A Region or a Server can move or refuse any
placement: ``None`` (all of them).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from typing import Any

#: kind -> plural of the custom resources the operator watches
PLURALS: dict[str, str] = {
    "Region": "regions", "Server": "servers", "ServicePlan": "serviceplans", "AddOnPlan": "addonplans",
    "Customer": "customers", "Subscription": "subscriptions",
}
#: the name of each kind's object index (kopf passes indexes by these names)
OBJECTS: dict[str, str] = {kind: f"idx_{plural}" for kind, plural in PLURALS.items()}
BY_PLAN, BY_ADDON, BY_CUSTOMER = "subs_by_plan", "subs_by_addon", "subs_by_customer"
#: the fan-out index of each referenced kind
FAN_OUT: dict[str, str] = {"ServicePlan": BY_PLAN, "AddOnPlan": BY_ADDON, "Customer": BY_CUSTOMER}
#: the operator's finalizer on Subscriptions (LIFE-6: final backup before the object goes)
FINALIZER = "tenantctl.io/final-backup"
#: the annotation that confirms a deleted Subscription's part in a held mass deletion
#: (what ``apply --allow-mass-delete`` is to the CLI)
CONFIRM_DELETION = "tenantctl.io/confirm-deletion"


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object as indexed: a plain copy that later events do not change."""
    return copy.deepcopy({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec", "status") if k in body})


def object_entry(name: str, body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: snapshot(body)}


def fan_out_entries(spec: Mapping[str, Any], name: str) -> dict[str, dict[str, str]]:
    """The fan-out index entries of one Subscription: ``{index: {key: name}}``."""
    plan = spec.get("plan")
    addons = spec.get("addons") or []
    customer = spec.get("customer")
    return {
        BY_PLAN: {plan: name} if isinstance(plan, str) else {},
        BY_ADDON: {a: name for a in addons if isinstance(a, str)},
        BY_CUSTOMER: {customer: name} if isinstance(customer, str) else {},
    }


def affected(kind: str, name: str, fan_out: Mapping[str, Mapping[str, Collection[str]]]) -> set[str] | None:
    """The subscriptions an event of ``kind``/``name`` concerns (None: every one)."""
    if kind == "Subscription":
        return {name}
    index = FAN_OUT.get(kind)
    if index is None:
        return None
    return set(fan_out.get(index, {}).get(name, ()))


def deleting(body: Mapping[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def deletion_confirmed(body: Mapping[str, Any]) -> bool:
    """Whether a deleted Subscription carries ``CONFIRM_DELETION: "true"``."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return deleting(body) and annotations.get(CONFIRM_DELETION) == "true"


def mass_deletion_confirmed(subscriptions: Mapping[str, Mapping[str, Any]], live: Iterable[str]) -> bool:
    """Whether the deletions a pass would make are all confirmed: every subscription the
    store holds alive that the cluster no longer wants is a Subscription being deleted
    with the annotation. One that vanished from the cluster without its finalizer cannot
    be confirmed here (``tenantctl apply --allow-mass-delete`` on the operator's volume)."""
    gone = [n for n in live if n not in subscriptions or deleting(subscriptions[n])]
    return bool(gone) and all(n in subscriptions and deletion_confirmed(subscriptions[n]) for n in gone)


def has_finalizer(body: Mapping[str, Any]) -> bool:
    return FINALIZER in ((body.get("metadata") or {}).get("finalizers") or [])


def without_finalizer(body: Mapping[str, Any]) -> list[str]:
    return [f for f in (body.get("metadata") or {}).get("finalizers") or [] if f != FINALIZER]


def flatten(index: Mapping[str, Iterable[Any]]) -> list[Any]:
    """Every value of a kopf index (a mapping of key -> collection of values)."""
    return [v for values in index.values() for v in values]
