"""Typed reads and writes of the state store, one behaviour per test class."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.state import errors, records, store

from .conftest import T0, FakeNow


def raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the file behind the store's back, as another process would."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class TestOpening:
    def test_creates_directory_and_uses_wal(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "state.db"
        with store.Store(path) as st:
            assert st._fetchone("PRAGMA journal_mode") == ("wal",)
            assert st._fetchone("PRAGMA busy_timeout") == (5000,)
            assert st._fetchone("PRAGMA foreign_keys") == (1,)
        assert path.exists()

    def test_default_path_follows_environment(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path))
        assert store.default_path() == tmp_path / "state.db"
        monkeypatch.delenv("TENANTCTL_STATE_DIR")
        assert store.default_path() == Path(".state") / "state.db"

    def test_closed_store_refuses_use(self, db_path: Path) -> None:
        st = store.Store(db_path)
        st.close()
        st.close()  # idempotent
        with pytest.raises(errors.StoreClosed):
            st.get_subscription("a.example")


class TestSubscriptions:
    def rec(self, name: str, **kw: object) -> records.SubscriptionRecord:
        return records.SubscriptionRecord(name=name, customer="c1", created_at=T0, **kw)  # type: ignore[arg-type]

    def test_round_trip(self, st: store.Store) -> None:
        rec = self.rec("a.example", server="eu1", ip="127.0.10.2", db_servers={"app": "eu1-db"})
        st.upsert_subscription(rec)
        assert st.get_subscription("a.example") == rec
        assert st.get_subscription("missing.example") is None

    def test_upsert_replaces_every_field(self, st: store.Store) -> None:
        st.upsert_subscription(self.rec("a.example", server="eu1", ip="127.0.10.2"))
        deleted = self.rec("a.example", deleted_at=T0, purge_after=T0 + timedelta(days=60))  # LIFE-6
        st.upsert_subscription(deleted)
        assert st.get_subscription("a.example") == deleted

    def test_list_hides_deleted_unless_asked(self, st: store.Store) -> None:
        st.upsert_subscription(self.rec("b.example"))
        st.upsert_subscription(self.rec("a.example"))
        st.upsert_subscription(self.rec("z.example", deleted_at=T0, purge_after=T0 + timedelta(days=60)))
        assert [r.name for r in st.list_subscriptions()] == ["a.example", "b.example"]
        assert [r.name for r in st.list_subscriptions(include_deleted=True)] == [
            "a.example",
            "b.example",
            "z.example",
        ]

    def test_datetimes_are_stored_as_iso_utc(self, st: store.Store, db_path: Path) -> None:
        paris = datetime(2025, 3, 1, 13, 0, tzinfo=UTC).astimezone(zoneinfo.ZoneInfo("Europe/Paris"))
        st.upsert_subscription(self.rec("a.example", deleted_at=paris))
        assert raw(db_path, "SELECT created_at, deleted_at FROM subscriptions") == [
            ("2025-03-01T12:00:00.000000Z", "2025-03-01T13:00:00.000000Z")
        ]
        got = st.get_subscription("a.example")
        assert got is not None and got.deleted_at == paris and got.deleted_at.tzinfo == UTC

    def test_naive_datetimes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            records.SubscriptionRecord(name="a", customer="c", created_at=datetime(2025, 1, 1))


class TestSticky:
    """SYNC-4: the customer's own values of a group survive plan syncs."""

    def test_set_get_drop(self, st: store.Store) -> None:
        st.set_sticky("a.example", "php.common", {"display_errors": "on"})
        st.set_sticky("a.example", "dns", {"records": [{"type": "TXT", "value": "x"}]})
        st.set_sticky("b.example", "dns", {})
        assert st.get_sticky("a.example") == {
            "dns": {"records": [{"type": "TXT", "value": "x"}]},
            "php.common": {"display_errors": "on"},
        }
        st.set_sticky("a.example", "php.common", {"display_errors": "off"})
        assert st.get_sticky("a.example")["php.common"] == {"display_errors": "off"}
        st.drop_sticky("a.example", "dns")
        assert list(st.get_sticky("a.example")) == ["php.common"]
        st.drop_sticky("a.example")
        assert st.get_sticky("a.example") == {}
        assert st.get_sticky("b.example") == {"dns": {}}

    def test_all_sticky_in_one_call(self, st: store.Store) -> None:
        st.set_sticky("b.example", "dns", {"x": 1})
        st.set_sticky("a.example", "php.common", {"y": 2})
        st.set_sticky("a.example", "lock", {})
        assert st.all_sticky() == {
            "a.example": {"lock": {}, "php.common": {"y": 2}},
            "b.example": {"dns": {"x": 1}},
        }

    def test_json_is_canonical(self, st: store.Store, db_path: Path) -> None:
        st.set_sticky("a.example", "php", {"b": 1, "a": [1, 2]})
        assert raw(db_path, "SELECT vals FROM sticky") == [('{"a":[1,2],"b":1}',)]


