"""The operator's settings (``tenantctl operator`` flags), one dataclass."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from controller.operator import lease as lease_mod


def default_identity() -> str:
    """The Lease holder's identity: the pod's name (``POD_NAME``) or host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Options:
    namespace: str
    """The namespace whose custom resources the operator watches (and of its Lease)."""
    lease: str = "tenantctl-operator"
    """The coordination.k8s.io/v1 Lease that elects the one active replica."""
    identity: str = field(default_factory=default_identity)
    """This replica's ``holderIdentity``."""
    timing: lease_mod.Timing = field(default_factory=lease_mod.Timing)
    """Lease 15 s, renew deadline 10 s, retry 2 s (client-go's defaults)."""
    metrics_addr: str | None = None
    """HOST:PORT of ``/metrics`` (None: not served)."""
    health_addr: str | None = None
    """HOST:PORT of ``/healthz`` and ``/readyz`` (None: not served)."""
    server: str | None = None
    """The API server's URL (tests: a mock); None: in-cluster service account or kubeconfig."""
    resync: float = 300.0
    """Seconds between full passes (expiry dates, drift)."""
    retry: float = 10.0
    """Seconds before a failed deletion (finalizer kept) or pass is tried again."""
    watch_timeout: float = 300.0
    """A watch request is re-opened after this long (bounded: no zombie watches)."""
    exit_timeout: float | None = 600.0
    """kopf's last resort: SIGKILL if it has not stopped this long after a signal."""
