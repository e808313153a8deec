"""Fencing of the dns driver (issue 10 item 4, DR-1), without servers: the generation a
zone's metadata records (``records.GENERATION``, pure), the digest that makes a moved
subscription's primaries written once, and what the driver sends: a stale view refused
with no write at all, a newer one raising the fence before anything else is written, a
no-op pass reading nothing but the listings. The PowerDNS API is a FAKE client here (it
answers from an in-memory listing and records every call); the real one is exercised by
tests/drivers/test_dns.py (``TestFencing``)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from controller.drivers import base
from controller.drivers.context import Context, Server
from controller.drivers.dns import DnsDriver
from controller.drivers.powerdns import records

SUB = "ex.org"
ZONE = "ex.org."
A = records.DnsServer("drv-a", "eu-west", "127.0.40.1")
C = records.DnsServer("drv-c", "us-east", "127.0.42.1")


@pytest.mark.parametrize(("meta", "gen"), [
    pytest.param({}, 1, id="none-is-1"),
    pytest.param({"ALSO-NOTIFY": ["127.0.42.1:53"]}, 1, id="other-kinds-only"),
    pytest.param({records.GENERATION: ["7"]}, 7, id="recorded"),
])
def test_the_generation_a_zone_records(meta: dict[str, list[str]], gen: int) -> None:
    assert records.generation_of(meta) == gen


@pytest.mark.parametrize("values", [
    pytest.param(["x"], id="text"), pytest.param(["0"], id="zero"), pytest.param(["2", "3"], id="two"),
    pytest.param(["-2"], id="negative"), pytest.param(["\u0663"], id="non-ascii-digit"),
])
def test_a_generation_that_is_not_one_positive_integer_is_never_guessed(values: list[str]) -> None:
    with pytest.raises(ValueError, match=records.GENERATION):
        records.generation_of({records.GENERATION: values})


def placement() -> records.Placement:
    return records.Placement(ZONE, A, (C,), (A.address,))


def test_generation_1_leaves_the_metadata_and_digest_of_zones_never_moved_as_they_were() -> None:
    assert records.primary_metadata(placement()) == records.primary_metadata(placement(), 1) == {
        "ALSO-NOTIFY": ["127.0.42.1:53"], "ALLOW-AXFR-FROM": ["127.0.42.1/32"]}


def test_a_move_s_generation_is_written_first_and_changes_the_digest() -> None:
    meta = records.primary_metadata(placement(), 2)
    assert next(iter(meta)) == records.GENERATION and meta[records.GENERATION] == ["2"]
    assert records.digest({}, meta, False) != records.digest({}, records.primary_metadata(placement()), False)


class FakePowerDNS:
    """FAKE ``api.Client`` of one server: zones and their metadata in memory; every call
    is recorded in ``calls`` (method name and arguments)."""

    def __init__(self, zones: dict[str, dict[str, Any]], metadata: dict[str, dict[str, list[str]]]) -> None:
        self.zones_ = zones
        self.meta = metadata
        self.calls: list[tuple[Any, ...]] = []
        self.sent: dict[str, int] = {}
        self.failures = 0

    def _call(self, *call: Any) -> None:
        self.calls.append(call)

    def zones(self) -> list[dict[str, Any]]:
        self._call("zones")
        return [{k: v for k, v in z.items() if k != "rrsets"} for z in self.zones_.values()]

    def zone(self, name: str) -> dict[str, Any] | None:
        self._call("zone", name)
        return self.zones_.get(name)

    def metadata(self, name: str) -> dict[str, list[str]]:
        self._call("metadata", name)
        return dict(self.meta.get(name, {}))

    def set_metadata(self, name: str, kind: str, values: list[str]) -> None:
        self._call("set_metadata", name, kind, values)
        self.meta.setdefault(name, {})[kind] = values

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._call("create", body["name"])
        self.zones_[body["name"]] = {**body, "serial": 1}
        return self.zones_[body["name"]]

    def update(self, name: str, body: dict[str, Any]) -> None:
        self._call("update", name, body)
        self.zones_[name].update(body)

    def patch(self, name: str, rrsets: list[dict[str, Any]]) -> None:
        self._call("patch", name)
        self.zones_[name]["serial"] += 1

    def delete(self, name: str) -> bool:
        self._call("delete", name)
        return self.zones_.pop(name, None) is not None

    def retrieve(self, name: str) -> None:
        self._call("retrieve", name)

    def export(self, name: str) -> str:
        self._call("export", name)
        return ""

    def close(self) -> None:
        pass

    def writes(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] not in ("zones", "zone", "metadata")]


def dns_slice() -> Any:
    return {"ip": "127.0.40.1", "dns": {"mode": "primary", "primaries": []}, "sites": [],
            "mail": {"enabled": True, "mailingLists": False}, "region": "eu-west", "server": "web-1",
            "manageDNS": False}


def driver(tmp_path: Any, a: FakePowerDNS, c: FakePowerDNS) -> DnsDriver:
    servers = {s.name: Server(s.name, s.region, "docker", s.address, ("dns",), ()) for s in (A, C)}
    drv = DnsDriver(Context(tmp_path, servers))
    drv._clients = {A.name: a, C.name: c}  # type: ignore[dict-item]
    return drv


def zone(kind: str, account: str, serial: int = 10, masters: list[str] | None = None) -> dict[str, Any]:
    return {"name": ZONE, "kind": kind, "masters": masters or [], "serial": serial, "account": account, "rrsets": []}


def test_a_stale_view_is_refused_before_anything_is_written(tmp_path: Any) -> None:
    """The subscription moved to us-east (generation 2): drv-c is its primary and drv-a
    a secondary of it, both stamped. The old region's controller (generation 1) would
    turn them back: it reads both zones' metadata and writes nothing."""
    a = FakePowerDNS({ZONE: zone("Slave", records.account(SUB), masters=[C.address])},
                     {ZONE: {records.GENERATION: ["2"]}})
    c = FakePowerDNS({ZONE: zone("Master", records.account(SUB, 10, "0" * 12))}, {ZONE: {records.GENERATION: ["2"]}})
    drv = driver(tmp_path, a, c)
    drv.use_generations({SUB: 1})
    [res] = drv.apply(None, [base.Change(SUB, "ensure", dns_slice())])
    assert res.outcome == "failed" and res.permanent, res
    assert res.message.startswith(f"PowerDNS zone {ZONE} on drv-a, {ZONE} on drv-c: fenced: ex.org is at "
                                  "generation 2 on this server, the job carries generation 1"), res.message
    assert a.writes() == [] and c.writes() == []
    assert ("metadata", ZONE) in a.calls and ("metadata", ZONE) in c.calls


