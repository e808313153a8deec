"""A desired-state builder, a fixed clock, and a fake "reconcile" that feeds one
computation's ``Changes`` back as the next ``History``.

Desired states are built as plain dicts, written as YAML to a temporary file and
loaded with ``controller.model.load_desired``: the tests go through the real loader
and validation, as users' documents do.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import yaml

from controller import effective
from controller.effective import History
from controller.model import DesiredState, load_desired
from controller.placement import Recorded

#: The fixed "now" of every test: 2026-06-15 12:00 UTC.
NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()

SUB = "mermoz.example.org"
SUB2 = "latecoere.example.org"

KINDS = {
    "regions": "Region",
    "servers": "Server",
    "plans": "ServicePlan",
    "addons": "AddOnPlan",
    "customers": "Customer",
    "subs": "Subscription",
}


def server_spec(n: int, region: str = "eu-west", **over: Any) -> dict[str, Any]:
    """A server offering everything (PHP 8.2/8.3, fpm/cgi, hard quota, every role)."""
    spec: dict[str, Any] = {
        "region": region,
        "provider": "docker",
        "address": f"127.0.{n}.1",
        "ips": [{"address": f"127.0.{n}.1", "type": "shared"}, {"address": f"127.0.{n}.2", "type": "dedicated"}],
        "roles": ["web", "db-mariadb", "db-postgresql", "dns", "backup"],
        "capacity": {"sites": 100, "diskMB": 100000},
        "offers": {"php": {"versions": ["8.2", "8.3"], "handlers": ["fpm", "cgi"]}, "hardQuota": True},
    }
    spec.update(over)
    return spec


class World:
    """A mutable desired state: edit the dicts, then ``load()`` or ``compute()``.

    Starts with region ``eu-west`` (UTC), server ``eu-west-1``, customers ``mermoz``
    and ``latecoere``, plan ``basic`` and no subscription.
    """

    def __init__(self) -> None:
        self.regions: dict[str, dict[str, Any]] = {"eu-west": {"timezone": "UTC"}}
        self.servers: dict[str, dict[str, Any]] = {"eu-west-1": server_spec(10)}
        self.plans: dict[str, dict[str, Any]] = {
            "basic": {
                "resources": {"diskMB": 1000, "trafficMBPerMonth": 10000, "databases": 1, "mailboxes": 5},
                "hosting": {"php": {"version": "8.2", "handler": "fpm", "settings": {"memory_limit": "128M"}}},
            }
        }
        self.addons: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {
            "mermoz": {"email": "ops@mermoz.example"},
            "latecoere": {"email": "ops@latecoere.example"},
        }
        self.subs: dict[str, dict[str, Any]] = {}

    def sub(self, name: str = SUB, **spec: Any) -> dict[str, Any]:
        """Add a subscription (customer ``mermoz``, plan ``basic``, region ``eu-west``)."""
        body: dict[str, Any] = {"customer": "mermoz", "plan": "basic", "region": "eu-west"}
        body.update(spec)
        self.subs[name] = body
        return body

    def yaml_text(self) -> str:
        docs = [
            {"apiVersion": "tenantctl.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}
            for attr, kind in KINDS.items()
            for name, spec in getattr(self, attr).items()
        ]
        return yaml.safe_dump_all(docs, sort_keys=False)

    def load(self) -> DesiredState:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "desired.yaml"
            path.write_text(self.yaml_text(), encoding="utf-8")
            return load_desired([path])

    def compute(self, history: History = effective.EMPTY, now: dt.datetime = NOW) -> dict[str, effective.Subscription]:
        return effective.compute(self.load(), now, history)

    def item(self, name: str = SUB, history: History = effective.EMPTY, now: dt.datetime = NOW) -> dict[str, Any]:
        return self.compute(history, now)[name].item

    def clone(self) -> World:
        return copy.deepcopy(self)


def advance(hist: History, out: dict[str, effective.Subscription]) -> History:
    """What ``apply`` records after a computation: the next run's ``History``.

    Placements, customers and last effective specs of every item, plus its ``Changes``
    (sticky groups set/dropped, transfer frozen values).
    """
    sticky = {n: dict(groups) for n, groups in hist.sticky.items()}
    transfers = dict(hist.transfers)
    placements = dict(hist.placements)
    last = dict(hist.last_effective)
    customers = dict(hist.customers)
    for name, sub in out.items():
        groups = sticky.setdefault(name, {})
        for g in sub.changes.sticky_drop:
            groups.pop(g, None)
        groups.update(copy.deepcopy(sub.changes.sticky_set))
        if sub.changes.transfer is not None:
            transfers[name] = copy.deepcopy(sub.changes.transfer)
        pl = sub.placement
        placements[name] = Recorded(pl.server, pl.ip, dict(pl.dbServers))
        last[name] = copy.deepcopy(sub.item["effective"])
        customers[name] = sub.item["customer"]
    return dataclasses.replace(
        hist, placements=placements, sticky=sticky, transfers=transfers, last_effective=last,
        customers=customers,
    )


def run(world: World, hist: History = effective.EMPTY, now: dt.datetime = NOW) -> tuple[
    dict[str, effective.Subscription], History
]:
    """One reconcile pass: compute, then record what it asked to record."""
    out = world.compute(hist, now)
    return out, advance(hist, out)


def conflict(item: dict[str, Any], prop: str) -> dict[str, Any] | None:
    return next((c for c in item["conflicts"] if c["property"] == prop), None)


def condition(item: dict[str, Any], type_: str) -> dict[str, str] | None:
    return next((c for c in item["conditions"] if c["type"] == type_), None)

