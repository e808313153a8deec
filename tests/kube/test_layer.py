"""controller/kube sits on the model: it imports only controller.model and
controller.errors (and itself), and does no I/O (until tests/test_layers.py lists it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KUBE = Path(__file__).resolve().parents[2] / "controller" / "kube"
IO = {"subprocess", "socket", "sqlite3", "urllib", "http", "requests", "docker", "pulumi", "kubernetes", "kopf"}


@pytest.mark.parametrize("path", sorted(KUBE.glob("*.py")), ids=lambda p: p.name)
def test_kube_imports_only_the_model(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "controller" else [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "controller":
                assert parts[1] in {"model", "errors", "kube"}, f"{path.name}: may not import {name}"
            assert parts[0] not in IO, f"{path.name}: controller.kube is pure, it may not use {name}"
