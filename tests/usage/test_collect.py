"""The collection over servers, with the real agent run in this process on local logs
(``LocalAgent``: the job's server paths moved under a temporary directory) and one
server that cannot be reached (``FakeUnreachable``, to inject the failure): figures and
cursors recorded per server, the other servers unaffected, disk measured hourly."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller import errors
from controller.agent import jobs
from controller.drivers import context, naming, transport
from controller.drivers.usage import agent, collect
from controller.state import records, usage
from controller.state import store as state_store

from .logs import LogDir

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def server(name: str, roles: tuple[str, ...] = ("web",)) -> context.Server:
    return context.Server(name, "eu", "docker", "127.0.0.1", roles, ())


class LocalAgent:
    """The usage agent, run here on files under ``root`` (stands for the server's /)."""

    root: Path
    calls: list[tuple[str, bool]]

    def __init__(self, remote: Any, entry: str) -> None:
        self.remote = remote
        assert entry == "usage"

    def run(self, job: jobs.Job, files: Any = (), *, timeout: float = 0) -> jobs.Outcome:
        if self.remote == "down":
            raise errors.TemporaryError("server web-2 (127.0.0.2): ssh: connection refused")
        assert job.usage is not None
        LocalAgent.calls.append((self.remote, job.usage.disk))
        moved = [dataclasses.replace(s, logs=f"{self.root}{s.logs}", home=f"{self.root}{s.home}")
                 for s in job.usage.sites]
        out = agent.handle(dataclasses.replace(job, usage=dataclasses.replace(job.usage, sites=moved)), "")
        assert out.usage is not None
        return jobs.decode(jobs.Outcome, jobs.encode(out))  # through JSON's shapes


class Pool:
    def __init__(self) -> None:
        self.ctx = None

    def get(self, name: str) -> str:
        return "down" if name == "web-2" else name


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[collect.Collector, state_store.Store]]:
    LocalAgent.root, LocalAgent.calls = tmp_path / "root", []
    monkeypatch.setattr(transport, "Agent", LocalAgent)
    ctx = context.Context(tmp_path, {"web-1": server("web-1"), "web-2": server("web-2"),
                                     "db-1": server("db-1", ("db-mariadb",))})
    store = state_store.Store(tmp_path / "state.db", now=lambda: NOW)
    store.upsert_subscriptions([records.SubscriptionRecord("a.test", "acme", NOW, server="web-1"),
                                records.SubscriptionRecord("b.test", "acme", NOW, server="web-1"),
                                records.SubscriptionRecord("c.test", "zeta", NOW, server="web-2")])
    try:
        yield collect.Collector(ctx, store, Pool()), store  # type: ignore[arg-type]
    finally:
        store.close()


def logs_of(sub: str) -> LogDir:
    """The subscription's logs where the web concern writes them (``naming.logs_dir``)."""
    return LogDir(Path(f"{LocalAgent.root}{naming.logs_dir(sub)}"))


def test_placed_subscriptions_of_web_servers(setup: tuple[collect.Collector, state_store.Store]) -> None:
    collector, store = setup
    assert collect.placed(store, collector.ctx) == {"web-1": ["a.test", "b.test"], "web-2": ["c.test"]}


def test_a_collection_records_each_server_and_survives_one_down(setup: tuple[collect.Collector, state_store.Store]) -> None:
    collector, store = setup
    a = logs_of("a.test")
    a.write(3, 100)
    report = collector.run(NOW)
    assert report.failed.keys() == {"web-2"} and report.servers["web-1"] is None and report.lines == 3
    a.write(2, 10)
    a.rotate(compress=True)
    a.write(1, 1)
    report = collector.run(NOW + dt.timedelta(minutes=5))
    assert report.lines == 3
    rows = {(r.subscription, r.requests, r.bytes) for r in usage.rows(store)}
    assert rows == {("a.test", 6, 321)}
    assert store.all_usage()["a.test"]["trafficMB"] == 1.0  # rounded up to whole MiB


def test_a_moved_subscription_does_not_count_its_restored_logs_again(
        setup: tuple[collect.Collector, state_store.Store]) -> None:
    collector, store = setup
    logs_of("a.test").write(3, 100)
    collector.run(NOW)
    # evacuated to web-3: the web space (logs included) restored there, then new traffic
    ctx = context.Context(collector.ctx.state_dir, {**collector.ctx.servers, "web-3": server("web-3")})
    moved = collect.Collector(ctx, store, Pool())  # type: ignore[arg-type]
    store.upsert_subscriptions([records.SubscriptionRecord("a.test", "acme", NOW, server="web-3")])
    logs_of("a.test").write(2, 10, at=NOW)
    report = moved.run(NOW + dt.timedelta(minutes=5))
    assert "web-3" in report.servers and report.servers["web-3"] is None
    assert {(r.subscription, r.requests, r.bytes) for r in usage.rows(store)} == {("a.test", 5, 320)}


def test_web_spaces_are_measured_at_most_hourly(setup: tuple[collect.Collector, state_store.Store]) -> None:
    collector, store = setup
    logs_of("a.test").write(1)
    (LocalAgent.root / "srv" / "www" / "a.test" / "httpdocs").mkdir(parents=True)
    (LocalAgent.root / "srv" / "www" / "a.test" / "httpdocs" / "f").write_bytes(b"x" * 100_000)
    for minutes in (0, 5, 30, 61, 65):
        collector.run(NOW + dt.timedelta(minutes=minutes))
    assert [d for s, d in LocalAgent.calls if s == "web-1"] == [True, False, False, True, False]
    assert store.all_usage()["a.test"]["diskMB"] > 0.09
    collector.run(NOW + dt.timedelta(minutes=66), disk=True)  # report usage --collect
    assert LocalAgent.calls[-1] == ("web-1", True)


def test_the_run_loops_collection_tick(tmp_path: Path) -> None:
    import threading

    from controller import model
    from controller.drivers.usage import schedule

    store = state_store.Store(tmp_path / "state.db", now=lambda: NOW)
    ds = model.load_desired([Path(__file__).resolve().parents[1] / "access" / "servers.yaml"])
    try:
        idle = schedule.Scheduler(store, lambda: None, lambda: NOW, threading.Event())
        assert idle.tick() is None  # no desired state loaded yet
        tick = schedule.Scheduler(store, lambda: ds, lambda: NOW, threading.Event()).tick()
        assert tick is not None and tick.subscriptions == 0 and tick.servers == {}
    finally:
        store.close()
