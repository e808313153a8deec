"""Errors of provisioning, all ``DriverError``s::

    DriverError
    └── ProvisioningError      a host could not be provisioned (key, credentials, bootstrap)
        └── PlaybookError      an Ansible run failed; ``host``/``task``/``message`` say where
"""

from __future__ import annotations

from controller import errors


class ProvisioningError(errors.DriverError):
    """A host could not be provisioned."""


class PlaybookError(ProvisioningError):
    """An Ansible run failed: the first failed task's host, name and message."""

    def __init__(self, message: str, *, host: str = "", task: str = "", status: str = "failed") -> None:
        super().__init__(f"{host}: {task}: {message}" if host else message)
        self.host = host
        self.task = task
        self.status = status
        self.message_text = message
