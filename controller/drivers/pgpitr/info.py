"""What ``pgbackrest info --output=json`` says about one stanza, parsed and checked.

Pure functions (no I/O): the base backups per repository (label, type, start/stop
times, stop LSN), the WAL range per repository, and each repository's status. Anything
that does not have the expected shape is a ``ValueError`` naming the field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_LABEL = re.compile(r"^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$")
_WAL = re.compile(r"^[0-9A-F]{24}$")


@dataclass(frozen=True)
class Backup:
    label: str
    type: str
    repo: int
    start: dt.datetime
    stop: dt.datetime
    lsn_stop: str
    error: bool = False


@dataclass(frozen=True)
class Stanza:
    name: str
    status: int
    message: str
    #: oldest first
    backups: tuple[Backup, ...]
    #: repository index -> (oldest, newest) archived WAL segment
    archive: dict[int, tuple[str, str]]
    #: repository index -> (status code, message); 0 is ok
    repos: dict[int, tuple[int, str]]

    def usable(self, repo: int) -> list[Backup]:
        return [b for b in self.backups if b.repo == repo and not b.error]

    def oldest(self) -> Backup | None:
        good = [b for b in self.backups if not b.error]
        return min(good, key=lambda b: b.stop) if good else None

    def newest(self) -> Backup | None:
        good = [b for b in self.backups if not b.error]
        return max(good, key=lambda b: b.stop) if good else None

    def base_for(self, at: dt.datetime, repos: Sequence[int]) -> Backup | None:
        """The newest backup that ended before ``at``, from the first of ``repos`` (in
        order of preference) that holds one and reports ok."""
        for r in repos:
            if self.repos.get(r, (1, ""))[0] != 0:
                continue
            fit = [b for b in self.usable(r) if b.stop < at]
            if fit:
                return max(fit, key=lambda b: b.stop)
        return None


def _get(doc: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(doc, dict) or key not in doc:
        raise ValueError(f"pgbackrest info: {where}.{key} missing")
    value = doc[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ValueError(f"pgbackrest info: {where}.{key} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _time(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def parse(text: str, stanza: str) -> Stanza:
    """``stanza``'s entry of ``pgbackrest info --output=json``."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"pgbackrest info: not JSON ({exc})") from exc
    if not isinstance(doc, list):
        raise ValueError("pgbackrest info: expected a list of stanzas")
    entry = next((s for s in doc if isinstance(s, dict) and s.get("name") == stanza), None)
    if entry is None:
        raise ValueError(f"pgbackrest info: no stanza {stanza!r}")
    status = _get(entry, "status", dict, "stanza")
    backups = []
    for i, b in enumerate(_get(entry, "backup", list, "stanza")):
        where = f"backup[{i}]"
        label = _get(b, "label", str, where)
        if not _LABEL.match(label):
            raise ValueError(f"pgbackrest info: {where}.label {label!r}")
        kind = _get(b, "type", str, where)
        if kind not in ("full", "diff", "incr"):
            raise ValueError(f"pgbackrest info: {where}.type {kind!r}")
        ts = _get(b, "timestamp", dict, where)
        lsn = b.get("lsn") if isinstance(b.get("lsn"), dict) else {}
        backups.append(Backup(label=label, type=kind, repo=_get(_get(b, "database", dict, where), "repo-key", int, where),
                              start=_time(_get(ts, "start", int, where)), stop=_time(_get(ts, "stop", int, where)),
                              lsn_stop=str(lsn.get("stop") or ""), error=b.get("error") is True))
    archive: dict[int, tuple[str, str]] = {}
    for i, a in enumerate(entry.get("archive") or []):
        lo, hi = a.get("min"), a.get("max")
        if lo is None or hi is None:
            continue
        if not (isinstance(lo, str) and _WAL.match(lo) and isinstance(hi, str) and _WAL.match(hi)):
            raise ValueError(f"pgbackrest info: archive[{i}] min/max {lo!r}/{hi!r}")
        key = _get(_get(a, "database", dict, f"archive[{i}]"), "repo-key", int, f"archive[{i}]")
        old = archive.get(key)
        archive[key] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
    repos = {}
    for i, r in enumerate(entry.get("repo") or []):
        st = _get(r, "status", dict, f"repo[{i}]")
        repos[_get(r, "key", int, f"repo[{i}]")] = (_get(st, "code", int, f"repo[{i}].status"),
                                                    str(st.get("message", "")))
    return Stanza(name=stanza, status=_get(status, "code", int, "stanza.status"),
                  message=str(status.get("message", "")), backups=tuple(sorted(backups, key=lambda b: b.stop)),
                  archive=archive, repos=repos)
