"""``tenantctl operator``: the Kubernetes operator (issue 11), a thin front-end.

Everything is in ``controller.operator``; this command only turns flags into its
``Options`` and runs one replica until a signal (exit 0) or until it loses the Lease
(exit 1: the pod restarts as a standby). The flags are the ones deploy/operator's
Deployment passes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated

import typer

from controller.cli.common import app, state_dir


@app.command(name="operator")
def operator(
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="the namespace of the custom resources "
                                                                     "and of the Lease")] = "tenantctl",
    lease: Annotated[str, typer.Option("--lease", help="the coordination.k8s.io Lease electing the active "
                                                       "replica")] = "tenantctl-operator",
    metrics_addr: Annotated[str | None, typer.Option("--metrics-addr", help="HOST:PORT for /metrics")] = None,
    health_addr: Annotated[str | None, typer.Option("--health-addr", help="HOST:PORT for /healthz and "
                                                                          "/readyz")] = None,
    identity: Annotated[str | None, typer.Option("--identity", help="this replica's Lease holder identity "
                                                                    "(default: $POD_NAME, else host-pid)")] = None,
    server: Annotated[str | None, typer.Option("--server", help="the API server's URL (default: the pod's "
                                                                "service account, else kubeconfig)")] = None,
    resync: Annotated[float, typer.Option("--resync", help="seconds between full passes")] = 300.0,
) -> None:
    """Run the operator: watch the namespace's custom resources and reconcile them with
    the same engine as `tenantctl run`, while holding the Lease."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    from controller.operator import main as operator_main  # here: other commands start faster
    from controller.operator import options
    opts = options.Options(
        namespace=namespace, lease=lease, identity=identity or options.default_identity(),
        metrics_addr=metrics_addr, health_addr=health_addr, server=server, resync=resync)
    code = asyncio.run(operator_main.run(opts, state_dir=state_dir(), exit_on_loss=True))
    if code:
        raise typer.Exit(code)
