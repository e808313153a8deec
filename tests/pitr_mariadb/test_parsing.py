"""MariaDB PITR without servers: the binary-log facts the agent and the controller read
(event headers, SHOW BINARY LOGS / MASTER STATUS, the dump's recorded position,
``mariadb-binlog`` progress), the replay's command line, the names and secrets, and
the role's files agreeing with ``controller.provisioning.binlog``."""

from __future__ import annotations

import datetime as dt
import io
import struct
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from controller.agent import backupjobs, binlogjobs, jobs
from controller.drivers.backup import binlog
from controller.drivers.binlog import agent
from controller.provisioning import binlog as pbinlog

ROLE = Path(__file__).resolve().parents[2] / "playbooks" / "roles" / "tenantctl_server"


def event(ts: int, kind: int, body: bytes = b"") -> bytes:
    size = 19 + len(body)
    return struct.pack("<IBIIIH", ts, kind, 7, size, 0, 0) + body


def test_events_are_read_from_their_headers_and_a_partial_last_event_is_left_out() -> None:
    data = agent.MAGIC + event(1000, 15, b"x" * 80) + event(1005, 2, b"q" * 30) + event(1010, 16, b"z" * 8)
    partial = data + struct.pack("<IBIIIH", 1020, 2, 7, 500, 0, 0) + b"cut"
    evs = agent.events(io.BytesIO(partial))
    assert [(e.offset, e.timestamp) for e in evs] == [(4, 1000), (103, 1005), (152, 1010)]
    assert agent.newest_time(io.BytesIO(partial)) == 1010
    assert agent.event_time_at(io.BytesIO(partial), 103) == 1005
    assert agent.event_time_at(io.BytesIO(partial), len(partial) + 10) is None


def test_a_file_without_the_magic_number_is_not_a_binary_log() -> None:
    with pytest.raises(ValueError, match="magic"):
        agent.events(io.BytesIO(b"SELECT 1;\n" * 10))


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("mariadb-bin.000001\t1234\nmariadb-bin.000002\t385\n",
                 [("mariadb-bin.000001", 1234), ("mariadb-bin.000002", 385)], id="two-files"),
    pytest.param("mariadb-bin.000003\t4096\tNo\n", [("mariadb-bin.000003", 4096)], id="extra-column"),
    pytest.param("", [], id="none"),
])
def test_show_binary_logs(text: str, want: list[tuple[str, int]]) -> None:
    assert agent.binary_logs(text) == want


@pytest.mark.parametrize("text", [
    pytest.param("mariadb-bin.000001\tbig\n", id="size-not-a-number"),
    pytest.param("../../etc/passwd\t12\n", id="not-a-log-name"),
    pytest.param("mariadb-bin.000001'; DROP\t12\n", id="quote"),
])
def test_show_binary_logs_refuses_what_is_not_a_row(text: str) -> None:
    with pytest.raises(ValueError):
        agent.binary_logs(text)


def test_show_master_status() -> None:
    assert agent.master_status("mariadb-bin.000002\t2849\t\t\n") == ("mariadb-bin.000002", 2849)
    assert agent.master_status("") is None


HEAD = b"""/*M!999999\\- enable the sandbox mode */
-- MariaDB dump 10.19-10.11.19-MariaDB, for debian-linux-gnu (x86_64)
--
-- Position to start replication or point-in-time recovery from
--

-- CHANGE MASTER TO MASTER_LOG_FILE='mariadb-bin.000010', MASTER_LOG_POS=2849;

--
-- Table structure for table `t`
"""


@pytest.mark.parametrize(("head", "want"), [
    pytest.param(HEAD, ("mariadb-bin.000010", 2849), id="master-data-2"),
    pytest.param(HEAD.replace(b"-- CHANGE", b"CHANGE"), None, id="not-a-comment"),
    pytest.param(b"-- MariaDB dump\nCREATE TABLE `t` (id int);\n", None, id="no-position"),
    pytest.param(HEAD.replace(b"mariadb-bin.000010", b"x'; DROP"), None, id="not-a-log-name"),
])
def test_the_position_a_dump_recorded(head: bytes, want: tuple[str, int] | None) -> None:
    assert agent.dump_position(head) == want


OUTPUT = """/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=1*/;
# at 4
#261130 16:40:00 server id 2137548801  end_log_pos 256 CRC32 0x1a2b3c4d 	Start: binlog v 4, server v 10.11.19
# at 2849
#261130 16:41:00 server id 2137548801  end_log_pos 2891 CRC32 0x00000000 	GTID 0-1-9
#261130 16:41:00 server id 2137548801  end_log_pos 3010 CRC32 0x00000000 	Xid = 41
# at 4
#261130 16:42:00 server id 2137548801  end_log_pos 256 CRC32 0x1a2b3c4d 	Start: binlog v 4, server v 10.11.19
#261130 16:42:01 server id 2137548801  end_log_pos 512 CRC32 0x00000000 	Xid = 50
"""


