"""The dns concern: subscriptions' zones on the PowerDNS servers of the ``dns`` role.

What belongs here: the PowerDNS API client (``api``, the only module doing I/O, where
HTTP and connection failures become ``TemporaryError``/``PermanentError``), the pure
decisions (``records``: zones, placement, template rrsets, minimal PATCHes), the
driver (``driver``) and the numbers it observed (``metrics``). What does not: the
PowerDNS installation and its static configuration (the bootstrap role's
``tasks/dns.yml``), certificates (the tls concern).
"""

from __future__ import annotations

from controller.drivers.dns import metrics
from controller.drivers.dns.driver import DnsDriver, Settings

__all__ = ["DnsDriver", "Settings", "metrics"]
