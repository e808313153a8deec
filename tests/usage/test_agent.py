"""The usage agent on local files: parsing nginx's ``combined`` lines, reading on from a
cursor, across rotations (renamed, compressed at once or at the next rotation, several
between two runs, removed), and
the whole entry through ``main`` (the job as JSON, the outcome as JSON)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from controller.agent import jobs, main, usagejobs
from controller.drivers.hosting import render
from controller.drivers.usage import agent

from .logs import T0, LogDir, line


class Reader:
    """Runs the agent again and again on one logs directory, keeping the cursor like the
    controller does; sums what each run counted."""

    def __init__(self, logs: LogDir, budget: int = usagejobs.BUDGET) -> None:
        self.logs = logs
        self.cursor: usagejobs.Cursor | None = None
        self.budget = budget
        self.requests = 0
        self.bytes = 0
        self.notes: list[str] = []

    def run(self) -> usagejobs.SiteUsage:
        out = agent.collect(usagejobs.Site("a.test", str(self.logs.path), cursor=self.cursor), self.budget)
        self.cursor = out.cursor
        self.requests += sum(d.requests for d in out.days.values())
        self.bytes += sum(d.bytes for d in out.days.values())
        if out.note:
            self.notes.append(out.note)
        return out

    def exact(self) -> bool:
        return (self.requests, self.bytes) == (self.logs.requests, self.logs.bytes)


@pytest.mark.parametrize(("text", "counted"), [
    pytest.param(line(0, 512), (1, 512), id="combined"),
    pytest.param('10.0.0.1 - - [30/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 304 - "-" "-"\n', (1, 0), id="no-body"),
    pytest.param('10.0.0.1 - bob smith [30/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 7 "-" "-"\n', (1, 7),
                 id="user-with-space"),
    pytest.param('10.0.0.1 - - [30/Nov/2026:10:00:00 +0000] "\\x16\\x03\\x01" 400 157 "-" "-"\n', (1, 157),
                 id="garbage-request"),
    pytest.param('10.0.0.1 - - [30/Nov/2026:10:00:00 +0000] "GET /a\\x22b HTTP/1.1" 200 3 "r" "ua \\x22x\\x22"\n',
                 (1, 3), id="escaped-quotes"),
    pytest.param("not a log line\n", (0, 0), id="garbage-line"),
    pytest.param('10.0.0.1 - - [31/Feb/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 7 "-" "-"\n', (0, 0),
                 id="no-such-day"),
    pytest.param('10.0.0.1 - - [31/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 7 "-" "-"\n', (0, 0),
                 id="no-such-day-utc"),
    pytest.param('10.0.0.1 - - [01/Foo/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 7 "-" "-"\n', (0, 0),
                 id="no-such-month"),
    pytest.param('10.0.0.1 - - [30/Nov/2026:10:00:00] "GET / HTTP/1.1" 200 7 "-" "-"\n', (0, 0), id="no-zone"),
])
def test_combined_lines_count_requests_and_body_bytes(text: str, counted: tuple[int, int]) -> None:
    c = agent.Counter()
    c.add(text.rstrip("\n").encode())
    got = sum(v[0] for v in c.days.values()), sum(v[1] for v in c.days.values())
    assert got == counted and c.skipped == (1 - counted[0])


@pytest.mark.parametrize(("stamp", "day", "iso"), [
    pytest.param("30/Nov/2026:19:36:52 +0000", "2026-11-30", "2026-11-30T19:36:52Z", id="utc"),
    pytest.param("01/Dec/2026:00:30:00 +0100", "2026-11-30", "2026-11-30T23:30:00Z", id="paris-after-midnight"),
    pytest.param("31/Dec/2026:20:00:00 -0500", "2027-01-01", "2027-01-01T01:00:00Z", id="new-york-new-year"),
])
def test_days_are_utc_days(stamp: str, day: str, iso: str) -> None:
    assert agent.when(stamp.encode()) == (day, iso)


def test_the_vhost_logs_in_the_combined_format() -> None:
    vhost = (Path(__file__).resolve().parents[2] / "templates" / "nginx" / "vhost.conf.j2").read_text()
    assert "access.log combined;" in vhost


def test_reading_resumes_at_the_cursor_and_waits_for_a_line_being_written(tmp_path: Path) -> None:
    logs = LogDir(tmp_path / "logs")
    r = Reader(logs)
    logs.write(3)
    assert r.run().lines == 3 and r.exact()
    assert r.run().lines == 0 and r.exact()  # nothing new: nothing counted
    partial = line(99, 40)
    with logs.current.open("a") as fh:
        fh.write(partial[:20])  # nginx in the middle of a write
    assert r.run().lines == 0 and r.exact()
    with logs.current.open("a") as fh:
        fh.write(partial[20:])
    logs.requests, logs.bytes = logs.requests + 1, logs.bytes + 40
    assert r.run().lines == 1 and r.exact()


@pytest.mark.parametrize("compress", [pytest.param(False, id="renamed"), pytest.param(True, id="compressed")])
def test_a_rotated_log_is_finished_from_the_cursor_and_nothing_counts_twice(tmp_path: Path, compress: bool) -> None:
    logs = LogDir(tmp_path / "logs")
    r = Reader(logs)
    logs.write(5, 100)
    r.run()
    logs.write(4, 1000)  # written after the last run, then rotated away
    logs.rotate(compress=compress)
    logs.write(2, 10)
    out = r.run()
    assert out.lines == 6 and r.exact() and not r.notes, (out, r.notes)
    assert r.run().lines == 0 and r.exact()


def test_with_delaycompress_the_renamed_log_is_read_then_found_again_compressed(tmp_path: Path) -> None:
    """templates/logrotate (``compress`` with ``delaycompress``): a rotation renames the
    log and leaves it uncompressed (nginx writes into it until it reopens its logs), the
    next rotation compresses it. A reader after each rotation and one that reads only at
    the end (its cursor's file compressed meanwhile) both count every line once."""
    logs = LogDir(tmp_path / "logs")
    daily, rarely = Reader(logs), Reader(logs)
    logs.write(5, 100)
    daily.run()
    rarely.run()
    logs.write(3, 1000)  # the day's last lines, not read yet
    renamed = logs.rotate(compress=True, delay=True)
    assert renamed.exists() and not renamed.name.endswith(".gz")
    logs.late(2, 7)  # nginx, until it reopened its logs
    logs.write(1, 10)
    assert daily.run().lines == 6 and daily.exact() and not daily.notes
    logs.write(2, 20)
    logs.rotate(compress=True, delay=True)
    assert not renamed.exists() and Path(f"{renamed}.gz").exists()
    logs.write(1, 30)
    assert daily.run().lines == 3 and daily.exact() and not daily.notes
    assert rarely.run().lines == 9 and rarely.exact() and not rarely.notes


@pytest.mark.parametrize(("compress", "expect", "absent"), [
    pytest.param(True, ["    compress\n    delaycompress\n"], ["nocompress"], id="compressed"),
    pytest.param(False, ["    nocompress\n"], ["delaycompress", "    compress\n"], id="uncompressed"),
])
def test_the_logrotate_file_names_and_compresses_as_the_agent_reads(compress: bool, expect: list[str],
                                                                   absent: list[str]) -> None:
    """The subscription's logrotate file (``render.logrotate``): ``dateext`` names the
    agent orders by, compression delayed to the next rotation (nginx writes into the
    renamed log until it reopens its logs: compressed at once, those lines would be lost)."""
    sl = {"hosting": {"enabled": True}, "logs": {"rotate": "daily", "retainMonths": 1, "compress": compress}}
    text = render.logrotate("a.test", sl)
    assert text is not None and "    dateext\n    dateformat -%Y%m%d-%s\n" in text
    for part in expect:
        assert part in text
    for part in absent:
        assert part not in text
    rotated = f"access.log{dt.datetime(2026, 11, 30, tzinfo=dt.UTC).strftime('-%Y%m%d')}-1764460800"
    assert agent._order(rotated, 0.0) == (1764460800.0, rotated)


def test_several_rotations_between_two_runs_are_read_in_order(tmp_path: Path) -> None:
    logs = LogDir(tmp_path / "logs")
    r = Reader(logs)
    logs.write(2)
    r.run()
    for i in range(3):
        logs.write(3, 10 * (i + 1))
        logs.rotate(compress=i != 1)
    logs.write(1)
    r.run()
    assert r.exact() and not r.notes
    logs.write(1)
    logs.rotate(compress=True)
    r.run()
    assert r.exact()


def test_a_cursor_whose_log_was_removed_counts_only_newer_lines(tmp_path: Path) -> None:
    logs = LogDir(tmp_path / "logs")
    r = Reader(logs)
    logs.write(4)
    r.run()
    gone = logs.rotate(compress=True)
    gone.unlink()  # rotated away and removed before the next run (maxage)
    later = T0 + dt.timedelta(minutes=5)
    logs.write(3, 50, at=later)
    out = r.run()
    assert out.lines == 3 and r.requests == 7 and "is gone" in out.note


def test_copytruncate_is_finished_from_the_copy(tmp_path: Path) -> None:
    logs = LogDir(tmp_path / "logs")
    r = Reader(logs)
    logs.write(5)
    r.run()
    logs.write(2, 9)
    copy = logs.path / "access.log-20261130-1764500001"
    copy.write_bytes(logs.current.read_bytes())
    os.truncate(logs.current, 0)
    logs.write(2, 7)
    out = r.run()
    assert out.lines == 4 and r.exact() and not r.notes


def test_a_log_truncated_without_a_copy_counts_only_newer_lines(tmp_path: Path) -> None:
    logs = LogDir(tmp_path / "logs")
    r = Reader(logs)
    logs.write(5)
    r.run()
    os.truncate(logs.current, 0)
    logs.write(2, 7)
    out = r.run()
    assert out.lines == 2 and r.exact() and "is gone" in out.note


def test_a_read_budget_spreads_a_big_log_over_runs_without_losing_a_line(tmp_path: Path) -> None:
    logs = LogDir(tmp_path / "logs")
    logs.write(500, 3)
    logs.rotate(compress=True)
    logs.write(300, 5)
    r = Reader(logs, budget=10_000)
    runs = 0
    while not r.exact():
        r.run()
        runs += 1
        assert runs < 100
    assert runs > 3 and any("budget" in n for n in r.notes)
    assert r.run().lines == 0


def test_logs_read_on_another_server_count_only_newer_lines(tmp_path: Path) -> None:
    logs = LogDir(tmp_path / "logs")
    logs.write(4)  # restored with the web space: counted where they were written
    logs.write(2, 30, at=T0 + dt.timedelta(hours=1))
    moved = usagejobs.Cursor(last=(T0 + dt.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    out = agent.collect(usagejobs.Site("a.test", str(logs.path), cursor=moved), usagejobs.BUDGET)
    assert (out.lines, sum(d.bytes for d in out.days.values())) == (2, 60) and out.note == ""


def test_no_logs_directory_is_no_traffic(tmp_path: Path) -> None:
    out = agent.collect(usagejobs.Site("a.test", str(tmp_path / "none")), usagejobs.BUDGET)
    assert out.days == {} and out.cursor == usagejobs.Cursor() and out.error == ""


def test_the_entry_answers_json_with_days_cursor_and_du(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "srv" / "a.test"
    logs = LogDir(home / "logs")
    logs.write(2, 100)
    logs.write(1, 50, at=T0 + dt.timedelta(days=1))
    (home / "httpdocs").mkdir()
    (home / "httpdocs" / "big").write_bytes(os.urandom(64 * 1024))
    stage = tmp_path / "stage"
    stage.mkdir()
    job = jobs.Job(jobs.VERSION, "usage", usage=usagejobs.UsageJob(
        sites=[usagejobs.Site("a.test", str(logs.path), str(home)),
               usagejobs.Site("b.test", str(tmp_path / "srv" / "b.test" / "logs"), str(tmp_path / "srv" / "b.test"))],
        disk=True))
    (stage / "job.json").write_text(json.dumps(jobs.encode(job)))
    assert main.main("usage", str(stage)) == 0
    out = jobs.decode(jobs.Outcome, json.loads(capsys.readouterr().out))
    assert out.usage is not None
    a, b = out.usage.sites
    assert a.days == {"2026-11-30": usagejobs.Day(2, 200), "2026-12-01": usagejobs.Day(1, 50)}
    assert a.cursor.offset == logs.current.stat().st_size and a.cursor.inode == logs.current.stat().st_ino
    assert a.cursor.last == "2026-12-01T10:00:02Z"
    assert a.disk >= 64 * 1024 and b.disk == -1 and b.days == {}
    assert dataclasses.asdict(a.cursor) == json.loads(json.dumps(dataclasses.asdict(a.cursor)))


def test_the_entry_refuses_other_ops(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not do 'apply'"):
        agent.handle(jobs.Job(jobs.VERSION, "apply"), str(tmp_path))


def test_usage_is_an_entry_of_the_zipapp() -> None:
    from controller.agent import bundle

    assert "usage" in main.ENTRIES
    assert any(p.as_posix().endswith("controller/drivers/usage/agent.py") for p in bundle.sources())
