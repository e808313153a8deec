"""Pulumi inventories -> Server (and Region) documents.

The ``servers`` stack (``stacks/servers``) exports ``inventory``: the servers it created
at the cloud provider with their addresses and the roles, capacity and offers declared
in its config. ``pulumi stack output --json`` prints ``{"inventory": {...}, ...}``;
``server_documents`` turns that (or the inventory alone) into Server documents with
``provider: ssh`` (real hosts, bootstrapped over SSH by the same Ansible role as the
embedded servers), which ``tenantctl validate`` accepts together with their Regions
(``region_documents``). Pure: the caller reads the JSON.

Inventory format (version 1)::

    {"version": 1, "provider": "hcloud",
     "regions": {"eu-west": {"location": "fsn1", "timezone": "Europe/Paris"}},
     "servers": [{"name": "eu-west-1", "region": "eu-west", "location": "fsn1",
                  "serverType": "cx32", "ipv4": "203.0.113.10", "ipv6": "2001:db8::1",
                  "dedicatedIps": ["203.0.113.20"], "roles": ["web", "dns"],
                  "capacity": {...}, "offers": {...}, "phpDefaults": {...}}]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller import errors
from controller.model import loader

VERSION = 1
#: Optional spec groups copied as they are from the inventory (the stack's config).
PASSED_THROUGH = ("os", "capacity", "offers", "phpDefaults")
LABEL_PREFIX = "tenantctl.io/"


class InventoryError(errors.TenantctlError):
    """The inventory is not one the ``servers`` stack exports (says what is wrong)."""


def inventory_of(outputs: Any) -> Mapping[str, Any]:
    """The inventory in ``pulumi stack output --json`` (or the inventory itself)."""
    if isinstance(outputs, Mapping) and "inventory" in outputs:
        outputs = outputs["inventory"]
    if not isinstance(outputs, Mapping) or not isinstance(outputs.get("servers"), list):
        raise InventoryError("expected the `servers` stack's outputs: a mapping with inventory.servers "
                             "(pulumi stack output --json)")
    if outputs.get("version", VERSION) != VERSION:
        raise InventoryError(f"inventory version {outputs.get('version')!r} is not supported (expected {VERSION})")
    return outputs


def _required(server: Mapping[str, Any], key: str, where: str) -> Any:
    value = server.get(key)
    if value in (None, "", []):
        raise InventoryError(f"{where}: {key} is missing (an output still unknown? run `tenantctl infra up servers` "
                             "first)")
    return value


def server_document(server: Mapping[str, Any], provider: str) -> dict[str, Any]:
    """The Server document of one inventory entry."""
    if not isinstance(server, Mapping):
        raise InventoryError(f"expected a server mapping, got {type(server).__name__}")
    name = _required(server, "name", "server")
    where = f"server {name!r}"
    ipv4 = _required(server, "ipv4", where)
    ips = [{"address": ipv4, "type": "shared"}]
    ips += [{"address": ip, "type": "dedicated"} for ip in server.get("dedicatedIps") or []]
    spec: dict[str, Any] = {
        "region": _required(server, "region", where),
        "provider": "ssh",
        "address": ipv4,
        "ips": ips,
        "roles": list(_required(server, "roles", where)),
    }
    for key in PASSED_THROUGH:
        if server.get(key):
            spec[key] = server[key]
    labels = {f"{LABEL_PREFIX}provider": provider}
    for key in ("location", "serverType"):
        if server.get(key):
            labels[f"{LABEL_PREFIX}{key.lower()}"] = str(server[key])
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if server.get("ipv6"):
        metadata["annotations"] = {f"{LABEL_PREFIX}ipv6": str(server["ipv6"])}
    return {"apiVersion": loader.API_VERSION, "kind": "Server", "metadata": metadata, "spec": spec}


def server_documents(outputs: Any) -> list[dict[str, Any]]:
    """Server documents of every server of the inventory, sorted by name."""
    inv = inventory_of(outputs)
    provider = str(inv.get("provider") or "unknown")
    docs = [server_document(s, provider) for s in inv["servers"]]
    names = [d["metadata"]["name"] for d in docs]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InventoryError(f"server {dups[0]!r} is listed twice in the inventory")
    return sorted(docs, key=lambda d: str(d["metadata"]["name"]))


def region_documents(outputs: Any) -> list[dict[str, Any]]:
    """Region documents of the inventory's regions (time zone from the stack's config)."""
    inv = inventory_of(outputs)
    regions = inv.get("regions") or {}
    if not isinstance(regions, Mapping):
        raise InventoryError("inventory.regions must be a mapping of region names")
    for s in inv["servers"]:
        if isinstance(s, Mapping) and s.get("region") not in regions:
            regions = {**regions, s.get("region"): {}}
    out = []
    for name in sorted(regions, key=str):
        spec = {"timezone": regions[name]["timezone"]} if regions[name].get("timezone") else {}
        out.append({"apiVersion": loader.API_VERSION, "kind": "Region", "metadata": {"name": name}, "spec": spec})
    return out
