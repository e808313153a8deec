"""``tenantctl tls``: certificates of subscriptions (issue 4 point 4).

``renew SUB`` forces a new certificate for SUB: it records the request in the state dir
(``tls/renew/SUB``) and clears SUB's ACME backoff; the tls driver's drift check reports
the subscription, so the next resync (``tenantctl run``'s timer, or ``apply``) orders
the certificate. Until the new one is installed the current one keeps serving.
``status SUB`` prints what the controller knows of SUB's certificate.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from controller.drivers.tls import decide
from controller.drivers.tls import store as tls_store
from controller.state import store as state_store

tls_app = typer.Typer(help="TLS certificates (ACME).", no_args_is_help=True)


def _store() -> tls_store.Store:
    return tls_store.Store(state_store.default_path().parent)


@tls_app.command("renew")
def renew(sub: Annotated[str, typer.Argument(help="subscription (its domain)")]) -> None:
    """Force a new certificate for SUB at the next resync (clears its backoff)."""
    try:
        path = _store().force(sub)
    except ValueError as exc:
        sys.stderr.write(f"tenantctl: {exc}\n")
        raise typer.Exit(2) from None
    sys.stdout.write(f"renewal of {sub} requested ({path}); it is ordered at the next resync\n")


@tls_app.command("status")
def status(
    sub: Annotated[str, typer.Argument(help="subscription (its domain)")],
    output: Annotated[str, typer.Option("-o", "--output", help="table or json")] = "table",
) -> None:
    """SUB's certificate: names, validity, renewal time, failures."""
    store = _store()
    try:
        info, st, forced = store.info(sub), store.status(sub), store.forced(sub)
    except ValueError as exc:
        sys.stderr.write(f"tenantctl: {exc}\n")
        raise typer.Exit(2) from None
    doc = {
        "subscription": sub, "names": list(info.names) if info else [],
        "notBefore": info.not_before.isoformat() if info else None,
        "notAfter": info.not_after.isoformat() if info else None,
        "renewFrom": decide.renew_at(info, 2 / 3).isoformat() if info else None,
        "renewalRequested": forced, "failures": int(st.get("failures") or 0), "lastError": st.get("last_error"),
        "nextAttempt": st.get("next_attempt"), "lastRenewal": st.get("last_renewal"),
    }
    if output == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    width = max(len(k) for k in doc)
    for key, value in doc.items():
        sys.stdout.write(f"{key:<{width}}  {', '.join(value) if isinstance(value, list) else value}\n")
