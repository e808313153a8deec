"""Placement under a region evacuation (issue 10 item 4, DR-1): a subscription of the
evacuated region leaves its recorded servers there for the target region; everything
else keeps its placement."""

from __future__ import annotations

from effective.builder import server_spec

from controller.placement import Recorded, place_all
from placement.builder import desired, needs


def _ds():  # type: ignore[no-untyped-def]
    return desired({"eu-1": server_spec(10), "us-1": server_spec(11, region="us-east"),
                    "us-db": server_spec(12, region="us-east", roles=["db-mariadb"])})


def test_an_evacuated_subscription_is_placed_anew_in_the_target_region_with_its_databases() -> None:
    rec = {"a.example.org": Recorded("eu-1", "127.0.10.1", {"shop": "eu-1"})}
    n = needs("a.example.org", region="us-east", evacuated_from="eu-west", databases=(("shop", "mariadb"),))
    pl = place_all(_ds(), [n], rec)["a.example.org"]
    assert (pl.server, pl.ip) == ("us-1", "127.0.11.1")
    assert pl.dbServers == {"shop": "us-1"}
    assert pl.conflicts == ()


def test_without_the_evacuation_the_same_record_keeps_its_server_and_reports_the_region() -> None:
    rec = {"a.example.org": Recorded("eu-1", "127.0.10.1", {"shop": "eu-1"})}
    n = needs("a.example.org", region="us-east", databases=(("shop", "mariadb"),))
    pl = place_all(_ds(), [n], rec)["a.example.org"]
    assert pl.server == "eu-1" and pl.dbServers == {"shop": "eu-1"}
    assert [c.property for c in pl.conflicts] == ["region"]


def test_an_already_moved_subscription_stays_where_the_evacuation_put_it() -> None:
    rec = {"a.example.org": Recorded("us-1", "127.0.11.1", {"shop": "us-db"})}
    n = needs("a.example.org", region="us-east", evacuated_from="eu-west", databases=(("shop", "mariadb"),))
    pl = place_all(_ds(), [n], rec)["a.example.org"]
    assert (pl.server, pl.dbServers) == ("us-1", {"shop": "us-db"})
    assert pl.conflicts == ()
