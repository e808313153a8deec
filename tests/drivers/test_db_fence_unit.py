"""Fencing of the db driver (issue 10 item 4, DR-1), without servers: what a server's
fence table decides (``fence.decide``, pure), and how the driver acts on it: the
batch's subscriptions checked once per server and engine with the engine's view of
their generations, a refused subscription failed permanently with nothing run or
dropped for it, the others going ahead. The servers' side is a FAKE backend (it stands
for a MariaDB/PostgreSQL connection: the real tables are checked in
tests/drivers/test_db_engine.py)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from controller import errors
from controller.agent import jobs
from controller.drivers import base, naming, transport
from controller.drivers.context import Context, Server
from controller.drivers.db import credentials, decide, fence
from controller.drivers.db.driver import DbDriver
from controller.state import regions
from controller.state import store as state_store

A, B = "a.example.org", "b.example.org"


@pytest.mark.parametrize(("stored", "sent", "refused", "raised"), [
    pytest.param({}, {A: 1}, {}, {}, id="never-moved-nothing-written"),
    pytest.param({}, {A: 2}, {}, {A: 2}, id="first-move-recorded"),
    pytest.param({A: 2}, {A: 2}, {}, {}, id="same-generation-passes"),
    pytest.param({A: 2}, {A: 3}, {}, {A: 3}, id="newer-raises"),
    pytest.param({A: 3}, {A: 2}, {A: jobs.Fenced(3, 2)}, {}, id="older-refused"),
    pytest.param({A: 2}, {A: 1}, {A: jobs.Fenced(2, 1)}, {}, id="never-moved-view-refused"),
    pytest.param({A: 3, B: 1}, {A: 2, B: 4}, {A: jobs.Fenced(3, 2)}, {B: 4}, id="per-subscription"),
])
def test_the_fence_decides_per_subscription(stored: dict[str, int], sent: dict[str, int],
                                            refused: dict[str, jobs.Fenced], raised: dict[str, int]) -> None:
    assert fence.decide(stored, sent) == fence.Decision(refused, raised)


@pytest.mark.parametrize("gen", [pytest.param(0, id="zero"), pytest.param(True, id="bool"),
                                 pytest.param("2", id="text")])
def test_a_generation_that_is_no_positive_integer_is_refused(gen: Any) -> None:
    with pytest.raises(ValueError, match="not a positive integer"):
        fence.decide({}, {A: gen})


class FakeBackend:
    """FAKE ``driver.Backend``: an empty server whose fence table holds ``stored``;
    records the fence checks, the steps run and the drops."""

    engine = "mariadb"

    def __init__(self, stored: Mapping[str, int]) -> None:
        self.stored = dict(stored)
        self.changes = 0
        self.checks: list[dict[str, int]] = []
        self.steps: list[decide.Step] = []
        self.dropped: list[str] = []
        self.closed = False

    def observe(self) -> decide.Observed:
        return decide.Observed()

    def fence(self, sent: Mapping[str, int]) -> dict[str, jobs.Fenced]:
        self.checks.append(dict(sent))
        d = fence.decide(self.stored, sent)
        self.stored.update(d.raised)
        return d.refused

    def run(self, step: decide.Step) -> None:
        self.steps.append(step)
        self.changes += 1

    def drop(self, database: str, user: str) -> None:
        self.dropped.append(database)

    def close(self) -> None:
        self.closed = True


def driver(tmp_path: Path, backend: FakeBackend) -> DbDriver:
    ctx = Context(tmp_path, {"db-1": Server("db-1", "eu", "docker", "192.0.2.10", ("db-mariadb",), ())})
    drv = DbDriver(ctx)
    drv._connect = lambda key: backend  # type: ignore[method-assign]
    return drv


def ensure(sub: str, state: str = "active") -> base.Change[Any]:
    return base.Change(sub, "suspend" if state == "suspended" else "ensure",
                       {"state": state, "databases": [{"name": "app", "engine": "mariadb", "server": "db-1"}],
                        "quotaMB": 100})


def test_a_refused_subscription_fails_permanently_with_nothing_run_the_other_goes_ahead(tmp_path: Path) -> None:
    backend = FakeBackend({A: 3})
    drv = driver(tmp_path, backend)
    drv.use_generations({A: 2, B: 5})
    res = {r.name: r for r in drv.apply(None, [ensure(A), ensure(B)])}
    assert backend.checks == [{A: 2, B: 5}]  # one check for the server's batch
    a = res[A]
    assert a.outcome == "failed" and a.permanent, a
    assert ("mariadb on db-1: fenced: a.example.org is at generation 3 on this server, "
            "the job carries generation 2") in a.message
    assert res[B].outcome == "provisioned" and not res[B].permanent, res[B]
    assert {s.database for s in backend.steps} == {naming.database(B, "app")}, backend.steps  # nothing of a
    assert backend.stored == {A: 3, B: 5}  # b raised; a kept
    assert backend.closed


def test_a_refused_deletion_drops_nothing_and_keeps_the_credentials(tmp_path: Path) -> None:
    backend = FakeBackend({A: 4})
    drv = driver(tmp_path, backend)
    credentials.ensure(tmp_path, A, "app", engine="mariadb", server="db-1", host="192.0.2.10", port=3306)
    drv.use_generations({A: 3})
    [res] = drv.apply(None, [base.Change(A, "delete", cast(Any, {"name": A}))])
    assert res.outcome == "failed" and res.permanent and "is at generation 4" in res.message, res
    assert backend.dropped == [] and [c.db for c in credentials.list_for(tmp_path, A)] == ["app"]


def test_without_the_engine_the_generations_come_from_the_state_store(tmp_path: Path) -> None:
    """A driver used outside a pass (a command, a test) reads the generations once from
    the state store of its state directory; a subscription never moved is at 1."""
    with state_store.Store(tmp_path / "state.db") as store:
        regions.bump(store, [A])
        regions.bump(store, [A])
    backend = FakeBackend({})
    drv = driver(tmp_path, backend)
    assert [r.outcome for r in drv.apply(None, [ensure(A), ensure(B)])] == ["provisioned"] * 2
    assert backend.checks == [{A: 3, B: 1}] and backend.stored == {A: 3}


def test_a_failed_fence_check_fails_the_batch_on_that_server_and_closes_it(tmp_path: Path) -> None:
    class FakeBackendDown(FakeBackend):
        def fence(self, sent: Mapping[str, int]) -> dict[str, jobs.Fenced]:
            raise errors.TemporaryError("mariadb on db-1: lost connection (2013)", delay=5.0)

    backend = FakeBackendDown({})
    drv = driver(tmp_path, backend)
    [res] = drv.apply(None, [ensure(A)])
    assert res.outcome == "failed" and not res.permanent and res.retry_after == 5.0, res
    assert backend.steps == [] and backend.closed


def test_the_refusal_is_the_transport_s_fenced_a_permanent_error() -> None:
    err = fence.refusal("postgresql on db-2", {A: jobs.Fenced(3, 2)})
    assert isinstance(err, transport.Fenced) and isinstance(err, errors.PermanentError)
    assert err.refused == {A: jobs.Fenced(3, 2)}
    assert str(err).startswith("postgresql on db-2: fenced: a.example.org is at generation 3")
