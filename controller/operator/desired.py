"""The desired state from the watched custom resources, through the CLI's loader.

The objects are written as one ``kind: List`` (what ``kubectl get -o yaml`` prints) to
``<workdir>/desired.yaml`` and read by ``model.load_desired``: the same loader, the
same checks and the same errors as ``tenantctl validate`` on a cluster dump. The file
stays there: it is what the last pass saw. Subscriptions being deleted are left out,
so that the engine plans their deletion (LIFE-6).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from controller import model
from controller.operator import index


def dump(objects: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A ``List`` of the objects that count (sorted: the same objects give the same text)."""
    items = [dict(o) for o in objects if not (o.get("kind") == "Subscription" and index.deleting(o))]
    items.sort(key=lambda o: (str(o.get("kind")), str((o.get("metadata") or {}).get("name"))))
    return {"apiVersion": "v1", "kind": "List", "items": items}


def load(objects: Iterable[Mapping[str, Any]], workdir: Path) -> model.DesiredState:
    """Validate and index the objects; ``InputError`` with every issue."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "desired.yaml"
    tmp = workdir / "desired.yaml.tmp"
    tmp.write_text(json.dumps(dump(objects), indent=1, sort_keys=True) + "\n")  # JSON is YAML
    os.replace(tmp, path)
    return model.load_desired([path])
