"""TLS certificates over ACME (issue 4 points 3-5; TLS-1, TLS-2).

One certificate per subscription whose effective ``hosting.ssl`` is true, covering the
domain, ``www.``, every site and alias; HTTP-01 through nginx (challenge files shipped in
one batch per server) by default, DNS-01 through the PowerDNS API where the settings ask
for it or HTTP-01 cannot work (``dns01``), installed into nginx with one verified reload per server batch (the agent library's
transaction); renewal at ``Settings.renew_fraction`` (two thirds) of the lifetime; one
token bucket per CA (``controller.ratelimit``); failures carry a retry hint, the engine
keeps the one backoff record.

Modules: ``settings`` (what is configurable), ``decide`` (pure: names, challenge,
due-ness), ``store`` (keys and certificates under ``<state>/tls``, 0600), ``ca`` (the ACME
client: account, orders, a 50 ms poll loop, counters), ``render`` (the nginx TLS include
per site, pure), ``dns01`` (challenge TXT records on the zone's primary, checked with a stdlib DNS query,
removed after the order), ``agent`` (the stdlib program that runs on the server), ``driver``
(``TlsDriver``), ``metrics`` (plain functions for ``controller/metrics.py``). What does
not belong here: the vhost itself (``hosting``), zones (``dns``), batching (``reconcile``).
"""

from controller.drivers.tls.driver import TlsDriver
from controller.drivers.tls.settings import Settings

__all__ = ["Settings", "TlsDriver"]
