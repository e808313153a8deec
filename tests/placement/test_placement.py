"""Placement on servers and the SYNC-3 conflicts it reports (PHP-4, RES-3, HOST-1)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from effective.builder import server_spec

from controller.placement import Conflict, Recorded, place_all
from placement.builder import desired, needs


def _conflicts(pl: Any) -> dict[str, Conflict]:
    return {c.property: c for c in pl.conflicts}


# --- HOST-1: mail-only subscriptions -------------------------------------------------


def test_HOST_1_mail_only_places_on_a_server_without_web_role() -> None:
    ds = desired({"mx-1": server_spec(10, roles=["dns"], offers={})})
    out = place_all(ds, [needs("a.example.org", web=False)], {})
    assert out["a.example.org"].server == "mx-1"
    assert out["a.example.org"].conflicts == ()


def test_HOST_1_web_subscription_needs_a_web_role() -> None:
    ds = desired({"mx-1": server_spec(10, roles=["dns"])})
    pl = place_all(ds, [needs("a.example.org")], {})["a.example.org"]
    assert pl.server is None
    assert "server" in _conflicts(pl)


def test_HOST_1_mail_only_has_no_php_conflicts() -> None:
    ds = desired({"mx-1": server_spec(10, roles=["dns"], offers={"hardQuota": True})})
    pl = place_all(ds, [needs("a.example.org", web=False, php_version="5.6", php_handler="module")], {})
    assert pl["a.example.org"].conflicts == ()
    assert pl["a.example.org"].available == {}


# --- PHP-4 / RES-3: what the server offers ------------------------------------------


@pytest.mark.parametrize(
    ("offers", "need", "prop", "available"),
    [
        pytest.param({"php": {"versions": ["8.1", "8.3", "7.4"], "handlers": ["fpm"]}}, {"php_version": "8.2"},
                     "hosting.php.version", "8.3", id="PHP-4-version-newest-available"),
        pytest.param({"php": {"versions": [], "handlers": ["fpm"]}}, {"php_version": "8.2"},
                     "hosting.php.version", None, id="PHP-4-no-php-at-all"),
        pytest.param({"php": {"versions": ["8.2"], "handlers": ["module", "cgi"]}}, {"php_handler": "fpm"},
                     "hosting.php.handler", "cgi", id="PHP-4-handler-preference-cgi-before-module"),
        pytest.param({"php": {"versions": ["8.2"], "handlers": ["module"]}}, {"php_handler": "fpm"},
                     "hosting.php.handler", "module", id="PHP-4-handler-module"),
        pytest.param({"php": {"versions": ["8.2"], "handlers": ["fpm"]}, "hardQuota": False}, {"hard_quota": True},
                     "hosting.hardQuota", False, id="RES-3-hard-quota-unsupported"),
    ],
)
def test_SYNC_3_offer_conflicts(offers: dict[str, Any], need: dict[str, Any], prop: str, available: Any) -> None:
    ds = desired({"s1": server_spec(10, offers=offers)})
    pl = place_all(ds, [needs("a.example.org", **need)], {})["a.example.org"]
    assert pl.server == "s1"
    c = _conflicts(pl)[prop]
    assert c.availableValue == available
    assert pl.available[prop] == available
    assert c.as_dict() == {"property": prop, "planValue": c.planValue, "availableValue": available}


def test_SYNC_3_no_conflict_when_offered() -> None:
    ds = desired({"s1": server_spec(10)})
    pl = place_all(ds, [needs("a.example.org", hard_quota=True, php_version="8.3", php_handler="cgi")], {})
    assert pl["a.example.org"].conflicts == ()


# --- choosing a server ---------------------------------------------------------------


def test_SYNC_3_prefers_the_server_without_conflicts() -> None:
    ds = desired({"a-old": server_spec(10, offers={"php": {"versions": ["7.4"], "handlers": ["fpm"]}}),
                  "b-new": server_spec(11)})
    assert place_all(ds, [needs("x.example.org")], {})["x.example.org"].server == "b-new"


def test_SYNC_3_spreads_by_load_then_name() -> None:
    ds = desired({"s1": server_spec(10), "s2": server_spec(11)})
    out = place_all(ds, [needs(f"n{i}.example.org") for i in range(4)], {})
    assert [out[f"n{i}.example.org"].server for i in range(4)] == ["s1", "s2", "s1", "s2"]


def test_SYNC_3_stays_in_its_region() -> None:
    ds = desired({"us-1": server_spec(10, region="us-east")})
    pl = place_all(ds, [needs("x.example.org")], {})["x.example.org"]
    assert pl.server is None
    assert _conflicts(pl)["server"].planValue == "a server in eu-west with free capacity"


def test_SYNC_3_server_full() -> None:
    ds = desired({"s1": server_spec(10, capacity={"sites": 2})})
    out = place_all(ds, [needs(f"n{i}.example.org") for i in range(3)], {})
    assert [out[f"n{i}.example.org"].server for i in range(3)] == ["s1", "s1", None]
    assert "server" in _conflicts(out["n2.example.org"])


def test_SYNC_3_recorded_subscriptions_take_capacity_first() -> None:
    ds = desired({"s1": server_spec(10, capacity={"sites": 1})})
    out = place_all(ds, [needs("a.example.org"), needs("z.example.org")], {"z.example.org": Recorded("s1", None)})
    assert out["z.example.org"].server == "s1"
    assert out["a.example.org"].server is None


def test_SYNC_3_unchanged_subscriptions_count_toward_capacity() -> None:
    ds = desired({"s1": server_spec(10, capacity={"sites": 1}), "s2": server_spec(11)})
    out = place_all(ds, [needs("a.example.org")], {"z.example.org": Recorded("s1", "127.0.10.1")},
                    unchanged={"z.example.org": "mermoz"})
    assert out["a.example.org"].server == "s2"


# --- a placed subscription never moves implicitly ---------------------------------


def test_SYNC_3_recorded_server_is_kept_even_if_another_is_better() -> None:
    ds = desired({"a-full": server_spec(10, capacity={"sites": 0}, offers={}), "b-free": server_spec(11)})
    pl = place_all(ds, [needs("x.example.org")], {"x.example.org": Recorded("a-full", "127.0.10.1")})
    assert pl["x.example.org"].server == "a-full"
    assert pl["x.example.org"].ip == "127.0.10.1"
    assert "hosting.php.version" in _conflicts(pl["x.example.org"])


def test_SYNC_3_spec_server_of_a_placed_subscription_is_a_pending_move() -> None:
    """Issue 13: it stays where its files and databases are, and says what to run."""
    ds = desired({"s1": server_spec(10), "s2": server_spec(11)})
    rec = {"x.example.org": Recorded("s1", "127.0.10.1", {"shop": "s1"})}
    pl = place_all(ds, [needs("x.example.org", server="s2", databases=(("shop", "mariadb"),))], rec)["x.example.org"]
    assert (pl.server, pl.ip, pl.dbServers) == ("s1", "127.0.10.1", {"shop": "s1"})
    assert Conflict("server", "s2: a pending move (run `tenantctl move x.example.org --to s2`)", None) in pl.conflicts


def test_SYNC_3_a_move_in_progress_places_it_and_its_databases_on_the_target() -> None:
    ds = desired({"s1": server_spec(10), "s2": server_spec(11)})
    rec = {"x.example.org": Recorded("s1", "127.0.10.1", {"shop": "s1"})}
    pl = place_all(ds, [needs("x.example.org", server="s2", moving=True, databases=(("shop", "mariadb"),))],
                   rec)["x.example.org"]
    assert (pl.server, pl.ip, pl.dbServers) == ("s2", "127.0.11.1", {"shop": "s2"})
    assert pl.conflicts == ()


def test_SYNC_3_spec_server_places_a_new_subscription() -> None:
    ds = desired({"s1": server_spec(10), "s2": server_spec(11)})
    pl = place_all(ds, [needs("x.example.org", server="s2")], {})["x.example.org"]
    assert (pl.server, pl.ip, pl.conflicts) == ("s2", "127.0.11.1", ())


def test_SYNC_3_recorded_server_gone() -> None:
    ds = desired({"s2": server_spec(11)})
    pl = place_all(ds, [needs("x.example.org")], {"x.example.org": Recorded("s1", "127.0.10.1")})["x.example.org"]
    assert pl.server is None and pl.ip is None
    assert _conflicts(pl)["server"] == Conflict("server", "s1", None)


def test_SYNC_3_placement_does_not_depend_on_input_order() -> None:
    ds = desired({"s1": server_spec(10, capacity={"sites": 2}), "s2": server_spec(11, capacity={"sites": 1})})
    all_needs = [needs(f"n{i}.example.org", ip_type=t, customer=c)
                 for i, (t, c) in enumerate(itertools.product(["shared", "dedicated"], ["mermoz", "latecoere"]))]
    first = place_all(ds, all_needs, {})
    for perm in itertools.permutations(all_needs):
        assert place_all(ds, perm, {}) == first


# --- IP addresses -----------------------------------------------------------------


def test_SYNC_3_dedicated_ip_one_customer_only() -> None:
    ds = desired({"s1": server_spec(10)})
    out = place_all(ds, [needs("a.example.org", ip_type="dedicated"),
                         needs("b.example.org", ip_type="dedicated", customer="latecoere"),
                         needs("c.example.org", ip_type="dedicated")], {})
    assert out["a.example.org"].ip == out["c.example.org"].ip == "127.0.10.2"
    assert out["b.example.org"].ip == "127.0.10.1"
    assert _conflicts(out["b.example.org"])["ip.type"] == Conflict("ip.type", "dedicated", "shared")


def test_SYNC_3_recorded_dedicated_ip_keeps_its_owner() -> None:
    ds = desired({"s1": server_spec(10)})
    out = place_all(ds, [needs("a.example.org", ip_type="dedicated", customer="latecoere"),
                         needs("z.example.org", ip_type="dedicated")],
                    {"z.example.org": Recorded("s1", "127.0.10.2")})
    assert out["z.example.org"].ip == "127.0.10.2"
    assert out["a.example.org"].ip == "127.0.10.1"


def test_SYNC_3_no_ip_of_either_type() -> None:
    ds = desired({"s1": server_spec(10, ips=[{"address": "127.0.10.2", "type": "dedicated"}])})
    out = place_all(ds, [needs("a.example.org", ip_type="dedicated", customer="latecoere"),
                         needs("b.example.org", ip_type="dedicated")], {})
    assert out["a.example.org"].ip == "127.0.10.2"
    assert out["b.example.org"].ip is None
    assert _conflicts(out["b.example.org"])["ip.type"] == Conflict("ip.type", "dedicated", None)


def test_SYNC_3_shared_need_on_a_dedicated_only_server() -> None:
    ds = desired({"s1": server_spec(10, ips=[{"address": "127.0.10.2", "type": "dedicated"}])})
    pl = place_all(ds, [needs("a.example.org")], {})["a.example.org"]
    assert pl.ip == "127.0.10.2"
    assert _conflicts(pl)["ip.type"] == Conflict("ip.type", "shared", "dedicated")


def test_SYNC_3_explicit_ip_chooses_its_server() -> None:
    ds = desired({"s1": server_spec(10), "s2": server_spec(11)})
    pl = place_all(ds, [needs("a.example.org", ip="127.0.11.1")], {})["a.example.org"]
    assert (pl.server, pl.ip) == ("s2", "127.0.11.1")


def test_SYNC_3_explicit_dedicated_ip_held_by_another_customer() -> None:
    ds = desired({"s1": server_spec(10)})
    out = place_all(ds, [needs("a.example.org", ip_type="dedicated", ip="127.0.10.2", customer="latecoere"),
                         needs("z.example.org", ip_type="dedicated")],
                    {"z.example.org": Recorded("s1", "127.0.10.2")})
    assert out["z.example.org"].ip == "127.0.10.2"
    a = out["a.example.org"]
    assert a.ip != "127.0.10.2"
    assert "ip" in _conflicts(a) or "ip.type" in _conflicts(a)


# --- databases ----------------------------------------------------------------------


def test_SYNC_3_database_on_the_web_server_when_it_has_the_role() -> None:
    ds = desired({"s1": server_spec(10), "db-1": server_spec(11, roles=["db-postgresql"])})
    pl = place_all(ds, [needs("a.example.org", databases=(("app", "postgresql"),))], {})["a.example.org"]
    assert pl.dbServers == {"app": "s1"}


def test_SYNC_3_database_on_another_server_of_the_region() -> None:
    ds = desired({"s1": server_spec(10, roles=["web"]), "db-2": server_spec(12, roles=["db-postgresql"]),
                  "db-1": server_spec(11, roles=["db-postgresql"]),
                  "us-db": server_spec(13, region="us-east", roles=["db-mariadb"])})
    pl = place_all(ds, [needs("a.example.org", databases=(("app", "postgresql"), ("wiki", "mariadb")))], {})
    pl_a = pl["a.example.org"]
    assert pl_a.dbServers == {"app": "db-1", "wiki": None}
    assert _conflicts(pl_a) == {"databases.wiki.engine": Conflict("databases.wiki.engine", "mariadb", None)}


def test_SYNC_3_recorded_database_server_is_kept() -> None:
    ds = desired({"s1": server_spec(10), "db-1": server_spec(11, roles=["db-mariadb"])})
    rec = {"a.example.org": Recorded("s1", "127.0.10.1", {"app": "db-1"})}
    pl = place_all(ds, [needs("a.example.org", databases=(("app", "mariadb"),))], rec)
    assert pl["a.example.org"].dbServers == {"app": "db-1"}


def test_SYNC_3_explicit_ip_of_another_server_than_the_recorded_one() -> None:
    ds = desired({"s1": server_spec(10), "s2": server_spec(11)})
    pl = place_all(ds, [needs("a.example.org", ip="127.0.11.1")], {"a.example.org": Recorded("s1", "127.0.10.1")})
    a = pl["a.example.org"]
    assert (a.server, a.ip) == ("s1", "127.0.10.1")  # no implicit move; the address is reported
    assert _conflicts(a)["ip"] == Conflict("ip", "127.0.11.1", "127.0.10.1")


def test_SYNC_3_explicit_dedicated_ip_is_reserved_before_automatic_picks() -> None:
    ds = desired({"s1": server_spec(10)})
    out = place_all(ds, [needs("a.example.org", ip_type="dedicated", customer="latecoere"),
                         needs("b.example.org", ip_type="dedicated", ip="127.0.10.2")], {})
    assert out["b.example.org"].ip == "127.0.10.2"
    assert out["b.example.org"].conflicts == ()
    assert out["a.example.org"].ip == "127.0.10.1"


# --- a kept server that no longer fits (SYNC-3, never moved implicitly) --------------


def test_SYNC_3_explicit_server_without_web_role_is_a_conflict() -> None:
    ds = desired({"db-1": server_spec(10, roles=["db-postgresql"]), "web-1": server_spec(11)})
    pl = place_all(ds, [needs("a.example.org", server="db-1")], {})["a.example.org"]
    assert pl.server == "db-1"
    assert Conflict("server", "db-1 with the web role", None) in pl.conflicts


def test_SYNC_3_explicit_move_to_a_full_server_is_a_conflict() -> None:
    ds = desired({"s1": server_spec(1, capacity={"sites": 1}), "s2": server_spec(2, capacity={"sites": 1})})
    recorded = {"a.example.org": Recorded("s1", None), "b.example.org": Recorded("s2", None)}
    out = place_all(ds, [needs("a.example.org"), needs("b.example.org", server="s1", moving=True)], recorded)
    assert out["b.example.org"].server == "s1"
    assert Conflict("server", "s1 with free capacity", None) in out["b.example.org"].conflicts
    assert out["a.example.org"].conflicts == ()


def test_SYNC_3_recorded_server_that_lost_its_web_role_stays_with_a_conflict() -> None:
    ds = desired({"s1": server_spec(10, roles=["dns"]), "s2": server_spec(11)})
    pl = place_all(ds, [needs("a.example.org")], {"a.example.org": Recorded("s1", None)})["a.example.org"]
    assert pl.server == "s1"
    assert Conflict("server", "s1 with the web role", None) in pl.conflicts


def test_a_fallback_dedicated_ip_is_kept_when_placed_again() -> None:
    """SYNC-3 gave a subscription wanting a shared address one of the server's dedicated
    ones (it has no shared one); placing it again keeps that address: recomputing one
    subscription must agree with the full pass (SYNC-5; hypothesis found both moving to
    the third address and the other one losing its own)."""
    ips = [{"address": f"127.0.10.{i}", "type": "dedicated"} for i in (1, 2, 3)]
    ds = desired({"web-1": server_spec(10, ips=ips)})
    recorded = {"a.example.org": Recorded("web-1", "127.0.10.1", {}), "b.example.org": Recorded("web-1", "127.0.10.2", {})}
    wanted = [needs("a.example.org"), needs("b.example.org")]
    full = place_all(ds, wanted, recorded)
    assert (full["a.example.org"].ip, full["b.example.org"].ip) == ("127.0.10.1", "127.0.10.2")
    assert [c.as_dict() for c in full["a.example.org"].conflicts] == [
        {"property": "ip.type", "planValue": "shared", "availableValue": "dedicated"}]
    for one in wanted:
        part = place_all(ds, [one], recorded, {n: "mermoz" for n in recorded if n != one.name})
        assert part[one.name].ip == full[one.name].ip
