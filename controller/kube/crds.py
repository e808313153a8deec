"""The six CustomResourceDefinitions of tenantctl (group ``tenantctl.io``, version ``v1``).

``definitions()`` builds them from ``controller.model.kinds`` (spec) and the status
contract below (what the operator writes: conditions, observedGeneration and, for a
Subscription, its placement, sync state, conflicts and effective spec, as in
``tenantctl status -o json``). ``render()`` gives the YAML checked in under
``deploy/crds/``; ``tenantctl crds`` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from controller.kube import schema
from controller.model import kinds, loader

GROUP, VERSION = loader.API_VERSION.split("/")
CATEGORY = "tenantctl"

Schema = dict[str, Any]

CONDITION: Schema = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {"type": "string", "description": "Ready, Synced, Placed or <Concern>Ready"},
        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string", "description": "CamelCase reason"},
        "message": {"type": "string"},
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer", "minimum": 0},
    },
}

STATUS: Schema = {
    "type": "object",
    "description": "Written by the tenantctl operator.",
    "properties": {
        "observedGeneration": {"type": "integer", "minimum": 0},
        "conditions": {
            "type": "array",
            "items": CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    },
}

SUBSCRIPTION_STATUS: Schema = {
    **STATUS,
    "properties": {
        **STATUS["properties"],
        "server": {"type": "string", "nullable": True, "description": "the server it is placed on"},
        "ip": {"type": "string", "nullable": True},
        "state": {"type": "string", "enum": ["active", "suspended", "deleted"]},
        "stateReason": {"type": "string", "nullable": True,
                        "enum": ["manual", "expired", "overuse", "customer", "nonpayment", None]},
        "sync": {"type": "string", "enum": ["synced", "locked", "unsynced", "custom"]},
        "conflicts": {
            "type": "array",
            "x-kubernetes-list-type": "atomic",
            "items": {
                "type": "object",
                "required": ["property"],
                "properties": {
                    "property": {"type": "string"},
                    "planValue": {"x-kubernetes-preserve-unknown-fields": True},
                    "availableValue": {"x-kubernetes-preserve-unknown-fields": True},
                },
            },
        },
        "concerns": {
            "type": "object",
            "additionalProperties": {"type": "string", "enum": ["provisioned", "not provisioned", "failed"]},
        },
        "dnsServers": {"type": "array", "x-kubernetes-list-type": "atomic", "items": {"type": "string"}},
        "access": {
            "type": "object",
            "description": "how the customer reaches the web space (SFTP by key)",
            "properties": {"sftp": {"type": "string"}, "ftp": {"type": "string"}},
        },
        "backup": {
            "type": "object",
            "description": "BKP-1..3: last success, the newest snapshot per region and whether a drill verified it",
            "properties": {
                "lastSuccess": {"type": "string", "nullable": True},
                "lastAttempt": {"type": "string", "nullable": True},
                "error": {"type": "string", "nullable": True},
                "lastDrill": {"type": "string", "nullable": True},
                "drillError": {"type": "string", "nullable": True},
                "regions": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"lastSnapshot": {"type": "string", "nullable": True},
                                       "verified": {"type": "boolean"}},
                    },
                },
            },
        },
        "effective": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "the effective spec (plan + add-ons + customisations + permissions)",
        },
    },
}


def _column(name: str, path: str, type_: str = "string", priority: int = 0) -> Schema:
    col: Schema = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    return col


READY = _column("Ready", '.status.conditions[?(@.type=="Ready")].status')
AGE = _column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[kinds.Strict]
    status: Schema = field(default_factory=lambda: STATUS)
    columns: tuple[Schema, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


KINDS: tuple[Kind, ...] = (
    Kind("Region", "regions", ("tcregion",), kinds.RegionSpec,
         columns=(_column("Timezone", ".spec.timezone"), READY, AGE)),
    Kind("Server", "servers", ("tcserver", "tcsrv"), kinds.ServerSpec,
         columns=(_column("Region", ".spec.region"), _column("Provider", ".spec.provider"),
                  _column("Address", ".spec.address"), READY, AGE)),
    Kind("ServicePlan", "serviceplans", ("plan", "splan"), kinds.PlanBody, columns=(READY, AGE)),
    Kind("AddOnPlan", "addonplans", ("addon", "aplan"), kinds.PlanBody, columns=(READY, AGE)),
    Kind("Customer", "customers", ("cust",), kinds.CustomerSpec,
         columns=(_column("Email", ".spec.email"), _column("State", ".spec.state"), READY, AGE)),
    Kind("Subscription", "subscriptions", ("sub", "subs"), kinds.SubscriptionSpec, SUBSCRIPTION_STATUS,
         columns=(_column("Customer", ".spec.customer"), _column("Plan", ".spec.plan"),
                  _column("Server", ".status.server"), _column("State", ".status.state"),
                  _column("Sync", ".status.sync"), READY,
                  _column("Region", ".spec.region", priority=1), AGE)),
)
BY_KIND: dict[str, Kind] = {k.kind: k for k in KINDS}


def spec_schema(kind: str) -> Schema:
    """The openAPIV3Schema of a custom resource of ``kind`` (spec and status)."""
    k = BY_KIND[kind]
    spec = schema.model_schema(k.spec)
    spec["description"] = f"The {kind} document's spec (../shared/desired-state.md)."
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": k.status,
        },
    }


def definition(kind: str) -> Schema:
    """The CustomResourceDefinition of ``kind``."""
    k = BY_KIND[kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": k.name, "labels": {"app.kubernetes.io/name": "tenantctl"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": k.plural,
                "singular": kind.lower(),
                "shortNames": list(k.short_names),
                "categories": [CATEGORY],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": list(k.columns),
                "schema": {"openAPIV3Schema": spec_schema(kind)},
            }],
        },
    }


def definitions() -> dict[str, Schema]:
    """File name under ``deploy/crds/`` -> CRD, one per kind."""
    return {f"{k.name}.yaml": definition(k.kind) for k in KINDS}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # shared sub-schemas are written out in full
        return True


def render(crd: Schema) -> str:
    """Stable YAML of a CRD (keys in generation order, a header saying where it comes from)."""
    header = "# Generated by `tenantctl crds` from controller/model/kinds.py: do not edit.\n"
    return header + yaml.dump(crd, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
