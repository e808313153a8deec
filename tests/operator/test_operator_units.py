"""Pure parts of the operator: the Lease rules (against a fake Lease API, a fake clock),
the fan-out of an event to subscriptions, the desired state through the loader."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from operator_harness import example_resources

from controller import errors
from controller.operator import api as api_mod
from controller.operator import desired, index, lease

TIMING = lease.Timing(duration=15.0, renew_deadline=10.0, retry=2.0)


class FakeLeaseApi:
    """The Lease endpoints of an API server, in memory, with resourceVersion checks
    (a fake: the kmock tests use the mock server)."""

    namespace = "tenantctl"

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False
        #: called once before the next update (another replica writes in between)
        self.race: Callable[[], None] | None = None

    def _check(self) -> None:
        if self.down:
            raise api_mod.ApiError(0, "connection refused")

    def get_lease(self, name: str) -> dict[str, Any] | None:
        self._check()
        return copy.deepcopy(self.lease)

    def create_lease(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        if self.lease is not None:
            raise api_mod.ApiError(409, "exists")
        return self._store(body)

    def update_lease(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._check()
        assert self.lease is not None
        if self.race is not None:
            race, self.race = self.race, None
            race()
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise api_mod.ApiError(409, "conflict")
        return self._store(body)

    def _store(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(dict(body))
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Mono:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(fake: FakeLeaseApi, who: str, mono: Mono) -> lease.Elector:
    return lease.Elector(fake, "tenantctl-operator", who, TIMING,  # type: ignore[arg-type]
                         wall=lambda: dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC), mono=mono)


def test_the_standby_waits_for_a_full_lease_duration_of_an_unchanged_record() -> None:
    fake, mono = FakeLeaseApi(), Mono()
    a, b = elector(fake, "a", mono), elector(fake, "b", mono)
    assert a.try_acquire_or_renew() and a.leading
    assert fake.lease is not None and fake.lease["spec"]["holderIdentity"] == "a"
    assert fake.lease["spec"]["leaseDurationSeconds"] == 15
    assert not b.try_acquire_or_renew()
    for _ in range(10):  # a renews every retry period: b never takes over
        mono.t += TIMING.retry
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    mono.t += TIMING.duration - 0.1  # a died: the record stays the same
    assert not b.try_acquire_or_renew()
    mono.t += 0.2
    assert b.try_acquire_or_renew() and b.leading
    assert fake.lease["spec"]["holderIdentity"] == "b" and fake.lease["spec"]["leaseTransitions"] == 1


def test_the_holder_stops_leading_after_the_renew_deadline() -> None:
    fake, mono = FakeLeaseApi(), Mono()
    a = elector(fake, "a", mono)
    assert a.try_acquire_or_renew()
    fake.down = True
    mono.t += TIMING.renew_deadline - 0.5
    assert not a.try_acquire_or_renew() and a.leading and not a.api_ok
    mono.t += 1.0
    assert not a.leading  # before any standby may take over (renew deadline < duration)


def test_a_released_lease_is_taken_at_once() -> None:
    fake, mono = FakeLeaseApi(), Mono()
    a, b = elector(fake, "a", mono), elector(fake, "b", mono)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert fake.lease is not None and fake.lease["spec"]["holderIdentity"] == ""
    assert not a.leading
    assert b.try_acquire_or_renew()
    assert fake.lease["spec"]["holderIdentity"] == "b"


def test_a_takeover_over_a_newer_record_loses() -> None:
    fake, mono = FakeLeaseApi(), Mono()
    a, b, c = elector(fake, "a", mono), elector(fake, "b", mono), elector(fake, "c", mono)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    mono.t += TIMING.duration + 1  # a died; both standbys see it expired
    fake.race = lambda: None if b.try_acquire_or_renew() else pytest.fail("b could not take over")
    assert not c.try_acquire_or_renew()  # b wrote between c's read and c's write: 409
    assert fake.lease is not None and fake.lease["spec"]["holderIdentity"] == "b"
    assert not c.leading


@pytest.mark.parametrize(("kind", "name", "expected"), [
    pytest.param("Subscription", "x.example", {"x.example"}, id="a subscription: itself"),
    pytest.param("ServicePlan", "starter", {"a.example", "b.example"}, id="a plan: its subscriptions"),
    pytest.param("ServicePlan", "unused", set(), id="an unused plan: none"),
    pytest.param("AddOnPlan", "php-boost", {"b.example"}, id="an add-on: its subscriptions"),
    pytest.param("Customer", "acme", {"a.example"}, id="a customer: its subscriptions"),
    pytest.param("Server", "web-1", None, id="a server: all"),
    pytest.param("Region", "eu-west", None, id="a region: all"),
])
def test_an_event_concerns(kind: str, name: str, expected: set[str] | None) -> None:
    fan: dict[str, dict[str, list[str]]] = {index.BY_PLAN: {}, index.BY_ADDON: {}, index.BY_CUSTOMER: {}}
    for sub, spec in {"a.example": {"plan": "starter", "customer": "acme"},
                      "b.example": {"plan": "starter", "addons": ["php-boost"], "customer": "zeta"}}.items():
        for idx, entries in index.fan_out_entries(spec, sub).items():
            for key, value in entries.items():
                fan[idx].setdefault(key, []).append(value)
    assert index.affected(kind, name, fan) == expected


def test_the_desired_state_of_the_examples_leaves_out_deleting_subscriptions(tmp_path: Path) -> None:
    objs = example_resources()
    subs = sorted(o["metadata"]["name"] for o in objs if o["kind"] == "Subscription")
    gone = next(o for o in objs if o["kind"] == "Subscription")
    gone["metadata"]["deletionTimestamp"] = "2026-11-22T12:00:00Z"
    gone["status"] = {"observedGeneration": 1}
    ds = desired.load(objs, tmp_path)
    assert sorted(ds.subscriptions) == sorted(set(subs) - {gone["metadata"]["name"]})
    assert len(ds.plans) == len([o for o in objs if o["kind"] == "ServicePlan"])


def test_an_invalid_object_is_reported_like_validate_reports_a_dump(tmp_path: Path) -> None:
    objs = example_resources()
    sub = next(o for o in objs if o["kind"] == "Subscription")
    sub["spec"]["plan"] = "no-such-plan"
    with pytest.raises(errors.InputError) as exc:
        desired.load(objs, tmp_path)
    assert "no-such-plan" in str(exc.value)
    assert str(tmp_path / "desired.yaml") in str(exc.value)


def test_only_annotated_deletions_of_every_gone_subscription_confirm() -> None:
    def sub(deleting: bool, confirmed: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"annotations": {index.CONFIRM_DELETION: "true"} if confirmed else {}}
        if deleting:
            meta["deletionTimestamp"] = "2026-11-30T00:00:00Z"
        return {"metadata": meta}

    live = ["a", "b", "c"]
    assert index.mass_deletion_confirmed({"a": sub(True, True), "b": sub(True, True), "c": sub(False, False)}, live)
    assert not index.mass_deletion_confirmed({"a": sub(True, True), "b": sub(True, False), "c": sub(False, False)},
                                             live)
    assert not index.mass_deletion_confirmed({"a": sub(True, True), "c": sub(False, False)}, live)  # b vanished
    assert not index.mass_deletion_confirmed({n: sub(False, True) for n in live}, live)  # nothing to delete
