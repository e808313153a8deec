"""The parse cache: the validated documents of every file already read, by content.

An entry holds what the loader made of one file whose documents were all valid: kind,
name, validated spec, labels, annotations, first line, index in the file and digest of
each document. Its name is a keyed digest of the file's bytes, the key being the
tenantctl version, a digest of the model's own source (``controller/model/*.py`` and
``controller/digest.py``) and the versions of pydantic, PyYAML and Python: any byte
changed in the file, or another tenantctl, misses. A file with an error is never kept
(the loader does not ``put`` it), so its errors always come from a fresh read.
Cross-document rules are not cached: they run on every load.

The directory belongs to the state directory (``<state>/parse-cache``): entries are
pickles, written 0600 in a 0700 directory, and read only when owned by this user and
writable by nobody else. An unreadable or foreign entry is a miss and never an error;
a cache that cannot be written (read-only state directory) costs only speed.

A group left entirely at its defaults is written as a reference to one shared
instance (``_Pickler``): documents read from the cache share those frozen instances.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import yaml

import controller
from controller.model import kinds

#: kind, name, spec, labels, annotations, line, index in the file, digest
Entry = tuple[str, str, Any, dict[str, str], dict[str, str], int, int, str]
FORMAT = 1
SUFFIX = ".pickle"
TMP_SUFFIX = ".tmp"


@functools.cache
def _sources() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.blake2b(digest_size=16)
    for p in [*sorted(here.glob("*.py")), here.parent / "digest.py"]:
        h.update(p.name.encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


#: read when the model is imported, not at the first cache use: a process that imported
#: the model and then saw its files change must not key old classes with new sources
_SOURCES_AT_IMPORT = _sources()


def version() -> str:
    """What the cached documents depend on besides the file: a change misses every entry."""
    return (f"tenantctl {controller.__version__} model {_sources()} pydantic {pydantic.VERSION} "
            f"pyyaml {yaml.__version__} python {sys.version_info[0]}.{sys.version_info[1]}")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while many long-lived objects are created at once
    (unpickling 10,000 specs is 6x faster): they hold no cycles to collect.

    On the way out the new objects are moved out of the young generation instead of
    being scanned by the young collection that would otherwise follow at once (a
    quarter of a second at 10,000 subscriptions): into the oldest generation (freeze,
    then unfreeze: two list splices), or, when the process already froze objects on
    purpose (``tenantctl``'s entry point freezes its modules), into the frozen ones
    beside them (unfreezing would thaw those too). Frozen objects are still freed when
    their last reference goes; the documents hold no reference cycles."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            else:
                gc.freeze()
            gc.enable()


class _Pickler(pickle.Pickler):
    """Writes a group left at its defaults (most of a subscription's customerSettings,
    hosting, mail, ...) as a reference to one shared instance: 8x fewer objects to
    rebuild when the entry is read."""

    def reducer_override(self, obj: Any) -> Any:
        # A validated model without any field set was built from ``{}`` or a default
        # factory: it equals the default instance (a model with required fields always
        # has them set).
        if isinstance(obj, pydantic.BaseModel) and not obj.model_fields_set:
            return kinds.default, (type(obj),)
        return NotImplemented


class ParseCache:
    """Entries under ``directory``; ``hits``, ``misses`` and ``writes`` count this load's."""

    def __init__(self, directory: str | Path, *, keep: int = 16) -> None:
        self.directory = Path(directory)
        #: entries not used by this load that are kept (the most recently used)
        self.keep = keep
        self._version = version()
        self._key = hashlib.blake2b(self._version.encode(), digest_size=32).digest()
        self._used: set[str] = set()
        self.hits = self.misses = self.writes = 0

    def key(self, data: bytes) -> str:
        """The entry name of a file with these bytes, for this version of tenantctl."""
        return hashlib.blake2b(data, digest_size=20, key=self._key).hexdigest()

    def get(self, key: str) -> list[Entry] | None:
        """The entries of a file with this key, or None (counted as a miss)."""
        path = self.directory / f"{key}{SUFFIX}"
        self._used.add(path.name)
        entries = self._read(path)
        if entries is None:
            self.misses += 1
            return None
        self.hits += 1
        return entries

    def _read(self, path: Path) -> list[Entry] | None:
        try:
            st = path.stat()
        except OSError:  # absent, or the directory is not one
            return None
        if st.st_uid != os.getuid() or st.st_mode & 0o022:  # written by someone else: not trusted
            return None
        try:
            with path.open("rb") as f, gc_paused():
                header, entries = pickle.load(f)
            if header != (FORMAT, self._version):
                raise ValueError("written by another version")
            os.utime(path)  # recently used: kept by prune()
        except Exception:  # a torn entry is only a miss, and is written again
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return list(entries)

    def put(self, key: str, entries: list[Entry]) -> None:
        """Keep a valid file's entries (atomically: readers see the old entry or the new)."""
        path = self.directory / f"{key}{SUFFIX}"
        self._used.add(path.name)
        tmp: str | None = None
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=TMP_SUFFIX)  # 0600
            with os.fdopen(fd, "wb") as f:
                _Pickler(f, protocol=pickle.HIGHEST_PROTOCOL).dump(((FORMAT, self._version), entries))
            os.replace(tmp, path)
            tmp = None
            self.writes += 1
        except Exception:  # no cache (read-only state directory, disk full): slower, never wrong
            pass
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def prune(self) -> None:
        """After a write: keep the entries this load used and the ``keep`` most recently
        used others; drop what an interrupted write left behind."""
        if not self.writes:
            return
        with contextlib.suppress(OSError):
            others: list[tuple[float, Path]] = []
            stale = time.time() - 3600
            for p in self.directory.iterdir():
                if p.name.endswith(TMP_SUFFIX):
                    if p.stat().st_mtime < stale:
                        p.unlink(missing_ok=True)
                elif p.name.endswith(SUFFIX) and p.name not in self._used:
                    others.append((p.stat().st_mtime, p))
            others.sort(reverse=True)
            for _, p in others[self.keep :]:
                p.unlink(missing_ok=True)
