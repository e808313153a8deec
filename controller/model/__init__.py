"""The desired-state model: document schemas, loading with line numbers, validation.

Belongs here: the shape and the static rules of the six document kinds, everything
that can be checked from the documents alone. Not here: merging plans into effective
specs (``controller.effective``), placement, anything that talks to a server or the
state store.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from controller.errors import InputError
from controller.model import loader, validate
from controller.model.desired import DesiredState

__all__ = ["DesiredState", "load_desired"]


def load_desired(paths: Iterable[str | Path]) -> DesiredState:
    """Load, check and index the desired state; raise ``InputError`` with every issue."""
    docs, issues = loader.load(paths)
    state, more = validate.build(docs)
    issues.extend(more)
    if issues:
        raise InputError(issues)
    return state
