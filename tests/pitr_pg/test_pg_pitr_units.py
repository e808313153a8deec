"""PostgreSQL PITR without servers: the pgBackRest configuration rendered from the
topology (only validated text in it), ``pgbackrest info`` JSON parsing and the choice of
a base backup, the agent's pure helpers (``/etc/hosts`` block, recovery log, waiting
segments), and the TLS identities checked with openssl."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from controller.drivers.backup import pgpitr, topology
from controller.drivers.context import Context, Region, Server
from controller.drivers.pgpitr import agent, conf, info
from controller.provisioning import backup as backup_secrets
from controller.provisioning import pitr as pitr_secrets


def topo(tmp_path: Path) -> topology.Topology:
    servers = {
        "db-a": Server("db-a", "eu", "docker", "127.0.102.1", ("db-postgresql", "web"), ()),
        "db-c": Server("db-c", "eu", "docker", "127.0.102.3", ("db-postgresql",), ()),
        "bk-a": Server("bk-a", "eu", "docker", "127.0.102.2", ("backup",), ()),
        "bk-b": Server("bk-b", "us", "docker", "127.0.103.1", ("backup",), ()),
        "web-b": Server("web-b", "us", "docker", "127.0.103.2", ("web",), ()),
    }
    return topology.Topology.of(Context(tmp_path, servers, {"eu": Region("eu"), "us": Region("us")}))


def lines(text: str, section: str) -> list[str]:
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("["):
            inside = line == f"[{section}]"
        elif inside and line:
            out.append(line)
    return out


def test_stanzas_follow_the_topology(tmp_path: Path) -> None:
    t = topo(tmp_path)
    st = pgpitr.stanza_of(t, "db-a", keep_daily=15)
    assert st == conf.Stanza("db-a", "db-a", (conf.Repo(1, "eu", "bk-a"), conf.Repo(2, "us", "bk-b")), 4, 15)
    assert [s.name for s in pgpitr.stanzas(t)] == ["db-a", "db-c"]


@pytest.mark.parametrize(("keep", "expected"), [
    pytest.param(1, (2, 1), id="one-day"),
    pytest.param(7, (2, 7), id="a-week"),
    pytest.param(15, (4, 15), id="plan-default"),
])
def test_retention_keeps_keep_daily_days(keep: int, expected: tuple[int, int]) -> None:
    full, diff = pgpitr.retention(keep)
    assert (full, diff) == expected
    assert (full - 1) * 7 >= keep  # weekly fulls: the oldest kept full is at least keep days old


def test_db_host_config_reaches_both_repositories_over_tls(tmp_path: Path) -> None:
    every = pgpitr.stanzas(topo(tmp_path))
    text = conf.render("db-a", "127.0.102.1", every)
    g = lines(text, "global")
    assert "tls-server-address=127.0.102.1" in g and "archive-async=y" in g and "start-fast=y" in g
    assert [x for x in g if x.startswith("tls-server-auth")] == ["tls-server-auth=bk-a=db-a", "tls-server-auth=bk-b=db-a"]
    sec = lines(text, "db-a")
    assert "pg1-path=/var/lib/postgresql/15/main" in sec
    assert {"repo1-host=bk-a", "repo1-host-type=tls", "repo2-host=bk-b", "repo2-path=/var/lib/pgbackrest"} <= set(sec)
    assert "[db-c]" not in text  # another db server's stanza is none of its business


def test_repository_host_config_keeps_the_stanzas_index(tmp_path: Path) -> None:
    every = pgpitr.stanzas(topo(tmp_path))
    text = conf.render("bk-b", "127.0.103.1", every)
    assert [x for x in lines(text, "global") if x.startswith("tls-server-auth")] == [
        "tls-server-auth=db-a=db-a", "tls-server-auth=db-c=db-c"]
    sec = lines(text, "db-a")
    assert "repo2-path=/var/lib/pgbackrest" in sec and "repo2-retention-full=4" in sec
    assert not any(x.startswith("repo1") for x in sec)
    assert {"pg1-host=db-a", "pg1-host-type=tls", "pg1-host-port=8432"} <= set(sec)


def test_repository_on_the_db_host_is_a_local_path() -> None:
    st = conf.Stanza("db-a", "db-a", (conf.Repo(1, "eu", "db-a"), conf.Repo(2, "us", "bk-b")))
    sec = lines(conf.render("db-a", "127.0.102.1", [st]), "db-a")
    assert "repo1-path=/var/lib/pgbackrest" in sec and not any(x.startswith("repo1-host") for x in sec)


@pytest.mark.parametrize("bad", [
    pytest.param("db-a\nrepo1-path=/etc", id="newline"),
    pytest.param("db_a", id="underscore"),
    pytest.param("Db-a", id="upper-case"),
    pytest.param("db-a=x", id="equals"),
    pytest.param("", id="empty"),
])
def test_names_are_checked_before_rendering(bad: str) -> None:
    with pytest.raises(ValueError):
        conf.Stanza(bad, bad, (conf.Repo(1, "eu", "bk-a"),))
    with pytest.raises(ValueError):
        conf.pg_conf(bad)
    with pytest.raises(ValueError):
        conf.render(bad, "127.0.0.1", [])


def test_addresses_are_checked() -> None:
    with pytest.raises(ValueError):
        conf.render("db-a", "127.0.0.1\ntls-server-auth=x=y", [])


def test_pg_conf_archives_through_the_stanza() -> None:
    text = conf.pg_conf("db-a")
    assert "archive_command = 'pgbackrest --stanza=db-a archive-push %p'" in text
    assert "archive_timeout = 60" in text and "archive_mode = on" in text


def backup_doc(label: str, kind: str, repo: int, start: int, stop: int, error: bool = False) -> dict[str, Any]:
    return {"archive": {"start": "000000010000000000000004", "stop": "000000010000000000000004"},
            "backrest": {"format": 5, "version": "2.45"}, "database": {"id": 1, "repo-key": repo},
            "error": error, "info": {"delta": 1, "repository": {"delta": 1, "size": 1}, "size": 1},
            "label": label, "lsn": {"start": "0/4000028", "stop": "0/4000100"}, "prior": None, "reference": None,
            "timestamp": {"start": start, "stop": stop}, "type": kind}


def info_doc(repo2_code: int = 0) -> str:
    return json.dumps([{
        "archive": [{"database": {"id": 1, "repo-key": 1}, "id": "15-1", "max": "000000010000000000000009",
                     "min": "000000010000000000000003"},
                    {"database": {"id": 1, "repo-key": 2}, "id": "15-1", "max": "000000010000000000000009",
                     "min": "000000010000000000000003"}],
        "backup": [backup_doc("20261130-100000F", "full", 1, 1_796_032_800, 1_796_032_810),
                   backup_doc("20261130-100000F", "full", 2, 1_796_032_820, 1_796_032_830),
                   backup_doc("20261130-100000F_20261130-110000D", "diff", 1, 1_796_036_400, 1_796_036_405),
                   backup_doc("20261130-100000F_20261130-120000D", "diff", 1, 1_796_040_000, 1_796_040_005, True)],
        "cipher": "none", "db": [{"id": 1, "repo-key": 1, "system-id": 7, "version": "15"}], "name": "db-a",
        "repo": [{"cipher": "none", "key": 1, "status": {"code": 0, "message": "ok"}},
                 {"cipher": "none", "key": 2, "status": {"code": repo2_code, "message": "ok" if not repo2_code else
                                                         "[TlsError] unable to connect"}}],
        "status": {"code": 0, "lock": {"backup": {"held": False}}, "message": "ok"}}])


def at(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def test_info_is_parsed() -> None:
    st = info.parse(info_doc(), "db-a")
    assert [b.label for b in st.backups][:2] == ["20261130-100000F", "20261130-100000F"]
    assert st.archive == {1: ("000000010000000000000003", "000000010000000000000009"),
                          2: ("000000010000000000000003", "000000010000000000000009")}
    oldest = st.oldest()
    assert oldest is not None and oldest.stop == at(1_796_032_810) and oldest.lsn_stop == "0/4000100"
    newest = st.newest()
    assert newest is not None and newest.label == "20261130-100000F_20261130-110000D"  # the failed one is skipped


@pytest.mark.parametrize(("target", "repos", "expected"), [
    pytest.param(1_796_032_809, [1, 2], None, id="before-the-oldest-backup-ended"),
    pytest.param(1_796_032_811, [1, 2], ("20261130-100000F", 1), id="after-the-full"),
    pytest.param(1_796_036_406, [1, 2], ("20261130-100000F_20261130-110000D", 1), id="newest-diff-before"),
    pytest.param(1_796_050_000, [1, 2], ("20261130-100000F_20261130-110000D", 1), id="failed-backup-never-chosen"),
    pytest.param(1_796_032_825, [2, 1], ("20261130-100000F", 1), id="repo2-backup-not-ended-yet-falls-back"),
    pytest.param(1_796_036_406, [2, 1], ("20261130-100000F", 2), id="preferred-repository-first"),
])
def test_base_backup_for_a_target(target: int, repos: list[int], expected: tuple[str, int] | None) -> None:
    got = info.parse(info_doc(), "db-a").base_for(at(target), repos)
    assert ((got.label, got.repo) if got else None) == expected


def test_a_repository_that_fails_is_skipped() -> None:
    got = info.parse(info_doc(repo2_code=99), "db-a").base_for(at(1_796_036_406), [2, 1])
    assert got is not None and got.repo == 1


@pytest.mark.parametrize("text", [
    pytest.param("not json", id="not-json"),
    pytest.param("{}", id="not-a-list"),
    pytest.param("[]", id="no-stanza"),
    pytest.param(info_doc().replace('"20261130-100000F"', '"../../etc"', 1), id="bad-label"),
    pytest.param(info_doc().replace('"start": 1796032800', '"start": "yesterday"', 1), id="bad-time"),
    pytest.param(info_doc().replace('"000000010000000000000009"', '"0009"', 1), id="bad-wal"),
])
def test_malformed_info_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        info.parse(text, "db-a")


def test_target_text_is_utc_with_microseconds() -> None:
    t = dt.datetime(2026, 11, 30, 11, 42, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert pgpitr.target_text(t) == "2026-11-30 10:42:00.123456+00"
    with pytest.raises(ValueError):
        pgpitr.target_text(dt.datetime(2026, 11, 30))  # naive on purpose


def test_hosts_block_is_replaced_not_appended() -> None:
    base = "127.0.0.1 localhost\n"
    once = agent.hosts_text(base, {"bk-b": "127.0.103.1", "bk-a": "127.0.102.2"})
    assert once == (f"127.0.0.1 localhost\n{agent.BEGIN}\n127.0.102.2 bk-a\n127.0.103.1 bk-b\n{agent.END}\n")
    assert agent.hosts_text(once, {"bk-b": "127.0.103.1", "bk-a": "127.0.102.2"}) == once
    assert agent.hosts_text(once, {}) == base
    with pytest.raises(agent.Problem):
        agent.hosts_text(base, {"bk-a\n1.2.3.4 evil": "127.0.0.1"})


def test_where_recovery_stopped_is_read_from_the_log() -> None:
    log = ("2026-11-30 16:40:01.1 UTC [77] LOG:  starting point-in-time recovery to 2026-11-30 16:40:00.5+00\n"
           "2026-11-30 16:40:02.0 UTC [77] LOG:  recovery stopping before commit of transaction 745, "
           "time 2026-11-30 16:40:02.004+00\n"
           "2026-11-30 16:40:02.0 UTC [77] LOG:  redo done at 0/5000A60 system usage: CPU: user: 0.00 s\n"
           "2026-11-30 16:40:02.0 UTC [77] LOG:  last completed transaction was at log time "
           "2026-11-30 16:40:00.1+00\n")
    assert agent.stopped_at(log) == ("recovery stopping before commit of transaction 745, time 2026-11-30 "
                                     "16:40:02.004+00; redo done at 0/5000A60; last completed transaction was at "
                                     "log time 2026-11-30 16:40:00.1+00")


def test_waiting_seconds_is_the_oldest_ready_segment(tmp_path: Path) -> None:
    assert agent.waiting_seconds(str(tmp_path / "missing"), 1000.0) == 0.0
    (tmp_path / "000000010000000000000007.done").touch()
    assert agent.waiting_seconds(str(tmp_path), 1000.0) == 0.0  # everything archived
    for name, mtime in (("000000010000000000000008.ready", 940), ("000000010000000000000009.ready", 990)):
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (mtime, mtime))
    assert agent.waiting_seconds(str(tmp_path), 1000.0) == 60.0


def test_tls_identity_is_signed_by_the_backup_ca_and_kept(tmp_path: Path) -> None:
    cert_pem, key_pem = pitr_secrets.identity(tmp_path, "bk-a")
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["bk-a"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    folder = tmp_path / "secrets" / "pitr"
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {"bk-a.crt": 0o600, "bk-a.key": 0o600, ".lock": 0o600}
    (tmp_path / "leaf.pem").write_text(cert_pem)
    done = subprocess.run(["openssl", "verify", "-CAfile", str(backup_secrets.ca(tmp_path)), "-purpose", "sslclient",
                           str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert pitr_secrets.identity(tmp_path, "bk-a") == (cert_pem, key_pem)  # kept, not made again
    with pytest.raises(ValueError):
        pitr_secrets.identity(tmp_path, "../bk-a")


VERIFY_OK = """2026-11-30 17:02:48.100 P00   INFO: verify command begin 2.45: --repo=1 --stanza=db-a
2026-11-30 17:02:48.900 P00   INFO: stanza: db-a
                                    status: ok
                                    archiveId: 15-1, total WAL checked: 9, total valid WAL: 9
                                      missing: 0, checksum invalid: 0, size invalid: 0, other: 0
                                    backup: 20261130-170234F, status: valid, total files checked: 970, total valid files: 970
                                      missing: 0, checksum invalid: 0, size invalid: 0, other: 0
2026-11-30 17:02:48.901 P00   INFO: verify command end: completed successfully"""


@pytest.mark.parametrize(("report", "problems"), [
    pytest.param(VERIFY_OK, 0, id="sound"),
    pytest.param(VERIFY_OK.replace("status: ok", "status: error"), 1, id="stanza-error"),
    pytest.param(VERIFY_OK.replace("checksum invalid: 0, size invalid: 0, other: 0", "checksum invalid: 1, size "
                                   "invalid: 0, other: 0", 1), 1, id="corrupt-wal"),
    pytest.param(VERIFY_OK.replace("status: valid", "status: invalid"), 1, id="invalid-backup"),
    pytest.param(VERIFY_OK.replace("missing: 0", "missing: 2", 1), 1, id="missing-wal"),
])
def test_verify_report_problems_are_found(report: str, problems: int) -> None:
    """``pgbackrest verify`` exits 0 even when it found errors: its report is read."""
    assert len(agent.verify_problems(report)) == problems
