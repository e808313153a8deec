"""Errors of the embedded environment, all ``DriverError``s::

    DriverError
    ├── EmbeddedError          the embedded environment could not be brought to the wanted state
    │   ├── EngineError        no Docker engine answers, or ours would not start
    │   ├── ImageError         debootstrap, import or build of the server image failed
    │   └── ServerError        a server container could not be run, or its sshd never answered
    └── provisioning.errors.ProvisioningError
        └── PlaybookError      the bootstrap (Ansible) failed; ``host``/``task``/``message`` say where
"""

from __future__ import annotations

from controller import errors
from controller.provisioning import errors as provisioning_errors

#: the bootstrap's failure, raised by ``provisioning`` (the embedded servers are bootstrapped
#: like any other host)
PlaybookError = provisioning_errors.PlaybookError


class EmbeddedError(errors.DriverError):
    """The embedded environment could not be brought to the wanted state."""


class EngineError(EmbeddedError):
    """No Docker engine answers, or the dockerd we started did not come up."""


class ImageError(EmbeddedError):
    """Building the server image failed."""


class ServerError(EmbeddedError):
    """A server container could not be run or did not become reachable."""
