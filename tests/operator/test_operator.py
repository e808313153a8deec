"""The operator against kmock, a MOCK Kubernetes API server (in-memory emulator): the
engine pass of ``tenantctl run`` for the affected subscriptions, status written once
per change (PATCHes counted), plan fan-out through the index, the finalizer (LIFE-6)."""

from __future__ import annotations

import copy
from typing import Any

import kmock as kmock_lib
import pytest
from operator_harness import NS, Fakes, example_resources, gone, has_finalizer, patches, res, seed, settled, until

from controller.operator import index

pytestmark = pytest.mark.asyncio

SUB = "mermoz.example.org"


def split(objs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    subs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Subscription"}
    return [o for o in objs if o["kind"] != "Subscription"], subs


def obj(api: kmock_lib.KubernetesEmulator, kind: str, name: str) -> Any:
    return api.objects[res(kind), NS, name]


async def post(api: kmock_lib.KubernetesEmulator, body: dict[str, Any]) -> None:
    plural = index.PLURALS[body["kind"]]
    async with api.post(f"/apis/tenantctl.io/v1/namespaces/{NS}/{plural}", json=body) as resp:
        assert resp.status < 300, await resp.text()


async def patch(api: kmock_lib.KubernetesEmulator, kind: str, name: str, body: dict[str, Any]) -> None:
    plural = index.PLURALS[kind]
    async with api.patch(f"/apis/tenantctl.io/v1/namespaces/{NS}/{plural}/{name}", json=body,
                         headers={"Content-Type": "application/merge-patch+json"}) as resp:
        assert resp.status < 300, await resp.text()


async def test_a_created_subscription_is_reconciled_and_its_status_patched_once(
        api: kmock_lib.KubernetesEmulator, replicas: Any, fakes: Fakes) -> None:
    others, subs = split(example_resources())
    seed(api, others)
    r = replicas()
    await until(lambda: r.passes, what="the first pass")
    before = len(list(api))
    await post(api, subs[SUB])
    await until(lambda: any(p.keys == {SUB} for p in r.passes), what="a pass for the new subscription")
    await until(lambda: has_finalizer(api, SUB), what="the finalizer")
    passed = next(p for p in r.passes if p.keys == {SUB})
    assert SUB in passed.subscriptions
    item = passed.items[SUB]  # what the engine planned from the resources
    assert (item["customer"], item["plan"], item["addons"]) == ("mermoz-club", "business", ["php-boost"])
    assert fakes.drivers["web"].names() == [SUB]
    await until(lambda: len(patches(api, before, name=SUB)) >= 1, what="the status PATCH")
    status = obj(api, "Subscription", SUB)["status"]
    assert status["observedGeneration"] == 1
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready["WebReady"] == "True"
    # Settled: the finalizer's MODIFIED event passed again, and wrote nothing new.
    r.enqueue_all()
    n = len(r.passes)
    await until(lambda: len(r.passes) > n, what="a full re-run")
    assert len(patches(api, before, name=SUB)) == 1


async def test_an_unchanged_re_run_patches_nothing(api: kmock_lib.KubernetesEmulator, replicas: Any) -> None:
    seed(api, example_resources())
    r = replicas()
    await until(lambda: r.passes, what="the first pass")
    subs = [o["metadata"]["name"] for o in example_resources() if o["kind"] == "Subscription"]
    await settled(api, r, subs)
    assert {p.name for p in patches(api)} == set(subs)  # each status written once
    assert len(patches(api)) == len(subs)
    marker = len(list(api))
    n = len(r.passes)
    r.enqueue_all()
    await until(lambda: len(r.passes) > n, what="a full re-run")
    assert r.passes[-1].keys is None
    assert patches(api, marker) == []
    assert patches(api, marker, subresource=None) == []


async def test_a_plan_edit_re_runs_exactly_the_subscriptions_of_that_plan(
        api: kmock_lib.KubernetesEmulator, replicas: Any, fakes: Fakes) -> None:
    objs = example_resources()
    seed(api, objs)
    r = replicas()
    on_starter = sorted(o["metadata"]["name"] for o in objs
                        if o["kind"] == "Subscription" and o["spec"].get("plan") == "starter")
    assert len(on_starter) >= 2
    await settled(api, r, [o["metadata"]["name"] for o in objs if o["kind"] == "Subscription"])
    n = len(r.passes)
    calls = {c: len(d.calls) for c, d in fakes.drivers.items()}
    plan = copy.deepcopy(obj(api, "ServicePlan", "starter"))
    await patch(api, "ServicePlan", "starter", {"spec": {"hosting": {"php": {"settings": {"memory_limit": "192M"}}}},
                                                       "metadata": {"generation": 2}})
    assert plan != obj(api, "ServicePlan", "starter")
    await until(lambda: any(p.keys is not None and set(on_starter) <= p.keys for p in r.passes[n:]),
                what="the plan's fan-out")
    fanned = [p for p in r.passes[n:] if p.keys]
    assert set().union(*(p.keys for p in fanned)) == set(on_starter)
    touched = {name for c, d in fakes.drivers.items() for _, names in d.calls[calls[c]:] for name in names}
    assert touched and touched <= set(on_starter)  # the drivers saw only the plan's subscriptions


async def test_deletion_keeps_the_finalizer_until_the_engine_deleted(
        api: kmock_lib.KubernetesEmulator, replicas: Any, fakes: Fakes) -> None:
    seed(api, example_resources())
    r = replicas(retry=0.3)
    await until(lambda: has_finalizer(api, SUB), what="the finalizer")
    await until(lambda: SUB in fakes.drivers["web"].names(), what="the first ensure")
    fakes.drivers["backup"].fail[SUB] = "repository unreachable"  # LIFE-6: the final backup fails
    async with api.delete(f"/apis/tenantctl.io/v1/namespaces/{NS}/subscriptions/{SUB}") as resp:
        assert resp.status < 300
    await until(lambda: len(fakes.drivers["backup"].names("delete")) >= 2, what="two deletion attempts")
    assert obj(api, "Subscription", SUB)["metadata"]["deletionTimestamp"]
    assert index.FINALIZER in obj(api, "Subscription", SUB)["metadata"]["finalizers"]
    assert fakes.drivers["web"].names("delete") == []  # nothing removed before the final backup
    del fakes.drivers["backup"].fail[SUB]
    await until(lambda: gone(api, "Subscription", SUB), what="the object gone")
    assert SUB in fakes.drivers["web"].names("delete")
    # the pass that lifted the finalizer is recorded once it is through
    finalized = await until(lambda: [p for p in r.passes if SUB in p.finalized], what="the finalizing pass")
    assert len(finalized) == 1 and SUB not in finalized[0].subscriptions


async def test_a_spec_edit_writes_the_new_observed_generation_once(
        api: kmock_lib.KubernetesEmulator, replicas: Any) -> None:
    objs = example_resources()
    seed(api, objs)
    r = replicas()
    await settled(api, r, [o["metadata"]["name"] for o in objs if o["kind"] == "Subscription"])
    marker = len(list(api))
    before = copy.deepcopy(obj(api, "Subscription", SUB)["status"])
    # the mock keeps metadata as sent: the test bumps the generation as an API server would
    await patch(api, "Subscription", SUB, {"spec": {"addons": []}, "metadata": {"generation": 2}})
    await until(lambda: obj(api, "Subscription", SUB).get("status", {}).get("observedGeneration") == 2,
                what="observedGeneration 2")
    await settled(api, r, [SUB])
    assert len(patches(api, marker, name=SUB)) == 1
    assert {p.name for p in patches(api, marker)} == {SUB}
    status = obj(api, "Subscription", SUB)["status"]
    assert status["effective"] != before["effective"]  # php-boost's values are gone
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])


