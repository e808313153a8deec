"""Cluster dumps -> desired-state documents.

``kubectl get regions,servers,serviceplans,addonplans,customers,subscriptions -o yaml``
prints one ``kind: List`` whose items carry what the API server added: ``status``,
``metadata.uid``, ``resourceVersion``, ``generation``, ``creationTimestamp``,
``managedFields``, finalizers, the namespace and kubectl's last-applied annotation.
``to_documents`` turns such a dump (or a ``<Kind>List``, or single objects) back into
the documents the loader reads, keeping everything else as it is so that the loader
reports the same errors as for the files the objects were applied from. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

#: Metadata the API server writes: not part of the desired state.
SERVER_METADATA = frozenset({
    "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "managedFields", "selfLink", "finalizers", "ownerReferences", "generateName",
})
#: Annotations written by clients, not by the user.
CLIENT_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def is_list(obj: Any) -> bool:
    """A ``List`` or ``<Kind>List`` of objects (what ``kubectl get -o yaml`` prints)."""
    return (isinstance(obj, Mapping) and isinstance(obj.get("kind"), str) and obj["kind"].endswith("List")
            and isinstance(obj.get("items"), list))


def clean(obj: Any) -> Any:
    """One object as a document: no status, no server-written metadata."""
    if not isinstance(obj, Mapping):
        return obj
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = obj.get("metadata")
    if isinstance(meta, Mapping):
        meta = {k: v for k, v in meta.items() if k not in SERVER_METADATA}
        notes = meta.get("annotations")
        if isinstance(notes, Mapping):
            notes = {k: v for k, v in notes.items() if k not in CLIENT_ANNOTATIONS}
            if notes:
                meta["annotations"] = notes
            else:
                del meta["annotations"]
        if meta.get("labels") == {}:
            del meta["labels"]
        out["metadata"] = meta
    return out


def to_documents(objs: Iterable[Any]) -> list[Any]:
    """Documents of every object in ``objs`` (Lists expanded, in order)."""
    docs: list[Any] = []
    for obj in objs:
        if is_list(obj):
            docs.extend(clean(item) for item in obj["items"])
        elif obj is not None:
            docs.append(clean(obj))
    return docs


def read(text: str) -> list[Any]:
    """The documents of a dump's YAML text."""
    return to_documents(yaml.safe_load_all(text))


def render(docs: Iterable[Any]) -> str:
    """Documents as multi-document YAML, as the loader reads them."""
    return yaml.safe_dump_all(list(docs), sort_keys=False, default_flow_style=False, width=120)
