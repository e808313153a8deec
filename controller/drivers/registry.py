"""Which driver serves each concern.

``TENANTCTL_DRIVERS=none`` turns every driver off: decisions are made and recorded, and
every concern reports ``not provisioned`` (a planning machine with no access to the
servers). Otherwise each concern gets its real driver where one exists.
"""

from __future__ import annotations

from controller import settings
from controller.drivers import base, identity
from controller.drivers.context import Context


def build(ctx: Context) -> dict[str, base.Driver]:
    drivers: dict[str, base.Driver] = {c: base.NotProvisioned(c) for c in base.CONCERNS}
    if settings.current().core.drivers_off:
        return drivers
    from controller.drivers import backup_settings, db, dns, hosting, tls
    from controller.drivers.backup import driver as backup

    drivers["web"] = hosting.WebDriver(ctx)
    drivers["php"] = hosting.PhpDriver(ctx)
    drivers["db"] = db.DbDriver(ctx)
    drivers["dns"] = dns.DnsDriver(ctx)
    drivers["tls"] = tls.TlsDriver(ctx)
    drivers["backup"] = backup.BackupDriver(ctx, backup_settings.builder(ctx))
    return drivers


def probe(ctx: Context) -> identity.Probe | None:
    """The identity probe of the servers (None in planning mode: no server is asked)."""
    return None if settings.current().core.drivers_off else identity.Probe(ctx)
