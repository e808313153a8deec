"""``tenantctl tls``: certificates of subscriptions (issue 4 point 4).

``renew SUB`` forces a new certificate for SUB: it records the request in the state dir
(``tls/renew/SUB``) and clears the engine's backoff record of ``SUB/tls`` in the state
store (the only one); the tls driver's drift check reports the subscription, so the
next resync (``tenantctl run``'s timer, or ``apply``) orders the certificate. Until the
new one is installed the current one keeps serving. ``status SUB`` prints what the
controller knows of SUB's certificate and of its failures.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli import common

if TYPE_CHECKING:
    from controller.drivers.tls import store as tls_store

tls_app = typer.Typer(help="TLS certificates (ACME).", no_args_is_help=True)


def _store() -> tls_store.Store:
    from controller.drivers.tls import store as tls_store  # here: other commands start faster

    return tls_store.Store(common.state_dir())


@tls_app.command("renew")
def renew(sub: Annotated[str, typer.Argument(help="subscription (its domain)")]) -> None:
    """Force a new certificate for SUB at the next resync (clears its backoff)."""
    try:
        path = _store().force(sub)
    except ValueError as exc:
        sys.stderr.write(f"tenantctl: {exc}\n")
        raise typer.Exit(2) from None
    store = common.open_store(readonly=False)
    if store is not None:
        with store:
            store.clear_backoff(f"{sub}/tls")
    sys.stdout.write(f"renewal of {sub} requested ({path}), its backoff cleared; it is ordered at the next resync\n")


@tls_app.command("status")
def status(
    sub: Annotated[str, typer.Argument(help="subscription (its domain)")],
    output: Annotated[str, typer.Option("-o", "--output", help="table or json")] = "table",
) -> None:
    """SUB's certificate: names, validity, renewal time, failures."""
    store = _store()
    try:
        info, forced = store.info(sub), store.forced(sub)
    except ValueError as exc:
        sys.stderr.write(f"tenantctl: {exc}\n")
        raise typer.Exit(2) from None
    backoff = None
    state = common.open_store(readonly=True)
    if state is not None:
        with state:
            backoff = state.get_backoff(f"{sub}/tls")
    from controller.drivers.tls import decide
    from controller.drivers.tls import settings as tls_settings

    fraction = tls_settings.Settings().renew_fraction
    doc = {
        "subscription": sub, "names": list(info.names) if info else [],
        "notBefore": info.not_before.isoformat() if info else None,
        "notAfter": info.not_after.isoformat() if info else None,
        "renewFrom": decide.renew_at(info, fraction).isoformat() if info else None,
        "renewalRequested": forced, "failures": backoff.failures if backoff else 0,
        "lastError": backoff.last_error if backoff else None,
        "nextAttempt": backoff.next_attempt.isoformat() if backoff else None,
    }
    if output == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    width = max(len(k) for k in doc)
    for key, value in doc.items():
        sys.stdout.write(f"{key:<{width}}  {', '.join(value) if isinstance(value, list) else value}\n")
