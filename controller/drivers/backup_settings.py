"""The ``settings`` part of a subscription's backup (BKP-6 "settings"): one JSON document
with what the last pass recorded of it (its status item: effective spec, placement,
plan and add-ons), its desired documents when the caller has them, the export of each
of its DNS zones, and its TLS certificate and key. Kept here, beside the concern
drivers, because it reads two of them (tls's store, the PowerDNS client) and the backup
driver may import neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.drivers.context import Context
from controller.drivers.powerdns import api
from controller.drivers.tls import store as tls_store

PDNS_PORT = 8081
VERSION = 1


def zones(ctx: Context, item: Mapping[str, Any]) -> dict[str, str]:
    """``{zone: zone file}`` of the subscription's sites, from the first DNS server of its
    region that has the zone."""
    sites = [s["name"] for s in (item.get("effective") or {}).get("sites") or []]
    region = item.get("region")
    servers = sorted(n for n, s in ctx.servers.items() if "dns" in s.roles and s.region == region)
    out: dict[str, str] = {}
    for site in sites:
        for name in servers:
            srv = ctx.servers[name]
            client = api.Client(name, srv.address, PDNS_PORT, ctx.secrets(name)["pdns_api_key"],
                                api.Settings(attempts=1))
            try:
                if client.zone(site + ".") is not None:
                    out[site] = client.export(site + ".")
                    break
            finally:
                client.close()
    return out


def builder(ctx: Context, documents: Callable[[str], Sequence[Mapping[str, Any]]] | None = None
            ) -> Callable[[Mapping[str, Any]], bytes]:
    """``settings_of(item) -> bytes`` for the backup runner (``documents(sub)``: its desired
    documents, when known)."""
    certs = tls_store.Store(ctx.state_dir)

    def settings_of(item: Mapping[str, Any]) -> bytes:
        sub = item["name"]
        cert = certs.certificate(sub)
        doc = {"version": VERSION, "subscription": sub, "status": dict(item),
               "documents": list(documents(sub)) if documents is not None else [],
               "zones": zones(ctx, item),
               "tls": {"fullchain": cert[0].decode(), "privkey": cert[1].decode()} if cert else None}
        return json.dumps(doc, sort_keys=True, indent=1).encode()

    return settings_of