def test_progress_follows_the_files_mariadb_binlog_decodes() -> None:
    p = agent.Progress(["mariadb-bin.000010", "mariadb-bin.000011"], 2849)
    for line in OUTPUT.splitlines():
        p.feed(line)
    assert p.stopped_at == "mariadb-bin.000011:512"
    first = agent.Progress(["mariadb-bin.000010"], 2849)
    for line in OUTPUT.splitlines()[:3]:
        first.feed(line)
    assert first.stopped_at == "mariadb-bin.000010:2849"  # nothing after the dump: its own position


def test_the_replay_stops_at_the_second_after_the_target_in_utc() -> None:
    at = dt.datetime(2026, 11, 30, 11, 42, 7, 900000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert binlog.stop_datetime(at) == "2026-11-30 10:42:08"
    argv = binlog.replay_argv("pm-a", "app_1a2b", ["mariadb-bin.000010", "mariadb-bin.000011"], 2849, at)
    assert argv == ["env", "TZ=UTC", "mariadb-binlog", "--database=app_1a2b", "--disable-log-bin",
                    "--start-position=2849", "--stop-datetime=2026-11-30 10:42:08",
                    "/var/lib/tenantctl-binlog/pm-a/mariadb-bin.000010", "/var/lib/tenantctl-binlog/pm-a/mariadb-bin.000011"]


@pytest.mark.parametrize(("source", "db", "files"), [
    pytest.param("pm-a", "app; DROP", ["mariadb-bin.000001"], id="database"),
    pytest.param("../etc", "app", ["mariadb-bin.000001"], id="source"),
    pytest.param("pm-a", "app", ["../../etc/shadow"], id="file"),
    pytest.param("pm-a", "app", [], id="no-file"),
])
def test_the_replay_refuses_unchecked_names(source: str, db: str, files: list[str]) -> None:
    with pytest.raises(ValueError):
        binlog.replay_argv(source, db, files, 4, dt.datetime.now(dt.UTC))


@pytest.mark.parametrize(("job", "match"), [
    pytest.param(binlogjobs.BinlogJob("grant", login="x'; DROP USER root; --", password="a" * 32, hosts=["127.0.0.1"]),
                 "not a login", id="login"),
    pytest.param(binlogjobs.BinlogJob("grant", login="tenantctl_binlog", password="pw' OR '1", hosts=["127.0.0.1"]),
                 "not a login", id="password"),
    pytest.param(binlogjobs.BinlogJob("grant", login="tenantctl_binlog", password="a" * 32, hosts=["%"]),
                 "does not appear to be an IPv4 or IPv6 address", id="host-wildcard"),
])
def test_grant_refuses_unchecked_text_before_any_sql(job: binlogjobs.BinlogJob, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        agent.grant(job)


def test_quoting_refuses_quotes() -> None:
    assert agent._quote("127.0.104.2") == "'127.0.104.2'"
    with pytest.raises(agent.Problem):
        agent._quote("a'b")


def test_an_option_file_refuses_a_password_that_would_add_a_line() -> None:
    src = binlogjobs.Source("pm-a", "127.0.104.1", 3306, "abcdefghijklmnop\nhost=evil", 1)
    with pytest.raises(ValueError):
        agent._option_file(src)


def test_the_job_travels_through_the_job_format() -> None:
    job = jobs.Job(jobs.VERSION, "pitr", binlog=binlogjobs.BinlogJob(
        "archive", sources=[binlogjobs.Source("pm-a", "127.0.104.1", 3306, "p" * 32, 99)],
        repo=backupjobs.Repo("r", "rest:https://x", "pw")))
    assert jobs.decode(jobs.Job, jobs.encode(job)) == job


def test_an_unknown_action_is_an_outcome_not_a_crash() -> None:
    out = agent.handle(jobs.Job(jobs.VERSION, "pitr", binlog=binlogjobs.BinlogJob("nope")), "/nonexistent")
    assert out.binlog is not None and not out.binlog.ok and "unknown action" in out.binlog.message


def test_server_ids_are_the_address_and_archivers_differ() -> None:
    assert pbinlog.server_id("127.0.104.1") == (127 << 24) + (104 << 8) + 1
    ids = {pbinlog.archiver_id(a, "pm-a") for a in ("pm-a-bk", "pm-b")}
    assert len(ids) == 2 and all(0 < i < 2**32 for i in ids)
    with pytest.raises(ValueError):
        pbinlog.archiver_id("pm-b; rm", "pm-a")


def test_the_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = pbinlog.password(tmp_path, "pm-a")
    assert first == pbinlog.password(tmp_path, "pm-a") != pbinlog.password(tmp_path, "pm-b")
    f = tmp_path / "secrets" / "binlog" / "pm-a.json"
    assert f.stat().st_mode & 0o777 == 0o600 and (f.parent.stat().st_mode & 0o777) == 0o700
    assert agent.PASSWORD.match(first)


def test_the_template_gives_the_server_id_provisioning_computes() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: f"# {text}"
    env.filters["mandatory"] = lambda value: value
    text = env.get_template("mariadb.cnf.j2").render(
        ansible_managed="managed", tenantctl_address="127.0.104.1", tenantctl_mariadb_innodb_buffer_pool_size="64M",
        tenantctl_mariadb_performance_schema="off")
    conf = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    assert int(conf["server-id"]) == pbinlog.server_id("127.0.104.1")
    assert conf["log-bin"] == pbinlog.BASENAME and conf["binlog_format"] == "ROW"
    assert int(conf["expire_logs_days"]) == pbinlog.EXPIRE_DAYS


def test_the_role_and_the_agent_use_the_names_provisioning_defines() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "pitr-mariadb.yml").read_text())
    text = yaml.safe_dump(tasks)
    for value in (pbinlog.USER, pbinlog.ARCHIVE_ROOT, pbinlog.ETC):
        assert value in text
    init = (ROLE / "templates" / "tenantctl-binlog.init.j2").read_text()
    assert agent.SUPERVISOR in init and f"{pbinlog.ETC}/sources.json" in init and f"USER={pbinlog.USER}" in init
    assert (agent.USER, agent.SERVICE, agent.ROOT, agent.ETC) == (pbinlog.USER, pbinlog.SERVICE,
                                                                  pbinlog.ARCHIVE_ROOT, pbinlog.ETC)
    assert agent._LOGIN_OF_ARCHIVERS == pbinlog.LOGIN


