"""Errors of the state store, under ``controller.errors.StateError``."""

from __future__ import annotations

from controller import errors


class SchemaTooNew(errors.StateError):
    """The state file was written by a newer tenantctl; this one refuses to touch it."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"{path}: state schema version {found} is newer than this tenantctl supports "
            f"({supported}); upgrade tenantctl or point TENANTCTL_STATE_DIR elsewhere"
        )
        self.found = found
        self.supported = supported


class SchemaTooOld(errors.StateError):
    """A read-only store found a schema it would have to migrate first."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"{path}: state schema version {found} is older than {supported}; "
            f"run the controller once (read-write) to migrate it"
        )
        self.found = found
        self.supported = supported


class ReadOnlyStore(errors.StateError):
    """A write was attempted through a store opened with ``Store.open_readonly``."""


class StoreClosed(errors.StateError):
    """The store was used after ``close()``."""


class NotAStore(errors.StateError):
    """The file is not a tenantctl state store: not SQLite, or another application's."""


class CorruptStore(errors.StateError):
    """The file was a tenantctl state store but is damaged (truncated, malformed pages)."""


class StoreBusy(errors.StateError):
    """Another process kept the store locked for longer than we wait."""


class Busy(errors.StateError):
    """Work guarded by ``locks.exclusive`` is under way in another process."""


class StoreInUse(errors.StateError):
    """An operation that needs the store to itself found another process holding it."""
