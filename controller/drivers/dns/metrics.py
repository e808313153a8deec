"""Numbers the dns driver observed, for ``controller/metrics.py`` to export.

Updated from the zone listings the driver makes anyway (one ``GET /zones`` per dns
server and pass): no extra I/O at scrape time. Process-wide, like a collector.

* ``zones_by_state()`` -> ``{(server, state): count}`` with state one of
  ``primary`` (tenantctl's primary zones), ``secondary`` (transferred and as new as
  their primary), ``behind`` (a secondary whose serial is below its primary's),
  ``empty`` (a secondary never transferred yet), ``foreign`` (not tenantctl's zones);
* ``last_sync()`` -> ``{server: unix time}`` of the last pass in which every call to
  that dns server succeeded.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from controller.drivers.powerdns import records

STATES = ("primary", "secondary", "behind", "empty", "foreign")

_lock = threading.Lock()
_zones: dict[tuple[str, str], int] = {}
_last_sync: dict[str, float] = {}


def observe(listings: Mapping[str, Mapping[str, Mapping[str, Any]]], addresses: Mapping[str, str]) -> None:
    """Recount from ``{server: {zone: listing entry}}`` (servers not listed keep their counts)."""
    by_address = {addr: name for name, addr in addresses.items()}
    counts: dict[tuple[str, str], int] = {(s, st): 0 for s in listings for st in STATES}
    for server, zones in listings.items():
        for zone, info in zones.items():
            counts[(server, _state(zone, info, listings, by_address))] += 1
    with _lock:
        for key in [k for k in _zones if k[0] in listings]:
            del _zones[key]
        _zones.update(counts)


def _state(zone: str, info: Mapping[str, Any], listings: Mapping[str, Mapping[str, Mapping[str, Any]]],
           by_address: Mapping[str, str]) -> str:
    if records.parse_account(info.get("account"))[0] is None:
        return "foreign"
    if info.get("kind") != "Slave":
        return "primary"
    serial = int(info.get("serial") or 0)
    if serial == 0:
        return "empty"
    for master in info.get("masters") or []:
        primary = by_address.get(str(master).rsplit(":", 1)[0] if str(master).count(":") == 1 else str(master))
        theirs = listings.get(primary or "", {}).get(zone)
        if theirs is not None and int(theirs.get("serial") or 0) > serial:
            return "behind"
    return "secondary"


def synced(server: str, at: float) -> None:
    with _lock:
        _last_sync[server] = at


def zones_by_state() -> dict[tuple[str, str], int]:
    with _lock:
        return dict(_zones)


def last_sync() -> dict[str, float]:
    with _lock:
        return dict(_last_sync)
