"""Numbers the tls driver observed, for ``controller/metrics.py`` to export (plain
functions, process-wide like a collector; no I/O at scrape time: the driver updates them
as it applies and checks drift).

* ``certificate_expiry()`` -> ``{subscription: unix time}``: the notAfter of the
  certificate each subscription serves. One series per TLS subscription is the only
  per-subscription cardinality here (about 10,000 at full size): it is the point of the
  metric (alert on any certificate closer than N days to expiry) and cannot be
  aggregated away; nothing else is labelled by subscription.
* ``last_renewal()`` -> ``{subscription: unix time}`` of the last successful issuance.
* ``renewal_failures()`` -> ``{subscription: consecutive failures}`` (only those > 0:
  failing subscriptions are few, so the series set stays small).
* ``acme_requests()`` -> ``{result: count}`` and ``acme_request_seconds()`` ->
  ``{result: total seconds}``, result in ``ok|error|unreachable`` (HTTP requests to
  the CA); ``acme_orders()``/``acme_order_seconds()`` the same per order
  (``issued|failed``). Export as counters (``_total``, ``_seconds_total``) or as a
  summary's ``_count``/``_sum``.
"""

from __future__ import annotations

import threading

from controller.drivers.tls import ca

#: every driver's counters add up here
COUNTERS = ca.Counters()

_lock = threading.Lock()
_expiry: dict[str, float] = {}
_renewed: dict[str, float] = {}
_failures: dict[str, int] = {}


def observe(sub: str, *, expiry: float | None = None, renewed: float | None = None, failures: int | None = None
            ) -> None:
    with _lock:
        if expiry is not None:
            _expiry[sub] = expiry
        if renewed is not None:
            _renewed[sub] = renewed
        if failures is not None:
            if failures > 0:
                _failures[sub] = failures
            else:
                _failures.pop(sub, None)


def failed(sub: str) -> None:
    """One more consecutive failed order of ``sub`` (a success resets it: ``observe``)."""
    with _lock:
        _failures[sub] = _failures.get(sub, 0) + 1


def forget(sub: str) -> None:
    with _lock:
        for d in (_expiry, _renewed, _failures):
            d.pop(sub, None)


def certificate_expiry() -> dict[str, float]:
    with _lock:
        return dict(_expiry)


def last_renewal() -> dict[str, float]:
    with _lock:
        return dict(_renewed)


def renewal_failures() -> dict[str, int]:
    with _lock:
        return dict(_failures)


def acme_requests() -> dict[str, int]:
    with COUNTERS._lock:
        return dict(COUNTERS.requests)


def acme_request_seconds() -> dict[str, float]:
    with COUNTERS._lock:
        return dict(COUNTERS.request_seconds)


def acme_orders() -> dict[str, int]:
    with COUNTERS._lock:
        return dict(COUNTERS.orders)


def acme_order_seconds() -> dict[str, float]:
    with COUNTERS._lock:
        return dict(COUNTERS.order_seconds)
