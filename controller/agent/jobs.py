"""The job format between the controller and the agent: versioned dataclasses.

A job goes to the server as ``job.json`` (``encode``), the agent decodes it (``decode``
checks every field's type and refuses unknown fields), does it, and prints one
``Outcome``. ``VERSION`` moves whenever a field's meaning changes; an agent refuses a
job of another version (the controller ships the agent that matches its own code, keyed
by digest, so both sides always agree).

Fencing (issue 10 item 4, DR-1; ``controller.agent.fence``): a job that writes a
subscription's things on a server carries that subscription's generation in
``Job.generations``; the agent refuses the parts of the subscriptions it has seen a
newer generation of, and says so in ``Outcome.fenced`` (version 3).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from controller.agent import backupjobs, binlogjobs, pgpitrjobs, usagejobs

VERSION = 3

#: ``apply``, ``check`` (drift; backup: repository check), ``challenges`` (tls); the
#: backup entry's ops (``backupjobs``): ``backup``, ``copy``, ``snapshots``, ``forget``,
#: ``check``, ``restore``, ``drill``, ``logins``; the usage entry's ``usage``
Op = Literal["apply", "check", "challenges", "backup", "copy", "snapshots", "forget", "restore", "drill", "logins", "pitr",
             "usage"]


@dataclass(frozen=True)
class Service:
    """How to reload a service and know it runs the new configuration (``services``)."""

    name: str
    pidfile: str
    signal: str
    #: ``workers``: a new generation of worker processes; ``pidfile``: the master wrote
    #: its pidfile again (php-fpm re-executes itself on USR2)
    ready: Literal["workers", "pidfile"]
    start: list[str]
    #: seconds the new configuration may take to load; longer is a failed reload
    timeout: float = 45.0
    #: ``workers``: what an old worker's command line says once it stopped accepting
    #: connections (nginx: ``is shutting down``); the reload counts once every old worker
    #: says so or is gone (until then it may still serve the old configuration)
    draining: str | None = None


@dataclass(frozen=True)
class File:
    """One managed file: ``src`` (staged in the batch directory) becomes ``dest``;
    ``src`` None removes ``dest``. Writes happen in list order, removals in reverse
    order, so a key is in place before what names it, and gone after it."""

    dest: str
    src: str | None
    mode: int = 0o644


@dataclass(frozen=True)
class User:
    name: str
    home: str


@dataclass(frozen=True)
class Prune:
    """Remove the files of ``dir`` whose name starts with ``prefix`` and that are not in
    ``keep`` (what a subscription no longer has), within the transaction."""

    dir: str
    prefix: str
    keep: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Item:
    """One subscription's part of a transaction."""

    name: str
    action: Literal["ensure", "suspend", "delete"] = "ensure"
    files: list[File] = field(default_factory=list)
    prune: list[Prune] = field(default_factory=list)
    #: text the validator's message may contain that names this item (besides paths)
    marks: list[str] = field(default_factory=list)
    #: sockets that must exist once the services reloaded
    sockets: list[str] = field(default_factory=list)
    #: hosting: the system user, web space entries and document roots to make first
    user: User | None = None
    webspace: list[str] = field(default_factory=list)
    docroots: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Expect:
    """What a drift check expects of one subscription: ``{path: sha256 or None}``."""

    name: str
    expect: dict[str, str | None] = field(default_factory=dict)
    user: User | None = None


@dataclass(frozen=True)
class Job:
    version: int
    op: Op
    #: apply: one transaction over ``items`` (validate once, reload once)
    items: list[Item] = field(default_factory=list)
    validate: list[list[str]] = field(default_factory=list)
    reload: list[Service] = field(default_factory=list)
    #: apply: files shared by every item (the suspended page), installed first
    common: list[File] = field(default_factory=list)
    #: apply: where the web-space skeleton is staged
    skel: str = "skel"
    #: apply (tls): users whose ACME challenge directories are emptied afterwards
    clear: list[str] = field(default_factory=list)
    #: check
    expect: list[Expect] = field(default_factory=list)
    #: challenges (tls): ``{user: {token: key authorization}}``
    put: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the backup entry's ops
    backup: backupjobs.BackupJob | None = None
    #: the pgpitr entry's ops (op ``pitr``)
    pgpitr: pgpitrjobs.PgPitrJob | None = None
    #: the binlog entry's ops (op ``pitr``)
    binlog: binlogjobs.BinlogJob | None = None
    #: the usage entry's op (``usage``: traffic from the access logs, disk of web spaces)
    usage: usagejobs.UsageJob | None = None
    #: fencing (DR-1): subscription -> its generation as the controller knows it, for
    #: every subscription whose things this job writes (``fence.subscriptions``); the
    #: agent refuses the parts of a subscription it has seen a newer generation of
    generations: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Fenced:
    """A subscription's part of a job the agent refused: the server has seen a newer
    generation of it (a newer controller moved it; the sender is stale)."""

    seen: int
    sent: int


@dataclass(frozen=True)
class ItemResult:
    ok: bool
    message: str = ""
    changed: bool = False


@dataclass(frozen=True)
class Recovered:
    """An unfinished transaction found in the journal and rolled back."""

    files: int
    problem: str = ""


@dataclass(frozen=True)
class Outcome:
    """The one JSON document an agent run prints."""

    version: int
    results: dict[str, ItemResult] = field(default_factory=dict)
    reloaded: list[str] = field(default_factory=list)
    drift: dict[str, str] = field(default_factory=dict)
    recovered: Recovered | None = None
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    backup: backupjobs.BackupOutcome | None = None
    pgpitr: pgpitrjobs.PgPitrOutcome | None = None
    binlog: binlogjobs.BinlogOutcome | None = None
    usage: usagejobs.UsageOutcome | None = None
    #: subscriptions whose parts were refused (fencing): never done, never a success
    fenced: dict[str, Fenced] = field(default_factory=dict)


T = TypeVar("T")


def encode(obj: Any) -> Any:
    """A dataclass (nested) as JSON-ready values."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else obj


def decode(cls: type[T], data: Any) -> T:
    """``data`` (parsed JSON) as ``cls``; ``TypeError``/``ValueError`` naming the field
    when it does not fit."""
    out: T = _value(cls, data, cls.__name__)
    return out


def _value(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
        maker: Any = tp
        return maker(**{k: _value(hints[k], v, f"{where}.{k}") for k, v in data.items()})
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        problems = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _value(arg, data, where)
            except (TypeError, ValueError) as exc:
                problems.append(str(exc))
        raise TypeError("; ".join(problems) or f"{where}: unexpected null")
    if origin is Literal:
        if data not in typing.get_args(tp):
            raise ValueError(f"{where}: expected one of {typing.get_args(tp)}, got {data!r}")
        return data
    if origin is list:
        if not isinstance(data, list):
            raise TypeError(f"{where}: expected a list, got {type(data).__name__}")
        (arg,) = typing.get_args(tp)
        return [_value(arg, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected an object, got {type(data).__name__}")
        _k, arg = typing.get_args(tp)
        return {str(k): _value(arg, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise TypeError(f"{where}: expected a number, got {type(data).__name__}")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise TypeError(f"{where}: expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise TypeError(f"{where}: cannot decode {tp!r}")  # pragma: no cover  (a field type not handled)
