"""The layer order of controller/__init__.py, checked on every import statement:
``cli | operator > reconcile > drivers > effective | placement > model > errors``.
Only drivers (and the state store) talk to the outside world."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "controller"
BASE = {"errors", "digest", "clock", "ratelimit", "settings"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "digest": set(),
    "clock": set(),
    "ratelimit": {"clock"},
    "settings": {"errors"},
    "model": BASE | {"model"},
    "placement": BASE | {"model", "placement"},
    "effective": BASE | {"model", "placement", "effective"},
    "state": BASE | {"state"},
    "metrics": set(),
    "provisioning": BASE | {"model", "provisioning"},
    "agent": {"agent"},
    "kube": BASE | {"model", "kube"},
    "drivers": BASE | {"model", "placement", "effective", "state", "provisioning", "drivers", "agent"},
    "reconcile": BASE | {"model", "placement", "effective", "state", "provisioning", "drivers", "reconcile",
                         "metrics"},
}
#: Modules that talk to processes, networks or databases: not for the pure layers.
IO_MODULES = {"subprocess", "socket", "sqlite3", "urllib", "http", "docker", "pymysql", "psycopg",
              "ansible_runner", "requests", "acme"}
PURE = {"model", "placement", "effective", "digest", "errors", "clock", "ratelimit", "kube"}


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def layer_of(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" else "__init__"


FILES = sorted(p for p in PKG.rglob("*.py") if layer_of(p) in ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PKG)) for p in FILES])
def test_imports_follow_the_layers(path: Path) -> None:
    layer = layer_of(path)
    for line, mod in imports(path):
        parts = mod.split(".")
        if parts[0] == "controller" and len(parts) > 1:
            assert parts[1] in ALLOWED[layer], f"{path.name}:{line}: {layer} may not import {mod}"
        if layer in PURE:
            assert parts[0] not in IO_MODULES, f"{path.name}:{line}: {layer} is pure, it may not use {mod}"


def test_every_package_says_what_belongs_there() -> None:
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(PKG)} has no docstring saying what belongs there"
