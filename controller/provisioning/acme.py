"""Which ACME CA a state directory's controller asks by default.

Production sets ``TENANTCTL_ACME_DIRECTORY`` (and a CA bundle when the CA's HTTPS is not
publicly trusted). The embedded environment records the Pebble it started here, so the
tls driver finds it without knowing anything of the development environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FILE = "acme-ca.json"


@dataclass(frozen=True)
class Ca:
    directory: str
    """The ACME directory URL."""
    ca_bundle: str | None
    """The file that verifies its HTTPS and the certificates it issues, if not public."""


def default(state_dir: Path) -> Ca | None:
    path = state_dir / FILE
    try:
        doc = json.loads(path.read_text())
        return Ca(str(doc["directory"]), str(doc["caBundle"]) if doc.get("caBundle") else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def set_default(state_dir: Path, ca: Ca | None) -> None:
    path = state_dir / FILE
    if ca is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"directory": ca.directory, "caBundle": ca.ca_bundle}) + "\n")
    tmp.replace(path)
