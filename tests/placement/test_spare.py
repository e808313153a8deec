"""Spare servers (DR-1): configured like any other, but nothing is placed on them."""

from __future__ import annotations

from effective.builder import server_spec

from controller.placement import Recorded, place_all
from placement.builder import desired, needs


def test_a_spare_is_never_chosen_even_when_it_is_the_emptier_server() -> None:
    ds = desired({"web-1": server_spec(10, capacity={"sites": 1, "diskMB": 1000}), "spare-1": server_spec(11, spare=True)})
    out = place_all(ds, [needs("a.example.org"), needs("b.example.org")], {})
    assert out["a.example.org"].server == "web-1"
    assert out["b.example.org"].server is None  # web-1 full; the spare stays empty
    assert [c.property for c in out["b.example.org"].conflicts] == ["server"]


def test_a_region_with_only_a_spare_places_nothing() -> None:
    ds = desired({"spare-1": server_spec(11, spare=True)})
    pl = place_all(ds, [needs("a.example.org", databases=(("shop", "mariadb"),))], {})["a.example.org"]
    assert pl.server is None
    assert pl.dbServers == {"shop": None}
    assert {c.property for c in pl.conflicts} == {"server", "databases.shop.engine"}


def test_databases_never_go_to_a_spare_of_the_region() -> None:
    ds = desired({"web-1": server_spec(10, roles=["web"]), "spare-1": server_spec(11, spare=True)})
    pl = place_all(ds, [needs("a.example.org", databases=(("shop", "mariadb"),))], {})["a.example.org"]
    assert pl.server == "web-1"
    assert pl.dbServers == {"shop": None}
    assert [c.property for c in pl.conflicts] == ["databases.shop.engine"]


def test_pinned_to_a_spare_is_a_clear_conflict_and_not_placed() -> None:
    ds = desired({"web-1": server_spec(10), "spare-1": server_spec(11, spare=True)})
    pl = place_all(ds, [needs("a.example.org", server="spare-1")], {})["a.example.org"]
    assert pl.server is None
    assert len(pl.conflicts) == 1
    c = pl.conflicts[0]
    assert (c.property, c.availableValue) == ("server", None)
    assert "spare-1 is a spare server" in c.planValue


def test_an_address_of_a_spare_does_not_place_on_it() -> None:
    ds = desired({"web-1": server_spec(10), "spare-1": server_spec(11, spare=True)})
    pl = place_all(ds, [needs("a.example.org", ip="127.0.11.1")], {})["a.example.org"]
    assert pl.server == "web-1"
    assert [c.property for c in pl.conflicts] == ["ip"]


def test_recorded_on_a_server_that_became_spare_stays_with_a_conflict() -> None:
    ds = desired({"web-1": server_spec(10), "spare-1": server_spec(11, spare=True)})
    rec = {"a.example.org": Recorded("spare-1", "127.0.11.1", {"shop": "spare-1"})}
    pl = place_all(ds, [needs("a.example.org", databases=(("shop", "mariadb"),))], rec)["a.example.org"]
    assert pl.server == "spare-1"  # never moved implicitly
    assert pl.dbServers == {"shop": "spare-1"}
    assert any("spare server" in str(c.planValue) for c in pl.conflicts)


def test_without_spare_the_same_servers_place_as_before() -> None:
    ds = desired({"web-1": server_spec(10), "web-2": server_spec(11)})
    out = place_all(ds, [needs("a.example.org"), needs("b.example.org")], {})
    assert {out["a.example.org"].server, out["b.example.org"].server} == {"web-1", "web-2"}