def test_a_newer_view_raises_the_fence_before_writing_the_zone(tmp_path: Any) -> None:
    """Generation 3 against a primary stamped 2: its fence is raised first, then the
    zone is written; the secondary, already one of drv-a, is not read."""
    a = FakePowerDNS({ZONE: zone("Master", records.account(SUB, 10, "0" * 12))}, {ZONE: {records.GENERATION: ["2"]}})
    c = FakePowerDNS({ZONE: zone("Slave", records.account(SUB), masters=[A.address])}, {})
    drv = driver(tmp_path, a, c)
    drv.use_generations({SUB: 3})
    [res] = drv.apply(None, [base.Change(SUB, "ensure", dns_slice())])
    assert res.outcome == "provisioned", res
    assert a.writes()[0] == ("set_metadata", ZONE, records.GENERATION, ["3"])
    assert ("patch", ZONE) in a.writes()
    assert ("metadata", ZONE) not in c.calls and c.writes() == [("retrieve", ZONE)]  # transfer the change


def test_a_secondary_made_one_carries_the_generation(tmp_path: Any) -> None:
    a = FakePowerDNS({}, {})
    c = FakePowerDNS({ZONE: zone("Master", records.account(SUB, 10, "0" * 12))}, {})  # the old primary
    drv = driver(tmp_path, a, c)
    drv.use_generations({SUB: 2})
    [res] = drv.apply(None, [base.Change(SUB, "ensure", dns_slice())])
    assert res.outcome == "provisioned", res
    assert ("set_metadata", ZONE, records.GENERATION, ["2"]) in a.writes()  # created, then stamped
    c_writes = c.writes()
    assert c_writes[0] == ("set_metadata", ZONE, records.GENERATION, ["2"])
    assert c_writes[1] == ("update", ZONE, {"kind": "Slave", "masters": [A.address]})


def test_a_zone_the_listing_proves_current_is_not_read(tmp_path: Any) -> None:
    a = FakePowerDNS({}, {})
    c = FakePowerDNS({}, {})
    drv = driver(tmp_path, a, c)
    drv.use_generations({SUB: 2})
    change = base.Change(SUB, "ensure", dns_slice())
    assert drv.apply(None, [change])[0].outcome == "provisioned"
    a.calls.clear()
    c.calls.clear()
    [res] = drv.apply(None, [change])
    assert res.message == base.UP_TO_DATE, res
    assert a.calls == [("zones",)] and c.calls == [("zones",)]


def test_a_stale_deletion_removes_nothing(tmp_path: Any) -> None:
    a = FakePowerDNS({ZONE: zone("Master", records.account(SUB, 10, "0" * 12))}, {ZONE: {records.GENERATION: ["4"]}})
    c = FakePowerDNS({ZONE: zone("Slave", records.account(SUB), masters=[A.address])}, {})
    drv = driver(tmp_path, a, c)
    drv.use_generations({SUB: 3})
    [res] = drv.apply(None, [base.Change(SUB, "delete", cast(Any, {"name": SUB}))])
    assert res.outcome == "failed" and res.permanent and "is at generation 4" in res.message, res
    assert a.writes() == [] and c.writes() == [] and ("export", ZONE) not in a.calls
    assert not (tmp_path / "retained").exists()


def test_an_unreadable_fence_refuses_the_change(tmp_path: Any) -> None:
    a = FakePowerDNS({ZONE: zone("Master", records.account(SUB, 10, "0" * 12))}, {ZONE: {records.GENERATION: ["x"]}})
    c = FakePowerDNS({}, {})
    drv = driver(tmp_path, a, c)
    [res] = drv.apply(None, [base.Change(SUB, "ensure", dns_slice())])
    assert res.outcome == "failed" and "X-TENANTCTL-GENERATION" in res.message, res
    assert a.writes() == [] and c.writes() == []

