"""The controller's side of the agent: the zipapp shipped to servers, built once per
process from this package and the concerns' entry modules, named by its digest.

Layout of the archive: ``__main__.py``, ``controller/agent/*.py`` (not this module),
``controller/drivers/<entry>/agent.py`` for each entry of ``main.ENTRIES``, and
empty-docstring ``__init__.py`` files for the packages in between (the real ones
import the controller's dependencies, which servers do not have). Entries are stored
with a fixed time, sorted, uncompressed: identical sources give identical bytes, so an
unchanged agent has an unchanged digest and is never sent twice.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from controller.agent import main

PACKAGE = Path(__file__).resolve().parent
CONTROLLER = PACKAGE.parent
#: where servers keep agents: ``<DIR>/<digest>.pyz``
REMOTE_DIR = "/var/lib/tenantctl/agent"

_MAIN = b'"""tenantctl agent: python3 -I AGENT.pyz ENTRY DIR"""\nimport sys\n\nfrom controller.agent import main\n\nsys.exit(main.cli(sys.argv))\n'
_STUB = b'"""Package stub of the tenantctl agent zipapp (the real package is the controller\'s)."""\n'


@dataclass(frozen=True)
class Bundle:
    data: bytes
    digest: str

    @property
    def remote_path(self) -> str:
        return f"{REMOTE_DIR}/{self.digest}.pyz"


def sources(entry: str | None = None) -> list[Path]:
    """The source files the archive holds: the library and every entry module, or the
    library and ``entry``'s module only (what decides what that concern's agent does:
    part of the concern's version)."""
    own = sorted(p for p in PACKAGE.glob("*.py") if p.name != "bundle.py")
    return own + [CONTROLLER / "drivers" / e / "agent.py" for e in main.ENTRIES if entry in (None, e)]


def _members() -> dict[str, bytes]:
    out = {"__main__.py": _MAIN, "controller/__init__.py": _STUB, "controller/drivers/__init__.py": _STUB}
    for p in sources():
        rel = p.relative_to(CONTROLLER.parent).as_posix()
        out[rel] = p.read_bytes()
        parent = str(Path(rel).parent / "__init__.py")
        if parent not in out and parent != "controller/agent/__init__.py":
            out[parent] = _STUB
    return out


def build() -> Bundle:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in sorted(_members().items()):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    data = buf.getvalue()
    return Bundle(data, hashlib.sha256(data).hexdigest())


@functools.cache
def current() -> Bundle:
    """The agent of this process's code (built once)."""
    return build()