class TestTransfers:
    """PLAN-7: a transferred subscription keeps its effective values, frozen."""

    def test_set_get_drop(self, st: store.Store) -> None:
        rec = records.TransferRecord(
            name="a.example",
            from_customer="c1",
            to_customer="c2",
            at=T0,
            frozen={"resources": {"diskMB": "unlimited", "databases": 5}},
        )
        st.set_transfer(rec)
        assert st.get_transfer("a.example") == rec
        other = dataclasses.replace(rec, name="0.example", frozen={})
        st.set_transfer(other)
        assert st.all_transfers() == [other, rec]
        st.drop_transfer("a.example")
        assert st.get_transfer("a.example") is None


class TestFingerprints:
    def test_set_replaces_the_whole_set(self, st: store.Store) -> None:
        st.set_fingerprints("a.example", {"*": "f0", "web": "f1", "dns": "f2"})
        st.set_fingerprints("a.example", {"*": "g0", "web": "g1"})
        assert st.get_fingerprints("a.example") == {"*": "g0", "web": "g1"}

    def test_drop_some_or_all(self, st: store.Store) -> None:
        st.set_fingerprints("a.example", {"*": "f0", "web": "f1", "dns": "f2"})
        st.drop_fingerprints("a.example", ["web", "absent"])
        assert st.get_fingerprints("a.example") == {"*": "f0", "dns": "f2"}
        st.drop_fingerprints("a.example")
        assert st.get_fingerprints("a.example") == {}

    def test_all_fingerprints(self, st: store.Store) -> None:
        st.set_fingerprints("a.example", {"*": "a0", "web": "a1"})
        st.set_fingerprints("b.example", {"*": "b0"})
        st.set_fingerprints("c.example", {})
        assert st.all_fingerprints() == {"a.example": {"*": "a0", "web": "a1"}, "b.example": {"*": "b0"}}


