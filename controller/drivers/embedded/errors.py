"""Errors of the embedded environment, all ``DriverError``s::

    DriverError
    └── EmbeddedError          the embedded environment could not be brought to the wanted state
        ├── EngineError        no Docker engine answers, or ours would not start
        ├── ImageError         debootstrap, import or build of the server image failed
        ├── ServerError        a server container could not be run, or its sshd never answered
        └── PlaybookError      an Ansible run failed; ``host``/``task``/``message`` say where
"""

from __future__ import annotations

from controller import errors


class EmbeddedError(errors.DriverError):
    """The embedded environment could not be brought to the wanted state."""


class EngineError(EmbeddedError):
    """No Docker engine answers, or the dockerd we started did not come up."""


class ImageError(EmbeddedError):
    """Building the server image failed."""


class ServerError(EmbeddedError):
    """A server container could not be run or did not become reachable."""


class PlaybookError(EmbeddedError):
    """An Ansible run failed: the first failed task's host, name and message."""

    def __init__(self, message: str, *, host: str = "", task: str = "", status: str = "failed") -> None:
        super().__init__(f"{host}: {task}: {message}" if host else message)
        self.host = host
        self.task = task
        self.status = status
        self.message_text = message
