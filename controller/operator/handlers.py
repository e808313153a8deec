"""The kopf side: index handlers, event handlers, login and settings. No logic here.

Every handler is level-triggered glue: index handlers keep ``controller.operator.index``'s
indexes, event handlers put the subscriptions an event concerns on the reconciler's
queue (``index.affected``) and make sure a live Subscription carries the finalizer.
Only raw-event and index handlers are used, so kopf writes nothing to the objects
(no progress annotations, no finalizer of its own).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from controller.operator import api as api_mod
from controller.operator import index, worker

log = logging.getLogger("tenantctl.operator")


def settings(*, watch_timeout: float = 300.0, exit_timeout: float | None = 600.0) -> kopf.OperatorSettings:
    """kopf's settings for the operator: bounded watches (a silent watch stream is
    re-opened: kopf's zombie-watch issue), no k8s Events from log lines, no scanning
    (namespaced RBAC), no peering (the Lease elects the one active replica)."""
    s = kopf.OperatorSettings()
    s.watching.server_timeout = watch_timeout
    s.watching.client_timeout = watch_timeout + 30.0
    s.watching.connect_timeout = 10.0
    s.watching.inactivity_timeout = watch_timeout + 60.0
    s.posting.enabled = False
    s.scanning.disabled = True
    s.peering.standalone = True
    s.process.ultimate_exiting_timeout = exit_timeout
    return s


def registry(rec: worker.Reconciler, *, server: str | None = None) -> kopf.OperatorRegistry:
    """The handlers of one operator, bound to its reconciler (a registry of its own:
    two operators in one process do not share handlers)."""
    reg = kopf.OperatorRegistry()

    @kopf.on.login(registry=reg)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if server is not None:
            return kopf.ConnectionInfo(server=server, insecure=True)
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    for kind, plural in index.PLURALS.items():
        _register_kind(reg, rec, kind, plural)
    return reg


def _register_kind(reg: kopf.OperatorRegistry, rec: worker.Reconciler, kind: str, plural: str) -> None:
    group, version = api_mod.GROUP, api_mod.VERSION

    def objects(name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
        return index.object_entry(name, body)

    kopf.index(group, version, plural, id=index.OBJECTS[kind], registry=reg)(objects)

    if kind == "Subscription":
        for fan_out in (index.BY_PLAN, index.BY_ADDON, index.BY_CUSTOMER):
            def entries(name: str, spec: kopf.Spec, _which: str = fan_out, **_: Any) -> dict[str, str]:
                return index.fan_out_entries(spec, name)[_which]

            kopf.index(group, version, plural, id=fan_out, registry=reg)(entries)

    async def on_event(type: str | None, name: str, body: kopf.Body, **kwargs: Any) -> None:
        if rec.indices is None:
            rec.indices = {n: kwargs[n] for n in [*index.OBJECTS.values(), *index.FAN_OUT.values()]}
        if kind == "Subscription":
            if type == "DELETED":
                rec.written.pop(name, None)
            elif not index.deleting(body) and not index.has_finalizer(body):
                finalizers = [*((body.get("metadata") or {}).get("finalizers") or []), index.FINALIZER]
                try:
                    await asyncio.to_thread(rec.api.patch, plural, name, {"metadata": {"finalizers": finalizers}})
                except api_mod.ApiError as exc:  # the next event or resync tries again
                    log.warning("adding the finalizer to %s: %s", name, exc)
        fan = {n: rec.indices[n] for n in index.FAN_OUT.values()}
        rec.enqueue(index.affected(kind, name, fan))

    kopf.on.event(group, version, plural, id=f"enqueue_{plural}", registry=reg)(on_event)