class TestConditions:
    """cert-manager hygiene: transition time moves only on a status flip; no-op writes are skipped."""

    def test_first_write_stamps_now(self, st: store.Store, clock: FakeNow) -> None:
        assert st.set_condition("a.example", records.Condition("WebReady", "False", "Pending", "waiting"))
        [cond] = st.get_conditions("a.example")
        assert cond == records.Condition("WebReady", "False", "Pending", "waiting", last_transition=T0)

    def test_same_status_keeps_transition_time(self, st: store.Store, clock: FakeNow) -> None:
        st.set_condition("a.example", records.Condition("WebReady", "False", "Pending", "waiting"))
        clock.advance(60)
        assert not st.set_condition("a.example", records.Condition("WebReady", "False", "Pending", "waiting"))
        clock.advance(60)
        assert st.set_condition("a.example", records.Condition("WebReady", "False", "Failed", "nginx -t"))
        assert st.get_conditions("a.example") == [
            records.Condition("WebReady", "False", "Failed", "nginx -t", last_transition=T0)
        ]

    def test_flip_moves_transition_time(self, st: store.Store, clock: FakeNow) -> None:
        st.set_condition("a.example", records.Condition("WebReady", "False", "Pending", ""))
        clock.advance(90)
        assert st.set_condition("a.example", records.Condition("WebReady", "True", "Provisioned", ""))
        [cond] = st.get_conditions("a.example")
        assert cond.last_transition == T0 + timedelta(seconds=90)

    def test_given_transition_time_is_used_only_on_flip(self, st: store.Store) -> None:
        given = T0 - timedelta(hours=1)
        st.set_condition("a.example", records.Condition("Ready", "True", "", "", last_transition=given))
        st.set_condition("a.example", records.Condition("Ready", "True", "", "x", last_transition=T0))
        assert st.get_conditions("a.example")[0].last_transition == given

    def test_no_write_when_unchanged(self, st: store.Store) -> None:
        st.set_condition("a.example", records.Condition("Ready", "True", "Ok", "fine"))
        before = st._fetchone("SELECT total_changes()")
        assert not st.set_condition("a.example", records.Condition("Ready", "True", "Ok", "fine"))
        assert st._fetchone("SELECT total_changes()") == before

    def test_ordered_by_type_and_bad_status_refused(self, st: store.Store) -> None:
        st.set_condition("a.example", records.Condition("WebReady", "True"))
        st.set_condition("a.example", records.Condition("DNSReady", "Unknown"))
        assert [c.type for c in st.get_conditions("a.example")] == ["DNSReady", "WebReady"]
        with pytest.raises(ValueError, match="True/False/Unknown"):
            records.Condition("Ready", "true")  # type: ignore[arg-type]


class TestBackoff:
    def test_failures_accumulate_and_clear(self, st: store.Store, clock: FakeNow) -> None:
        first = st.record_failure("a.example", "ssh: timeout", 0.5)
        assert first == records.BackoffRecord("a.example", 1, T0 + timedelta(seconds=0.5), "ssh: timeout")
        clock.advance(10)
        second = st.record_failure("a.example", "ssh: refused", 1.0)
        assert second.failures == 2 and second.next_attempt == T0 + timedelta(seconds=11)
        assert st.get_backoff("a.example") == second
        assert st.list_backoff() == [second]
        st.clear_backoff("a.example")
        assert st.get_backoff("a.example") is None

    def test_survives_a_restart(self, db_path: Path, clock: FakeNow) -> None:
        with store.Store(db_path, now=clock) as st:
            st.record_failure("a.example/dns", "pdns 500", 30)
        with store.Store(db_path, now=clock) as st:
            rec = st.get_backoff("a.example/dns")
        assert rec is not None and rec.failures == 1 and rec.last_error == "pdns 500"


    def test_permanent_failures_remember_their_inputs(self, st: store.Store) -> None:
        rec = st.record_failure("a.example/web", "no such php version", 30, fingerprint="f1", permanent=True)
        assert (rec.permanent, rec.fingerprint) == (True, "f1")
        assert st.get_backoff("a.example/web") == rec
        temporary = st.record_failure("a.example/web", "ssh: timeout", 5)
        assert (temporary.failures, temporary.permanent, temporary.fingerprint) == (2, False, None)
        assert st.list_backoff() == [temporary]


class TestServerGenerations:
    def test_set_and_get(self, st: store.Store, db_path: Path, clock: FakeNow) -> None:
        assert st.get_server_generations() == {}
        st.set_server_generation("web-1", "aaaa")
        st.set_server_generation("db-1", "bbbb")
        clock.advance(60)
        st.set_server_generation("web-1", "cccc")
        assert st.get_server_generations() == {"db-1": "bbbb", "web-1": "cccc"}
        assert raw(db_path, "SELECT seen_at FROM servers WHERE name = 'web-1'") == [("2025-03-01T12:01:00.000000Z",)]


