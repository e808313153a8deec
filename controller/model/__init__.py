"""The desired-state model: document schemas, loading with line numbers, validation.

Belongs here: the shape and the static rules of the six document kinds, everything
that can be checked from the documents alone, and the parse cache of files already
read (``cache``: the one place this package writes, under the state directory). Not
here: merging plans into effective specs (``controller.effective``), placement,
anything that talks to a server or the state store.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from controller.errors import InputError
from controller.model import cache, loader, validate
from controller.model.desired import DesiredState

__all__ = ["DesiredState", "load_desired"]


def load_desired(paths: Iterable[str | Path], cache_dir: str | Path | None = None) -> DesiredState:
    """Load, check and index the desired state; raise ``InputError`` with every issue.

    With ``cache_dir`` (``<state>/parse-cache``), a file already read and found valid is
    not parsed nor checked again while its bytes and tenantctl are the same; the rules
    between documents (references, duplicates, addresses) run on every load.
    """
    with cache.gc_paused():
        docs, issues = loader.load(paths, cache.ParseCache(cache_dir) if cache_dir is not None else None)
        state, more = validate.build(docs)
    issues.extend(more)
    if issues:
        raise InputError(issues)
    return state
