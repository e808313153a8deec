"""Which driver serves each concern.

``TENANTCTL_DRIVERS=none`` turns every driver off: decisions are made and recorded, and
every concern reports ``not provisioned`` (a planning machine with no access to the
servers). Otherwise each concern gets its real driver where one exists.
"""

from __future__ import annotations

import os

from controller.drivers import base
from controller.drivers.context import Context


def build(ctx: Context) -> dict[str, base.Driver]:
    drivers: dict[str, base.Driver] = {c: base.NotProvisioned(c) for c in base.CONCERNS}
    if os.environ.get("TENANTCTL_DRIVERS", "").strip().lower() == "none":
        return drivers
    from controller.drivers import db, dns, hosting, tls

    drivers["web"] = hosting.WebDriver(ctx)
    drivers["php"] = hosting.PhpDriver(ctx)
    drivers["db"] = db.DbDriver(ctx)
    drivers["dns"] = dns.DnsDriver(ctx)
    drivers["tls"] = tls.TlsDriver(ctx)
    return drivers
