"""The error tree of tenantctl. Every layer raises one of these; backends' errors are
translated at the boundary (``raise Mapped(...) from exc``)::

    TenantctlError
    ├── InputError                 bad desired state: carries every Issue found (exit 2)
    ├── UnknownObject              a name that is not in the desired state (exit 2)
    ├── StateError                 the state store is unusable (newer schema, corrupt)
    └── DriverError                a concern could not be applied on a server
        ├── TemporaryError         retry later, with backoff (``delay`` hints the wait)
        └── PermanentError         retrying will not help until the input changes
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Issue:
    """One problem in the desired state, located as precisely as we can."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class TenantctlError(Exception):
    """Base of every error tenantctl raises on purpose."""


class InputError(TenantctlError):
    """The desired state is invalid; ``issues`` lists every problem found, sorted."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(set(issues))
        super().__init__("\n".join(str(i) for i in self.issues))


class UnknownObject(TenantctlError):
    """A name given on the command line does not exist."""


class StateError(TenantctlError):
    """The state store cannot be used."""


class DriverError(TenantctlError):
    """A concern failed on a server."""


class TemporaryError(DriverError):
    """Retry later; ``delay`` (seconds) is a hint, the queue's backoff decides."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(DriverError):
    """Retrying will not help until the desired state or the server changes."""
