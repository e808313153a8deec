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

from collections.abc import Iterable
from typing import Any

import yaml

from controller.model import loader

#: What the API server adds, and how an object becomes a document again, is the loader's
#: (it reads cluster dumps too): one definition.
SERVER_METADATA = loader.SERVER_METADATA
CLIENT_ANNOTATIONS = loader.CLIENT_ANNOTATIONS
is_list = loader.is_list
clean = loader.cleaned


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
