"""The live PostgreSQL PITR test's environment: the embedded servers of ``desired/`` (a
db server and a repository server in eu-west, a repository server in us-east), up once
per module in an environment of its own and destroyed at the end, and the controller's
view of it (topology, connection pool) for calling ``drivers.backup.pgpitr``."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.conftest import E2E, environment

from controller import model
from controller.drivers import transport
from controller.drivers.backup import topology
from controller.drivers.context import Context

HERE = Path(__file__).resolve().parent


@dataclass
class Pitr:
    env: E2E
    topo: topology.Topology
    pool: transport.Pool


@pytest.fixture(scope="module")
def pitr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pitr]:
    with environment(tmp_path_factory, HERE / "desired", "pitr-pg-live") as env:
        ctx = Context.of(model.load_desired([env.desired]), env.state)
        pool = transport.Pool(ctx)
        try:
            yield Pitr(env, topology.Topology.of(ctx), pool)
        finally:
            pool.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                               ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed live test, the servers' pgBackRest and PostgreSQL logs (tails) in its report."""
    report = yield
    p = item.funcargs.get("pitr") if isinstance(item, pytest.Function) else None
    if report.failed and call.when == "call" and isinstance(p, Pitr):
        for host in sorted(p.topo.ctx.servers):
            done = p.env.on(host, "sh", "-c", "tail -n 40 /var/log/pgbackrest/*.log "
                            "/var/log/postgresql/*.log 2>/dev/null")
            report.sections.append((f"logs of {host}", done.text))
    return report
