"""The PostgreSQL PITR agent's part of the job format (``jobs.Job.pgpitr``,
``jobs.Outcome.pgpitr``): what the controller asks of the ``pgpitr`` entry
(``controller/drivers/pgpitr/agent.py``, pgBackRest) and what it answers, and the fixed
places on a server both sides agree on. Plain frozen dataclasses, decoded by
``jobs.decode``.

Actions: ``configure`` (any host: pgBackRest's configuration, TLS identity, ``/etc/hosts``
entries, its TLS server), ``archive`` (db host: archiving in PostgreSQL, stanza-create,
check), ``backup`` / ``verify`` (repository host, one repository index), ``info`` (db
host: ``pgbackrest info`` and the archiver's state; ``switch`` forces a WAL switch and
waits until it is archived first; ``lag``: the archiver's state only), ``catalog``
(repository host: ``pgbackrest info`` of one repository, the db host may be down),
``recover`` (db host: scratch restore at a time or, ``latest``, to the end of the
archive, one database dumped into the live one; ``recovery_conf``: from another server's
stanza).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: a PostgreSQL major version as a job carries it (``PgPitrJob.pg_version``)
_MAJOR = re.compile(r"^[0-9]{2}$")
PG_SOCKET = "/var/run/postgresql"
PG_PORT = 5432


def major(version: str) -> str:
    """``version`` when it is a PostgreSQL major version (two digits), else ValueError.
    The version is never guessed on a server: the controller sends the db host's, from
    its release (``controller.model.kinds.RELEASES``)."""
    if not isinstance(version, str) or not _MAJOR.match(version):
        raise ValueError(f"not a PostgreSQL major version: {version!r}")
    return version


def pg_data(version: str) -> str:
    """The data directory of Debian's ``main`` cluster of PostgreSQL ``version``."""
    return f"/var/lib/postgresql/{major(version)}/main"


def pg_bin(version: str) -> str:
    """Where ``pg_ctl`` and ``pg_isready`` of PostgreSQL ``version`` are."""
    return f"/usr/lib/postgresql/{major(version)}/bin"


def pg_conf(version: str) -> str:
    """Where the archiving settings go (``conf.d``, included by the cluster's postgresql.conf)."""
    return f"/etc/postgresql/{major(version)}/main/conf.d/tenantctl-pitr.conf"


def scratch(version: str) -> str:
    """The scratch data directory of a recovery (beside the cluster's, same owner)."""
    return f"/var/lib/postgresql/{major(version)}/tenantctl-pitr-scratch"

#: pgBackRest's configuration, TLS identity and directories
CONF = "/etc/pgbackrest/pgbackrest.conf"
TLS_DIR = "/etc/pgbackrest/tls"
TLS_CA = f"{TLS_DIR}/ca.crt"
TLS_CERT = f"{TLS_DIR}/host.crt"
TLS_KEY = f"{TLS_DIR}/host.key"
#: every repository on every repository host (one directory; stanzas are subdirectories)
REPO_PATH = "/var/lib/pgbackrest"
SPOOL_PATH = "/var/spool/pgbackrest"
LOG_PATH = "/var/log/pgbackrest"
#: port of ``pgbackrest server`` on each host's own address
TLS_PORT = 8432
#: the files ``configure`` may write (anything else is refused)
WRITABLE = {CONF: 0o640, TLS_CA: 0o644, TLS_CERT: 0o644, TLS_KEY: 0o600}


def writable(version: str) -> dict[str, int]:
    """The files a job for a db host of PostgreSQL ``version`` may write (``WRITABLE``
    and its cluster's archiving settings), with their modes."""
    return {**WRITABLE, pg_conf(version): 0o644}


@dataclass(frozen=True)
class ConfFile:
    """``src`` (staged in the job's directory) becomes ``dest`` (one of ``WRITABLE``)."""

    dest: str
    src: str


@dataclass(frozen=True)
class PgPitrJob:
    #: configure | archive | backup | verify | info | lag | catalog | recover
    action: str
    #: the stanza (= the db server's name)
    stanza: str = ""
    files: list[ConfFile] = field(default_factory=list)
    #: configure: ``/etc/hosts`` entries (name -> address) of the peers
    hosts: dict[str, str] = field(default_factory=dict)
    #: configure: run ``pgbackrest server`` on ``address``
    serve: bool = False
    address: str = ""
    #: backup / verify / recover: the repository index
    repo: int = 0
    #: backup: full | diff
    kind: str = ""
    #: info: force a WAL switch (after a transaction) and wait until it is archived
    switch: bool = False
    #: recover: ``YYYY-MM-DD HH:MM:SS.ffffff+00``, the backup set, the database
    target: str = ""
    #: recover: no target, up to the end of the archive (its newest archived point)
    latest: bool = False
    #: recover another server's stanza (a lost region's): the pgBackRest configuration
    #: that reads its repository (``drivers.pgpitr.conf.recovery``); empty: this host's
    recovery_conf: str = ""
    backup_set: str = ""
    database: str = ""
    #: archive / info / lag / recover: the db host's PostgreSQL major version (its
    #: release's, ``kinds.RELEASES``), which names the cluster's directories; required
    #: there (the agent refuses a job without it rather than guess)
    pg_version: str = ""


@dataclass(frozen=True)
class PgPitrOutcome:
    ok: bool
    message: str = ""
    changed: bool = False
    #: archive: PostgreSQL was restarted (archive_mode changed)
    restarted: bool = False
    #: info / backup: ``pgbackrest info --output=json`` as printed
    info: str = ""
    #: info: the archiver (pg_stat_archiver; times as Unix epoch seconds) and the oldest
    #: segment waiting (.ready)
    last_archived_wal: str = ""
    last_archived_time: str = ""
    last_failed_time: str = ""
    #: seconds since the oldest completed segment not archived yet (0: none waiting)
    waiting_seconds: float = 0.0
    #: info with switch: the server's time of the switch, epoch seconds (the newest
    #: recoverable time)
    switched_at: str = ""
    #: recover: what the recovery's log said about where it stopped
    stopped_at: str = ""
    seconds: float = 0.0
