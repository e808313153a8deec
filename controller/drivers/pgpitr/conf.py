"""pgBackRest and PostgreSQL configuration for PITR, rendered from validated values.

One stanza per db-postgresql server (named after it), archived into up to two
repositories: index 1 = its region's repository server, index 2 = the repository of
the first region it copies to (``drivers.backup.topology``). Each host gets one
``pgbackrest.conf`` holding a section for every stanza it takes part in: on the db
host ``pg1-path`` and each repository (a local path when the host is that repository,
else ``repoN-host`` over TLS); on a repository host ``repoN-path`` with the *same*
index (pgBackRest refuses another one: ``key '2' is not valid for 'repo' option``) and
``pg1-host`` over TLS (backups run there). Every host runs ``pgbackrest server`` on its
own address; ``tls-server-auth`` lets each peer (client CN = its name) reach only the
stanzas it shares, and a repository host also lets the db hosts of its own region read
the stanzas it holds for another region (``Stanza.readers``: after the loss of that
region they recover its databases with ``recovery``, a configuration naming that one
repository). A repository host that does not answer (a lost region's, evacuated or
not) is left out of the db hosts' configuration until it answers again (``answering``):
archiving into the other repository goes on (an archive-push that cannot reach one of
its repositories fails the segment for all of them). Nothing unchecked reaches the text:
names are DNS labels, addresses parse as IP addresses, numbers are ints. Pure functions
(no I/O).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from controller.agent import pgpitrjobs as pj
from controller.model import kinds

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: bytes of WAL the async archiver may queue while a repository is down before it
#: drops segments (the primary never fills its disk; the PITR chain then has a gap)
QUEUE_MAX = "4GiB"


def name(value: str) -> str:
    """``value`` when it is a DNS label (server and stanza names), else ValueError."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"not a server name: {value!r}")
    return value


def address(value: str) -> str:
    return str(ipaddress.ip_address(value))


@dataclass(frozen=True)
class Repo:
    index: int
    region: str
    host: str


@dataclass(frozen=True)
class Stanza:
    name: str
    db_host: str
    repos: tuple[Repo, ...]
    retention_full: int = 3
    retention_diff: int = 15
    #: the db host's PostgreSQL major version (its release's: ``kinds.RELEASES``; the
    #: default release's when not given), which names its cluster's data directory
    pg_version: str = kinds.RELEASES[kinds.DEFAULT_OS].postgresql
    #: (db host, repository index): other db hosts that may read this stanza from that
    #: repository (a recovery in the repository's region after the loss of the
    #: stanza's: ``recovery``)
    readers: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        try:
            pj.major(self.pg_version)
        except ValueError as exc:
            raise ValueError(f"stanza {self.name}: PostgreSQL version {self.pg_version!r}") from exc
        name(self.name)
        name(self.db_host)
        for reader, index in self.readers:
            name(reader)
            if index not in {r.index for r in self.repos}:
                raise ValueError(f"stanza {self.name}: reader {reader} of repository {index}, which it has not")
        for r in self.repos:
            name(r.host)
            if r.index not in (1, 2):
                raise ValueError(f"repository index {r.index} is not 1 or 2")
        if not self.repos or len({r.index for r in self.repos}) != len(self.repos):
            raise ValueError(f"stanza {self.name}: repositories {self.repos!r}")
        if not (1 <= self.retention_full <= 100 and 1 <= self.retention_diff <= 1000):
            raise ValueError(f"stanza {self.name}: retention {self.retention_full}/{self.retention_diff}")

    def hosts(self) -> set[str]:
        return {self.db_host, *(r.host for r in self.repos)}

    def repo(self, index: int) -> Repo:
        return next(r for r in self.repos if r.index == index)


def pg_data(version: str) -> str:
    """The data directory of Debian's ``main`` cluster of PostgreSQL ``version``."""
    return pj.pg_data(version)


def without(stanza: Stanza, down: Collection[str]) -> Stanza:
    """``stanza`` archiving only into its repositories whose host is not in ``down``
    (each keeps its index: pgBackRest names a repository by it on both sides), with the
    readers of those only. Unchanged when none of them is down, when all are (nothing
    to archive into: its archiving fails and says why) or when its db host is (it does
    not archive; its repositories keep serving its archive to recoveries)."""
    repos = tuple(r for r in stanza.repos if r.host not in down)
    if stanza.db_host in down or not repos or len(repos) == len(stanza.repos):
        return stanza
    kept = {r.index for r in repos}
    return replace(stanza, repos=repos, readers=tuple((h, i) for h, i in stanza.readers if i in kept))


def answering(stanzas: Iterable[Stanza], down: Collection[str]) -> list[Stanza]:
    """Every stanza with the repositories that answer (``without``): what the db hosts'
    configurations name while the hosts of ``down`` do not answer."""
    return [without(st, down) for st in stanzas]