async def test_a_held_mass_deletion_goes_ahead_once_each_deleted_subscription_is_confirmed(
        api: kmock_lib.KubernetesEmulator, replicas: Any, fakes: Fakes) -> None:
    """Twelve examples: more than one deletion in a pass is held (guard: 10 %). Two
    Subscriptions deleted while no replica runs are held, finalizers kept, nothing
    removed; annotating one is not enough; annotating both lets them go."""
    seed(api, example_resources())
    first = replicas("replica-a")
    doomed = ["mermoz.example.org", "shop.example.com"]
    await until(lambda: all(has_finalizer(api, n) for n in doomed), what="the finalizers")
    await until(lambda: set(doomed) <= set(fakes.drivers["web"].names()), what="the first ensure")
    first.control.stop()
    await first.join()
    for name in doomed:
        async with api.delete(f"/apis/tenantctl.io/v1/namespaces/{NS}/subscriptions/{name}") as resp:
            assert resp.status < 300
    r = replicas("replica-b", retry=0.3)
    await until(lambda: len(r.passes) >= 2, what="two passes")
    assert all(has_finalizer(api, n) for n in doomed)  # held: nothing deleted
    assert not set(doomed) & set(fakes.drivers["web"].names("delete"))
    await patch(api, "Subscription", doomed[0],
                {"metadata": {"annotations": {index.CONFIRM_DELETION: "true"}}})
    passes = len(r.passes)
    await until(lambda: len(r.passes) >= passes + 2, what="two more passes")
    assert all(has_finalizer(api, n) for n in doomed), "one confirmation of two is not enough"
    await patch(api, "Subscription", doomed[1],
                {"metadata": {"annotations": {index.CONFIRM_DELETION: "true"}}})
    await until(lambda: all(gone(api, "Subscription", n) for n in doomed), what="both objects gone")
    assert set(doomed) <= set(fakes.drivers["web"].names("delete"))