class TestStatus:
    def test_written_only_when_changed(self, st: store.Store, clock: FakeNow, db_path: Path) -> None:
        assert st.put_status("b.example", {"name": "b.example", "sync": "synced"})
        assert st.put_status("a.example", {"sync": "locked", "name": "a.example"})
        clock.advance(5)
        assert not st.put_status("a.example", {"name": "a.example", "sync": "locked"})
        assert raw(db_path, "SELECT updated_at FROM status WHERE name = 'a.example'") == [
            ("2025-03-01T12:00:00.000000Z",)
        ]
        assert st.put_status("a.example", {"name": "a.example", "sync": "unsynced"})
        assert [d["name"] for d in st.get_status()] == ["a.example", "b.example"]
        st.drop_status("a.example")
        assert st.get_status() == [{"name": "b.example", "sync": "synced"}]


class TestUsage:
    """RES-2: measured usage, filled by drivers."""

    def test_put_merges_metrics(self, st: store.Store) -> None:
        st.put_usage("a.example", {"diskMB": 812.5, "trafficMB": 10})
        st.put_usage("a.example", {"diskMB": 900})
        assert st.get_usage("a.example") == {"diskMB": 900.0, "trafficMB": 10.0}
        assert st.get_usage("b.example") == {}
        st.put_usage("b.example", {"trafficMB": 1.5})
        assert st.all_usage() == {"a.example": {"diskMB": 900.0, "trafficMB": 10.0}, "b.example": {"trafficMB": 1.5}}


class TestTransactions:
    def test_batch_is_atomic(self, st: store.Store) -> None:
        with pytest.raises(RuntimeError), st.transaction():
            st.set_fingerprints("a.example", {"*": "f"})
            st.put_status("a.example", {"x": 1})
            raise RuntimeError("boom")
        assert st.get_fingerprints("a.example") == {} and st.get_status() == []

    def test_nested_joins_outer(self, st: store.Store, db_path: Path) -> None:
        with st.transaction():
            with st.transaction():
                st.set_fingerprints("a.example", {"*": "f"})
            # not committed yet: another connection does not see it
            assert raw(db_path, "SELECT count(*) FROM fingerprints") == [(0,)]
        assert raw(db_path, "SELECT count(*) FROM fingerprints") == [(1,)]

    def test_failed_inner_block_undoes_only_itself(self, st: store.Store) -> None:
        with st.transaction():
            st.set_fingerprints("a.example", {"*": "kept"})
            with pytest.raises(RuntimeError), st.transaction():
                st.set_fingerprints("b.example", {"*": "undone"})
                raise RuntimeError("inner")
        assert st.all_fingerprints() == {"a.example": {"*": "kept"}}

    def test_other_threads_do_not_join_or_see_an_open_transaction(self, st: store.Store) -> None:
        entered, release = threading.Event(), threading.Event()
        seen: list[dict[str, str]] = []

        def reader() -> None:
            entered.wait()
            seen.append(st.get_fingerprints("a.example"))  # blocks until the writer commits

        t = threading.Thread(target=reader)
        t.start()
        with st.transaction():
            st.set_fingerprints("a.example", {"*": "f"})
            entered.set()
            release.wait(0.05)
            assert seen == []
        t.join(5)
        assert seen == [{"*": "f"}]

    def test_concurrent_writers_in_threads(self, st: store.Store) -> None:
        def work(i: int) -> None:
            for j in range(50):
                with st.transaction():
                    st.set_fingerprints(f"s{i}-{j}.example", {"*": str(j), "web": str(i)})
                    st.record_failure(f"s{i}", "e", 1)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(st.all_fingerprints()) == 400
        assert {st.get_backoff(f"s{i}").failures for i in range(8)} == {50}  # type: ignore[union-attr]


class TestSnapshot:
    def test_writes_inside_a_snapshot_are_refused(self, st: store.Store) -> None:
        with st.snapshot(), pytest.raises(errors.ReadOnlyStore, match="inside snapshot"):
            st.put_status("a.example", {})
        st.put_status("a.example", {})  # fine again afterwards

    def test_snapshot_inside_a_transaction_joins_it(self, st: store.Store) -> None:
        with st.transaction():
            st.put_status("a.example", {"v": 1})
            with st.snapshot():
                assert st.get_status() == [{"v": 1}]
            st.put_status("b.example", {"v": 2})
        assert len(st.get_status()) == 2