def involved(host: str, stanzas: Iterable[Stanza]) -> list[Stanza]:
    return sorted((s for s in stanzas if host in s.hosts()), key=lambda s: s.name)


def peers(host: str, stanzas: Iterable[Stanza]) -> dict[str, list[str]]:
    """Client CN -> the stanzas it may use on ``host``'s TLS server."""
    out: dict[str, set[str]] = {}
    for s in involved(host, stanzas):
        for other in s.hosts() - {host}:
            if host == s.db_host or other == s.db_host:  # repository hosts never talk to each other
                out.setdefault(other, set()).add(s.name)
        mine = {r.index for r in s.repos if r.host == host}
        for reader, index in s.readers:
            if index in mine and reader not in (host, s.db_host):
                out.setdefault(reader, set()).add(s.name)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _tls(prefix: str) -> list[str]:
    return [f"{prefix}-ca-file={pj.TLS_CA}", f"{prefix}-cert-file={pj.TLS_CERT}", f"{prefix}-key-file={pj.TLS_KEY}"]


def render(host: str, addr: str, stanzas: Sequence[Stanza]) -> str:
    """``host``'s ``pgbackrest.conf`` (its TLS server on ``addr``)."""
    name(host)
    lines = ["# tenantctl: pgBackRest for PostgreSQL PITR (issue 10, BKP-4); written by the controller", "[global]",
             "log-level-console=warn", "log-level-file=info", f"log-path={pj.LOG_PATH}", "compress-type=zst",
             "start-fast=y", "process-max=2", "archive-async=y", f"spool-path={pj.SPOOL_PATH}",
             f"archive-push-queue-max={QUEUE_MAX}", f"tls-server-address={address(addr)}",
             f"tls-server-port={pj.TLS_PORT}", *_tls("tls-server")]
    for client, names in peers(host, stanzas).items():
        lines.append(f"tls-server-auth={client}={','.join(names)}")
    for s in involved(host, stanzas):
        lines += ["", f"[{s.name}]"]
        if host == s.db_host:
            lines += [f"pg1-path={pg_data(s.pg_version)}", f"pg1-port={pj.PG_PORT}", f"pg1-socket-path={pj.PG_SOCKET}"]
        else:
            lines += [f"pg1-host={s.db_host}", "pg1-host-type=tls", f"pg1-host-port={pj.TLS_PORT}",
                      *_tls("pg1-host"), f"pg1-path={pg_data(s.pg_version)}", f"pg1-port={pj.PG_PORT}"]
        for r in sorted(s.repos, key=lambda r: r.index):
            n = f"repo{r.index}"
            if host == r.host:
                lines += [f"{n}-path={pj.REPO_PATH}", f"{n}-retention-full={s.retention_full}",
                          f"{n}-retention-diff={s.retention_diff}"]
            elif host == s.db_host:
                lines += [f"{n}-host={r.host}", f"{n}-host-type=tls", f"{n}-host-port={pj.TLS_PORT}",
                          *_tls(f"{n}-host"), f"{n}-path={pj.REPO_PATH}"]
    return "\n".join(lines) + "\n"


def pg_conf(stanza: str) -> str:
    """The cluster's archiving settings (``archive_mode`` needs a restart)."""
    return ("# tenantctl: WAL archiving into pgBackRest (issue 10, BKP-4); written by the controller\n"
            "wal_level = replica\narchive_mode = on\narchive_timeout = 60\n"
            f"archive_command = 'pgbackrest --stanza={name(stanza)} archive-push %p'\n")


def hosts_entries(host: str, stanzas: Sequence[Stanza], addresses: Mapping[str, str]) -> dict[str, str]:
    """The peers ``host`` must resolve by name (certificates carry names, not addresses)."""
    wanted = {p for s in involved(host, stanzas) for p in s.hosts()}
    return {p: address(addresses[p]) for p in sorted(wanted)}


def recovery(stanza: Stanza, host: str, index: int) -> str:
    """The ``pgbackrest.conf`` with which ``host`` (a db host, not necessarily the
    stanza's: after the loss of its region, one of ``readers``) restores ``stanza`` from
    its repository ``index`` alone (a local path when ``host`` is that repository's
    host, else over TLS). The data directory is the command's (``--pg1-path``)."""
    name(host)
    repo = stanza.repo(index)
    lines = ["# tenantctl: a recovery of another server's stanza (issue 10, DR-1); written by the controller",
             "[global]", "log-level-console=warn", "log-level-file=info", f"log-path={pj.LOG_PATH}", "",
             f"[{stanza.name}]"]
    n = f"repo{repo.index}"
    if host == repo.host:
        lines.append(f"{n}-path={pj.REPO_PATH}")
    else:
        lines += [f"{n}-host={repo.host}", f"{n}-host-type=tls", f"{n}-host-port={pj.TLS_PORT}",
                  *_tls(f"{n}-host"), f"{n}-path={pj.REPO_PATH}"]
    return "\n".join(lines) + "\n"
