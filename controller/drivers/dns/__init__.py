"""The dns concern: subscriptions' zones on the PowerDNS servers of the ``dns`` role.

What belongs here: the driver (``driver``) and the numbers it observed (``metrics``).
The PowerDNS API client and the pure zone decisions (placement, template rrsets, minimal
PATCHes) are shared with the tls concern's DNS-01: ``controller.drivers.powerdns``. What does not: the
PowerDNS installation and its static configuration (the bootstrap role's
``tasks/dns.yml``), certificates (the tls concern).
"""

from __future__ import annotations

from controller.drivers.dns import metrics
from controller.drivers.dns.driver import DnsDriver, Settings

__all__ = ["DnsDriver", "Settings", "metrics"]
