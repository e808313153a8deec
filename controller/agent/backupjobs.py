"""The backup agent's part of the job format (``jobs.Job.backup``, ``jobs.Outcome.backup``).

What the controller asks of the ``backup`` entry (``controller/drivers/backup/agent.py``)
and what it answers: repositories (secrets included: they travel only in the job's
private stage directory), the units to back up or restore (one per subscription), and
per-part / per-repository results. Plain frozen dataclasses, decoded by ``jobs.decode``.

A restore may fill another subscription than the one backed up (``Part.origin``,
``Part.user``) and may be exact (``Part.exact``): the clone of PLAT-2/PLAT-3.

Snapshot ids are restic's full ids (64 hex digits) in ``PartResult.snapshot`` and
``Snapshot.id``/``original`` (the agent resolves the short id ``backup --json`` prints;
if it ever cannot, it answers the short one). Ids the controller sends may be short:
the agent matches them by prefix (``same_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["db", "files", "settings"]


def same_id(a: str, b: str) -> bool:
    """Two snapshot ids name the same snapshot (a short id is a prefix of the full one)."""
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


@dataclass(frozen=True)
class Repo:
    region: str
    #: ``rest:https://LOGIN:PW@ADDR:8000/LOGIN/main/`` (client) or an absolute path (owner side)
    url: str
    #: the restic repository password
    password: str
    #: True: a local path on the repository server; restic runs as Unix user tenantctl-backup
    owner: bool = False


@dataclass(frozen=True)
class Part:
    kind: Kind
    #: db: the database name; files: ``webspace``; settings: ``settings``
    name: str
    #: db: ``mariadb`` | ``postgresql``
    engine: str = ""
    #: files: the directory to back up / restore; settings: the staged file's name in DIR
    path: str = ""
    #: files: absolute paths left out (e.g. ``<home>/tmp``)
    exclude: list[str] = field(default_factory=list)
    #: postgresql: the role owning the tenant's database (a restore runs ``SET ROLE``)
    owner: str = ""
    #: restore / drill: the snapshot to use
    snapshot: str = ""
    #: drill (files): paths relative to ``path`` to leave out of the digest: the ones
    #: the backup reported in ``PartResult.unstable`` (changed while it ran)
    unstable: list[str] = field(default_factory=list)
    #: restore into another subscription (a clone: PLAT-2 test copies, PLAT-3 demos): what
    #: the snapshot holds under another name: files: the source's home (``path`` is the
    #: target's); db: the source's database name (``name`` is the target's); "" : the same
    origin: str = ""
    #: clone (files): the target's system user; restored files owned by anyone but root
    #: and www-data become this user's (and its group's)
    user: str = ""
    #: exact restore: afterwards the target holds what the snapshot holds and nothing
    #: else: files: every entry of ``path`` but ``tmp`` and ``logs`` replaced; db: the
    #: database dropped and created again empty before the load
    exact: bool = False


@dataclass(frozen=True)
class Unit:
    subscription: str
    parts: list[Part]


@dataclass(frozen=True)
class BackupJob:
    #: restic ``--host`` (the source server's name)
    host: str = ""
    #: restic backup ``--time "YYYY-MM-DD HH:MM:SS"`` (UTC)
    time: str = ""
    #: the staged file in DIR holding the CA bundle (``""`` for owner ops)
    cacert: str = ""
    #: backup: where snapshots go; copy / restore / drill: the repository read from
    local: Repo | None = None
    #: copy: destinations; forget / check / snapshots: the repositories
    targets: list[Repo] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)
    #: extra tags on every snapshot (e.g. ``final``)
    tags: list[str] = field(default_factory=list)
    #: units backed up at once (tenants never all dump at once)
    concurrency: int = 2
    #: forget: daily snapshots kept per group (``--group-by tags``)
    keep_daily: int = 0
    #: forget: snapshots carrying any of these tags are never removed by rotation
    keep_tags: list[str] = field(default_factory=list)
    #: forget: snapshot ids never removed
    protect: list[str] = field(default_factory=list)
    #: forget: subscriptions not rotated (their latest backup failed)
    skip: list[str] = field(default_factory=list)
    #: forget: remove exactly these (owner side; e.g. the purge after LIFE-6)
    forget_ids: list[str] = field(default_factory=list)
    #: forget: prune afterwards
    prune: bool = False
    #: check: ``--read-data-subset`` value, e.g. ``3/7`` (``""``: structure only)
    subset: str = ""
    #: logins: ``{user: htpasswd hash}`` for ``/etc/tenantctl-backup/htpasswd``
    logins: dict[str, str] = field(default_factory=dict)
    #: drill: scratch name suffix (``[a-z0-9]+``)
    scratch: str = ""
    #: drill on a spare server (DR-1): ``""`` the classic drill, ``restore`` a scratch copy
    #: served by the spare's nginx (after removing earlier leftovers when ``dr_fresh``),
    #: ``clean`` remove every scratch copy of every DR drill on the server
    dr: str = ""
    #: dr restore: remove earlier drills' leftovers first (the first job of a drill)
    dr_fresh: bool = False
    #: dr restore: the spare's address the scratch vhost listens on (port 80)
    dr_address: str = ""
    #: dr restore / clean: the database engines the spare runs (``mariadb``, ``postgresql``)
    dr_engines: list[str] = field(default_factory=list)
    #: dr restore: the PHP-FPM version of the scratch copy's pool (the drill's PHP probe
    #: runs there); ``""``: no PHP (the subscription has none, or the spare no PHP-FPM)
    dr_php: str = ""
    #: dr restore: a FAKE fault for tests: the served index file is changed after its
    #: digest was taken (the HTTP comparison must then fail)
    dr_fake_corrupt_index: bool = False


@dataclass(frozen=True)
class TableSum:
    rows: int
    #: order-independent digest of the table's row lines (hex)
    digest: str


@dataclass(frozen=True)
class PartResult:
    subscription: str
    kind: Kind
    name: str
    ok: bool
    error: str = ""
    #: the new snapshot's id (backup) / the one used (restore, drill)
    snapshot: str = ""
    #: restic ``data_added`` (bytes, before compression)
    added: int = 0
    #: bytes read (dump size or the files' bytes)
    total: int = 0
    seconds: float = 0.0
    #: db: per table
    tables: dict[str, TableSum] = field(default_factory=dict)
    #: files: how many files the manifest holds
    files: int = 0
    #: files: aggregate manifest digest; settings: sha256 of the file
    digest: str = ""
    #: restore (settings): the restored file's text (the controller applies it)
    content: str = ""
    #: files (backup): paths relative to ``path`` that changed while restic read them
    #: (left out of ``files``/``digest``; hand them back to a drill as ``Part.unstable``)
    unstable: list[str] = field(default_factory=list)
    #: dr restore (files): the served index file (relative to the document root) and the
    #: sha256 of its restored bytes ("" : the web space has no index file)
    index: str = ""
    index_digest: str = ""
    #: dr restore (files, with ``dr_php``): the restored file the PHP probe hashes (relative
    #: to the document root), the sha256 of its restored bytes, and the PHP version the
    #: probe should report (it answers ``<php_digest> <php_version>`` at ``PROBE_URL``)
    php_file: str = ""
    php_digest: str = ""
    php_version: str = ""


@dataclass(frozen=True)
class Snapshot:
    id: str
    #: as restic prints it
    time: str
    host: str
    tags: list[str]
    paths: list[str]
    #: copied snapshots: the source snapshot's id
    original: str = ""


@dataclass(frozen=True)
class RepoResult:
    region: str
    ok: bool
    error: str = ""
    seconds: float = 0.0
    #: the repository's snapshots (after a forget: what remains)
    snapshots: list[Snapshot] = field(default_factory=list)
    #: forget: ids removed
    removed: list[str] = field(default_factory=list)
    #: copy: bytes added if known
    added: int = 0


@dataclass(frozen=True)
class BackupOutcome:
    parts: list[PartResult] = field(default_factory=list)
    repos: list[RepoResult] = field(default_factory=list)
    #: logins: the htpasswd file was rewritten
    changed: bool = False
