"""The db driver's pure parts and boundaries, without servers: decisions, password
verifiers, identifier whitelist, error translation (every backend error mapped),
retries, and the credentials store's files."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

import psycopg
import pymysql
import pytest

from controller import errors
from controller.drivers import naming
from controller.drivers.db import credentials, decide, failures, mariadb, postgresql

SUB = "shop.example.com"


def want(engine: str = "mariadb", password: str = "p" * 32) -> decide.Wanted:
    return decide.Wanted(sub=SUB, db="app", engine=engine, server="s1", database=naming.database(SUB, "app"),
                         user=naming.db_user(SUB, "app"), password=password)


def have(w: decide.Wanted, *, locked: bool = False, password: str | None = None) -> decide.Observed:
    pw = password or w.password
    verifier = (decide.mariadb_native_hash(pw) if w.engine == "mariadb"
                else decide.scram_verifier(pw, b"0123456789abcdef"))
    return decide.Observed(databases={w.database: 0}, logins={w.user: decide.Login(verifier, locked)},
                           grants={(w.database, w.user)})


def kinds(steps: list[decide.Step]) -> list[str]:
    return [s.kind for s in steps]


# --- decisions -----------------------------------------------------------------------


@pytest.mark.parametrize("engine,expected", [
    pytest.param("mariadb", ["create_user", "create_database", "grant"], id="mariadb"),
    pytest.param("postgresql", ["create_user", "create_database", "revoke_public"], id="postgresql"),
])
def test_a_new_database_gets_login_database_and_rights(engine: str, expected: list[str]) -> None:
    assert kinds(decide.steps(want(engine), decide.Observed(), locked=False)) == expected


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_what_the_server_already_has_gives_no_step(engine: str) -> None:
    w = want(engine)
    assert decide.steps(w, have(w), locked=False) == []
    assert decide.steps(w, have(w, locked=True), locked=True) == []


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_a_login_with_another_password_is_set_back_to_the_stored_one(engine: str) -> None:
    w = want(engine)
    assert kinds(decide.steps(w, have(w, password="other"), locked=False)) == ["set_password"]


def test_lock_follows_suspension_both_ways() -> None:
    w = want()
    assert kinds(decide.steps(w, have(w), locked=True)) == ["lock"]
    assert kinds(decide.steps(w, have(w, locked=True), locked=False)) == ["unlock"]
    # created then locked when a subscription is created suspended
    assert kinds(decide.steps(w, decide.Observed(), locked=True))[-1] == "lock"


def test_missing_grant_and_public_connect_are_repaired_and_named_as_drift() -> None:
    w = want("postgresql")
    obs = have(w)
    obs.grants.clear()
    obs.public.add(w.database)
    assert kinds(decide.steps(w, obs, locked=False)) == ["grant", "revoke_public"]
    assert decide.drift(w, obs, locked=False) == ["app: grant on its database missing",
                                                   "app: PUBLIC may connect to it"]


@pytest.mark.parametrize("engine", ["mariadb", "postgresql"])
def test_a_frozen_database_gets_no_grant_and_is_no_drift(engine: str) -> None:
    """A move's freeze (driver.freeze) is given back by the move only: a pass between its
    freeze and its switch (the planner places the subscription again from ``placing``
    on) must not hand the database back to its login."""
    w = want(engine)
    obs = have(w)
    obs.grants.clear()  # PostgreSQL: the holder owns it; MariaDB: the login can only read
    obs.frozen.add(w.database)
    assert decide.steps(w, obs, locked=False) == []
    assert decide.drift(w, obs, locked=False) == []
    assert kinds(decide.steps(w, obs, locked=True)) == ["lock"]  # the login's own state still follows
    obs.frozen.clear()
    assert kinds(decide.steps(w, obs, locked=False)) == ["grant"]


def test_a_frozen_databases_holder_is_its_own_role_within_postgresql_s_name_limit() -> None:
    longest = naming.database(SUB, "a" * 32)
    holder = postgresql.holder(longest)
    assert holder == "tenantctl_frozen_" + longest and len(holder.encode()) <= 63
    assert postgresql.holder(naming.database(SUB, "app")) != postgresql.holder(naming.database("other.example.com",
                                                                                               "app"))
    assert not re.fullmatch(r"u[0-9a-f]{12}", holder)  # never taken for a tenant's login (OBSERVE)
    assert postgresql.held(longest, holder) and not postgresql.held(longest, naming.db_user(SUB, "a" * 32))
    with pytest.raises(ValueError, match="too long"):
        postgresql.holder("a" * 47)  # PostgreSQL would truncate it: two databases could share one
    with pytest.raises(ValueError, match="unsafe"):
        postgresql.holder('a"; DROP ROLE x; --')


def test_mariadb_native_hash_is_the_servers() -> None:
    # SELECT PASSWORD('password') on MariaDB
    assert decide.mariadb_native_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"


def test_scram_verifiers_check_the_password_and_reject_garbage() -> None:
    v = decide.scram_verifier("secret", b"saltsaltsaltsalt")
    assert v.startswith("SCRAM-SHA-256$4096:" + base64.b64encode(b"saltsaltsaltsalt").decode())
    assert decide.password_matches("postgresql", v, "secret")
    assert not decide.password_matches("postgresql", v, "Secret")
    assert not decide.password_matches("postgresql", "md5abc", "secret")
    assert not decide.password_matches("postgresql", "SCRAM-SHA-256$4096:!!$a:b", "secret")
    assert not decide.password_matches("mariadb", "", "secret")


@pytest.mark.parametrize("name", ["a`b", "App", "x;drop", "", "1abc", "a b", "a" * 65, "é"])
def test_only_whitelisted_identifiers_reach_sql(name: str) -> None:
    with pytest.raises(ValueError):
        decide.ident(name)


def test_names_from_naming_pass_the_whitelist_and_grants_are_not_patterns() -> None:
    name = naming.database(SUB, "my_app")
    assert decide.ident(name) == name and decide.ident(naming.db_user(SUB, "my_app"))
    assert mariadb.grant_pattern(name) == "`" + name.replace("_", "\\_") + "`"


@pytest.mark.parametrize("used,quota,over", [
    pytest.param(2 * 1048576, 1, True, id="over"),
    pytest.param(1048576, 1, False, id="at"),
    pytest.param(10**12, "unlimited", False, id="unlimited"),
])
def test_over_quota_is_a_message_only(used: int, quota: object, over: bool) -> None:
    assert bool(decide.over_quota(used, quota)) is over


# --- error translation -------------------------------------------------------------

MY = pymysql.err
PG = psycopg.errors


@pytest.mark.parametrize("exc,kind", [
    pytest.param(MY.OperationalError(2003, "Can't connect"), errors.TemporaryError, id="my-connect"),
    pytest.param(MY.OperationalError(2013, "Lost connection"), errors.TemporaryError, id="my-lost"),
    pytest.param(MY.OperationalError(1040, "Too many connections"), errors.TemporaryError, id="my-too-many"),
    pytest.param(MY.OperationalError(1213, "Deadlock"), errors.TemporaryError, id="my-deadlock"),
    pytest.param(MY.InterfaceError(0, ""), errors.TemporaryError, id="my-interface"),
    pytest.param(MY.OperationalError(1045, "Access denied"), errors.PermanentError, id="my-access-denied"),
    pytest.param(MY.ProgrammingError(1064, "syntax"), errors.PermanentError, id="my-syntax"),
    pytest.param(MY.OperationalError(1396, "Operation CREATE USER failed"), errors.PermanentError, id="my-exists"),
    pytest.param(MY.IntegrityError(1062, "dup"), errors.PermanentError, id="my-integrity"),
    pytest.param(MY.InternalError(1, "x"), errors.PermanentError, id="my-internal"),
    pytest.param(psycopg.OperationalError("connection refused"), errors.TemporaryError, id="pg-connect"),
    pytest.param(PG.AdminShutdown("terminating"), errors.TemporaryError, id="pg-shutdown"),
    pytest.param(PG.TooManyConnections("too many"), errors.TemporaryError, id="pg-too-many"),
    pytest.param(PG.DeadlockDetected("deadlock"), errors.TemporaryError, id="pg-deadlock"),
    pytest.param(PG.InvalidPassword("auth"), errors.PermanentError, id="pg-auth"),
    pytest.param(PG.InsufficientPrivilege("denied"), errors.PermanentError, id="pg-privilege"),
    pytest.param(PG.DuplicateDatabase("exists"), errors.PermanentError, id="pg-duplicate"),
    pytest.param(PG.SyntaxError("syntax"), errors.PermanentError, id="pg-syntax"),
    pytest.param(psycopg.InterfaceError("closed"), errors.PermanentError, id="pg-interface"),
    pytest.param(ConnectionRefusedError("refused"), errors.TemporaryError, id="os"),
    pytest.param(RuntimeError("bug"), errors.PermanentError, id="other"),
])
def test_every_backend_error_is_translated(exc: Exception, kind: type[errors.DriverError]) -> None:
    mapped = failures.translate(exc, "drv-a")
    assert type(mapped) is kind
    assert "drv-a" in str(mapped)
    if kind is errors.TemporaryError:
        assert isinstance(mapped, errors.TemporaryError) and mapped.delay


def test_temporary_failures_are_retried_then_raised_from_the_backend_error() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise MY.OperationalError(2003, "Can't connect")
        return "ok"

    assert failures.with_retries(flaky, "s", wait=0.001) == "ok" and len(calls) == 3
    calls.clear()

    def down() -> str:
        calls.append(1)
        raise MY.OperationalError(2003, "Can't connect")

    with pytest.raises(errors.TemporaryError) as info:
        failures.with_retries(down, "s", attempts=2, wait=0.001)
    assert len(calls) == 2 and isinstance(info.value.__cause__, MY.OperationalError)


def test_permanent_failures_are_not_retried() -> None:
    calls = []

    def denied() -> str:
        calls.append(1)
        raise MY.OperationalError(1045, "Access denied")

    with pytest.raises(errors.PermanentError):
        failures.with_retries(denied, "s", wait=0.001)
    assert len(calls) == 1


# --- credentials store ----------------------------------------------------------------


def test_credentials_are_created_once_0600_in_a_0700_directory(tmp_path: Path) -> None:
    c = credentials.ensure(tmp_path, SUB, "app", engine="mariadb", server="s1", host="127.0.0.1", port=3306)
    assert len(c.password) == 32 and c.password.isalnum()
    assert c.database == naming.database(SUB, "app") and c.user == naming.db_user(SUB, "app")
    p = credentials.path(tmp_path, SUB, "app")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(p.parent.parent.stat().st_mode) == 0o700
    again = credentials.ensure(tmp_path, SUB, "app", engine="mariadb", server="s1", host="127.0.0.1", port=3306)
    assert again == c
    assert json.loads(p.read_text())["password"] == c.password
    assert not list(p.parent.glob("*.tmp"))


def test_a_new_address_is_recorded_and_a_move_is_not_overwritten(tmp_path: Path) -> None:
    c = credentials.ensure(tmp_path, SUB, "app", engine="mariadb", server="s1", host="127.0.0.1", port=3306)
    moved = credentials.ensure(tmp_path, SUB, "app", engine="mariadb", server="s1", host="127.0.0.9", port=3306)
    assert moved.host == "127.0.0.9" and moved.password == c.password
    other = credentials.ensure(tmp_path, SUB, "app", engine="postgresql", server="s2", host="x", port=5432)
    assert (other.engine, other.server) == ("mariadb", "s1")


def test_forget_removes_the_file_and_an_empty_directory(tmp_path: Path) -> None:
    credentials.ensure(tmp_path, SUB, "app", engine="mariadb", server="s1", host="h", port=1)
    credentials.ensure(tmp_path, SUB, "two", engine="mariadb", server="s1", host="h", port=1)
    credentials.forget(tmp_path, SUB, "app")
    assert [c.db for c in credentials.list_for(tmp_path, SUB)] == ["two"]
    credentials.forget(tmp_path, SUB, "two")
    assert not credentials.sub_dir(tmp_path, SUB).exists()
    assert credentials.list_for(tmp_path, SUB) == []


@pytest.mark.parametrize("sub,db", [("../etc", "app"), ("..", "app"), (".", "app"), (SUB, "../x"), (SUB, "App")])
def test_paths_refuse_unsafe_names(tmp_path: Path, sub: str, db: str) -> None:
    with pytest.raises(ValueError):
        credentials.path(tmp_path, sub, db)


def test_the_package_exports_what_the_wiring_needs() -> None:
    from controller.drivers import db

    assert db.__all__ == ["DbDriver", "Settings", "credentials_of"]
    assert db.DbDriver.concern == "db"


def test_passwords_never_show_in_reprs(tmp_path: Path) -> None:
    c = credentials.ensure(tmp_path, SUB, "app", engine="mariadb", server="s1", host="h", port=1)
    w = want(password=c.password)
    for obj in (c, w, decide.Step("create_user", w.database, w.user, w.password)):
        assert c.password not in repr(obj)


def test_a_move_s_frozen_databases_are_left_as_they_are(tmp_path: Path) -> None:
    """issue 13: between a move's freeze and its placement on the target, a pass over the
    subscription (drift repair, apply --force) must not touch its databases (it would
    grant writes again on the source after the move's backup): no connection at all, a
    note saying why, no usage figure; another subscription of the same batch is handled."""
    from controller.drivers import base
    from controller.drivers.context import Context
    from controller.drivers.db.driver import DbDriver

    drv = DbDriver(Context(tmp_path))
    drv._frozen = lambda: frozenset({"frozen.example.org"})
    connected: list[object] = []

    def connect(key: object) -> object:
        connected.append(key)
        raise errors.PermanentError("no server in this test")

    drv._connect = connect  # type: ignore[method-assign,assignment]
    db = [{"name": "app", "engine": "mariadb", "server": "db-1"}]
    results = drv.apply(None, [base.Change(s, "ensure", {"state": "active", "databases": db, "quotaMB": 100})
                               for s in ("frozen.example.org", "other.example.org")])
    frozen, other = results
    assert frozen.outcome == "provisioned" and "frozen by a move in progress" in frozen.message, frozen
    assert other.outcome == "failed", other  # the other one was tried (and found no server)
    assert "frozen.example.org" not in drv.last_usage and "other.example.org" in drv.last_usage


def test_a_deletion_does_not_read_the_state_store(tmp_path: Path) -> None:
    """A deletion batch never asks the store which moves freeze what (a caller may
    remove what it left after closing its store: tests/drivers/test_db_engine.py)."""
    from controller.drivers import base
    from controller.drivers.context import Context
    from controller.drivers.db.driver import DbDriver
    from controller.state import store as state_store

    drv = DbDriver(Context(tmp_path))
    with state_store.Store(tmp_path / "state.db") as store:
        drv.use_store(store)
    results = drv.apply(None, [base.Change("gone.example.org", "delete", {"name": "gone.example.org"})])
    assert [r.message for r in results] == ["no databases on file"], results
