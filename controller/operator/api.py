"""The operator's own calls to the Kubernetes API, through the official client.

kopf watches and indexes; everything the operator *writes* goes through here: a
Subscription's ``status`` (JSON merge patch of the status subresource), its finalizers,
and the coordination.k8s.io/v1 Lease of leader election. Blocking calls: the async code
runs them in a thread (``asyncio.to_thread``). Errors become ``ApiError`` with the HTTP
status, so that callers can tell a conflict (409) or a missing object (404) apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import kubernetes
from kubernetes.client import exceptions as kexc

GROUP, VERSION = "tenantctl.io", "v1"


class ApiError(Exception):
    """A failed API call: ``status`` is the HTTP status (0 when none was received)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


def configuration(server: str | None = None) -> Any:
    """The client configuration: ``server`` (tests: a mock API server's URL) or the
    pod's service account, else the local kubeconfig."""
    if server is not None:
        cfg = kubernetes.client.Configuration(host=server.rstrip("/"))
        cfg.verify_ssl = False
        return cfg
    cfg = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    return cfg


class Api:
    """The calls of one operator, in one namespace."""

    def __init__(self, namespace: str, config: Any) -> None:
        self.namespace = namespace
        self.client = kubernetes.client.ApiClient(config)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.leases = kubernetes.client.CoordinationV1Api(self.client)
        self.version = kubernetes.client.VersionApi(self.client)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    # --- custom resources -----------------------------------------------------------

    def patch_status(self, plural: str, name: str, body: Mapping[str, Any]) -> None:
        """PATCH (merge) the ``status`` subresource of one object."""
        self._call(self.custom.patch_namespaced_custom_object_status,
                   GROUP, VERSION, self.namespace, plural, name, dict(body))

    def patch(self, plural: str, name: str, body: Mapping[str, Any]) -> None:
        """PATCH (merge) one object (its metadata: finalizers)."""
        self._call(self.custom.patch_namespaced_custom_object, GROUP, VERSION, self.namespace, plural, name,
                   dict(body))

    # --- the Lease --------------------------------------------------------------------

    def get_lease(self, name: str) -> dict[str, Any] | None:
        """The Lease as a JSON object, or None if there is none."""
        try:
            raw = self._call(self.leases.read_namespaced_lease, name, self.namespace,
                             _preload_content=False)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return _json(raw)

    def create_lease(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return _json(self._call(self.leases.create_namespaced_lease, self.namespace, dict(body),
                                _preload_content=False))

    def update_lease(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Write the Lease (a merge patch of the whole object); with
        ``metadata.resourceVersion`` the API server refuses (409) a write over someone
        else's newer one, as an update (PUT) would."""
        return _json(self._call(self.leases.patch_namespaced_lease, name, self.namespace, dict(body),
                                _content_type="application/merge-patch+json", _preload_content=False))

    def ping(self) -> None:
        """GET /version: the API server answers."""
        self._call(self.version.get_code)

    @staticmethod
    def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=10, **kwargs)
        except kexc.ApiException as exc:
            raise ApiError(exc.status or 0, str(exc.reason or exc)) from exc
        except (OSError, kexc.OpenApiException, ValueError) as exc:  # connection refused, TLS, timeouts
            raise ApiError(0, f"{type(exc).__name__}: {exc}") from exc


def _json(raw: Any) -> dict[str, Any]:
    """The body of a raw (not deserialised) response."""
    out: dict[str, Any] = json.loads(raw.data)
    return out