def test_archivers_are_the_own_region_and_the_first_copy_region() -> None:
    from controller.drivers.backup import topology
    from controller.drivers.context import Context, Region, Server
    ctx = Context(Path("/nonexistent"), {
        "db": Server("db", "a", "docker", "127.0.104.1", ("db-mariadb",), ()),
        "bk-a": Server("bk-a", "a", "docker", "127.0.104.2", ("backup",), ()),
        "bk-b": Server("bk-b", "b", "docker", "127.0.105.1", ("backup",), ()),
        "bk-c": Server("bk-c", "c", "docker", "127.0.105.2", ("backup",), ()),
    }, {"a": Region("a", "UTC", ("all",)), "b": Region("b", "UTC", ("all",)), "c": Region("c", "UTC", ("all",))})
    assert binlog.archivers(topology.Topology.of(ctx), "db") == [("a", "bk-a"), ("b", "bk-b")]


def test_a_failed_grant_never_reports_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "S3cretS3cretS3cretS3cret"
    answers = iter(["1\n", "", None])

    def fake_mariadb(statement: str, timeout: float = 60) -> str:  # FAKE client: the grant fails
        answer = next(answers)
        if answer is None:
            raise agent.Problem(f"ERROR 1064: near 'IDENTIFIED BY '{secret}'' at line 1")
        return answer
    monkeypatch.setattr(agent, "_mariadb", fake_mariadb)
    out = agent.handle(jobs.Job(jobs.VERSION, "pitr", binlog=binlogjobs.BinlogJob(
        "grant", login="tenantctl_binlog", password=secret, hosts=["127.0.104.2"])), "/nonexistent")
    assert out.binlog is not None and not out.binlog.ok
    assert secret not in out.binlog.message and "***" in out.binlog.message


@pytest.mark.parametrize(("database", "delta", "match"), [
    pytest.param("app_1", dt.timedelta(hours=1), "in the future", id="future"),
    pytest.param("app`; DROP", -dt.timedelta(hours=1), "not a database name", id="bad-name"),
])
def test_recover_refuses_before_touching_anything(database: str, delta: dt.timedelta, match: str) -> None:
    nothing: Any = None  # no topology, pool or store: any use of them would fail
    with pytest.raises(binlog.OutOfRange, match=match):
        binlog.recover(nothing, nothing, nothing, "pm-a", "a.example", database, dt.datetime.now(dt.UTC) + delta)


def test_a_restarted_supervisor_is_waited_for_not_judged_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``start-stop-daemon --background`` writes the pidfile from its forked child: right
    after ``service restart`` the status may still say "not running" on a loaded server
    (the CI's "tenantctl-binlog does not run" of stop 22). The answers here are a fake's."""
    answers = iter([False, False, True])
    monkeypatch.setattr(agent, "_running", lambda: next(answers))
    monkeypatch.setattr(agent.time, "sleep", lambda _s: None)
    assert agent._started(wait=5.0)
    monkeypatch.setattr(agent, "_running", lambda: False)
    assert not agent._started(wait=0.0)
