"""Read desired-state YAML into validated documents, keeping every value's line.

``load(paths, cache)`` reads files and directories (``*.yaml``/``*.yml``, sorted), checks
each document's envelope and schema, and returns the documents plus every ``Issue``
found: it never stops at the first error. A file whose documents are all valid is
kept in the parse cache (``controller.model.cache``) when one is given, so that an
unchanged file is neither parsed nor checked again. Cross-document rules are in
``validate``; YAML itself is read by ``parse``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from controller import digest
from controller.errors import Issue
from controller.model import kinds, parse, values
from controller.model.cache import Entry, ParseCache
from controller.model.parse import Loc, format_loc

API_VERSION = "tenantctl.io/v1"

__all__ = ["API_VERSION", "Document", "Loc", "format_loc", "iter_files", "line_for", "load"]


@dataclass(frozen=True)
class Document:
    """One validated document with its origin."""

    kind: str
    name: str
    spec: Any
    labels: dict[str, str]
    annotations: dict[str, str]
    file: str
    line: int
    #: the line of every value, by its path in the document (found when first asked for)
    lines: Mapping[Loc, int] = field(repr=False, compare=False)
    #: digest of the document's data: unchanged documents are recognised by it
    digest: str = field(default="", compare=False)

    def line_of(self, *loc: str | int) -> int:
        """Line of the value at ``spec.<loc>`` (or of its nearest present parent)."""
        return line_for(self.lines, ("spec", *loc), self.line)

    def issue(self, loc: Iterable[str | int], message: str) -> Issue:
        loc = tuple(loc)
        return Issue(self.file, self.line_of(*loc), format_loc(("spec", *loc)), message)


def line_for(lines: Mapping[Loc, int], loc: Loc, default: int) -> int:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), default)


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            yield p


def _name_for(kind: str, raw: Any) -> str:
    if kind == "Subscription":
        return values.domain_name(raw)
    return values.dns_label(raw)


def load(paths: Iterable[str | Path], cache: ParseCache | None = None) -> tuple[list[Document], list[Issue]]:
    """Parse and schema-check every document under ``paths``."""
    paths = list(paths)
    docs: list[Document] = []
    issues: list[Issue] = []
    files = list(iter_files(paths))
    for path in files:
        file = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            issues.append(Issue(file, 0, "", f"cannot read: {exc}"))
            continue
        key = cache.key(data) if cache is not None else ""
        entries = cache.get(key) if cache is not None else None
        if entries is not None:
            source = parse.Source(data)
            docs.extend(Document(kind, name, spec, labels, annotations, file, line, parse.Lines(source, index), dig)
                        for kind, name, spec, labels, annotations, line, index, dig in entries)
            continue
        try:
            text = parse.decode(data)
        except UnicodeDecodeError as exc:
            issues.append(Issue(file, 0, "", f"cannot read: {exc}"))
            continue
        before = len(issues)
        fresh: list[Entry] = []
        listed = False  # a cluster dump: its items' lines are re-rooted, so the file is not cached
        for index, value, lines, line in parse.documents(text, file, issues):
            if value is None:
                continue
            for item, item_lines, item_line in _items(value, lines, line):
                listed = listed or item is not value
                doc = _document(item, item_lines, item_line, file, issues)
                if doc is not None:
                    docs.append(doc)
                    fresh.append((doc.kind, doc.name, doc.spec, doc.labels, doc.annotations, doc.line, index,
                                  doc.digest))
        if cache is not None and len(issues) == before and not listed:  # a file with an error is never kept
            cache.put(key, fresh)
    if not files:
        issues.append(Issue(",".join(map(str, paths)) or "-", 0, "", "no YAML documents found"))
    if cache is not None:
        cache.prune()
    return docs, issues


#: Metadata the API server writes: a cluster dump (``kubectl get -o yaml``) has it, the
#: desired state does not.
SERVER_METADATA = frozenset({
    "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
    "deletionGracePeriodSeconds", "managedFields", "selfLink", "finalizers", "ownerReferences", "generateName",
})
#: Annotations written by clients, not by the user.
CLIENT_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def is_list(data: Any) -> bool:
    """A ``List`` or ``<Kind>List`` of objects (what ``kubectl get -o yaml`` prints)."""
    return (isinstance(data, dict) and isinstance(data.get("kind"), str) and data["kind"].endswith("List")
            and isinstance(data.get("items"), list))


def cleaned(obj: Any) -> Any:
    """A cluster object as a document: no status, no server-written metadata."""
    if not isinstance(obj, dict):
        return obj
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in SERVER_METADATA}
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            notes = {k: v for k, v in notes.items() if k not in CLIENT_ANNOTATIONS}
            if notes:
                meta["annotations"] = notes
            else:
                del meta["annotations"]
        if meta.get("labels") == {}:
            del meta["labels"]
        out["metadata"] = meta
    return out


class _Within(Mapping[Loc, int]):
    """The lines of one item of a List: its paths without the ``items[i]`` prefix."""

    def __init__(self, lines: Mapping[Loc, int], prefix: Loc) -> None:
        self._lines, self._prefix = lines, prefix

    def __getitem__(self, loc: Loc) -> int:
        return self._lines[(*self._prefix, *loc)]

    def __contains__(self, loc: object) -> bool:
        return isinstance(loc, tuple) and (*self._prefix, *loc) in self._lines

    def __iter__(self) -> Iterator[Loc]:
        n = len(self._prefix)
        return (loc[n:] for loc in self._lines if loc[:n] == self._prefix)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _items(data: Any, lines: Mapping[Loc, int], line: int) -> Iterator[tuple[Any, Mapping[Loc, int], int]]:
    """A cluster dump's List is read as its items (cleaned, lines re-rooted); anything
    else as it is."""
    if not is_list(data):
        yield data, lines, line
        return
    for i, item in enumerate(data["items"]):
        sub = _Within(lines, ("items", i))
        yield cleaned(item), sub, sub.get((), line)


def _document(data: Any, lines: Mapping[Loc, int], line: int, file: str, issues: list[Issue]) -> Document | None:
    def err(loc: Loc, message: str) -> None:
        issues.append(Issue(file, line_for(lines, loc, line), format_loc(loc), message))

    if not isinstance(data, dict):
        err((), f"expected a mapping with apiVersion, kind, metadata and spec, got {type(data).__name__}")
        return None
    ok = True
    if data.get("apiVersion") != API_VERSION:
        err(("apiVersion",), f"expected {API_VERSION!r}, got {data.get('apiVersion')!r}")
        ok = False
    kind = data.get("kind")
    if kind not in kinds.KINDS:
        err(("kind",), f"expected one of {', '.join(kinds.KINDS)}, got {kind!r}")
        return None
    for extra in sorted(set(data) - {"apiVersion", "kind", "metadata", "spec"}, key=str):
        err((extra,), "unexpected field (expected apiVersion, kind, metadata, spec)")
        ok = False
    meta_raw = data.get("metadata")
    name = ""
    #: name, labels and annotations of a valid metadata
    meta: tuple[str, dict[str, str], dict[str, str]] | None = None
    if meta_raw.__class__ is dict and len(meta_raw) == 1 and meta_raw.get("name").__class__ is str:
        meta = (meta_raw["name"], {}, {})  # the common case, a name alone: what validating it gives
    else:
        try:
            m = kinds.Metadata.model_validate(meta_raw)
        except pydantic.ValidationError as exc:
            _pydantic_issues(exc, ("metadata",), lines, line, file, issues)
            ok = False
        else:
            meta = (m.name, dict(m.labels), dict(m.annotations))
    if meta is not None:
        try:
            name = _name_for(kind, meta[0])
        except ValueError as exc:
            err(("metadata", "name"), str(exc))
            ok = False
    spec_raw = data.get("spec")
    if spec_raw is None:
        spec_raw = {}
    try:
        spec = kinds.KINDS[kind].model_validate(spec_raw)
    except pydantic.ValidationError as exc:
        _pydantic_issues(exc, ("spec",), lines, line, file, issues)
        return None
    if not ok or meta is None:
        return None
    return Document(kind, name, spec, meta[1], meta[2], file, line, lines, digest.of(data))


def _pydantic_issues(
    exc: pydantic.ValidationError, prefix: Loc, lines: Mapping[Loc, int], line: int, file: str, issues: list[Issue]
) -> None:
    for e in exc.errors(include_url=False):
        loc: Loc = (*prefix, *(p for p in e["loc"] if isinstance(p, (str, int))))
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif e["type"] == "extra_forbidden":
            msg = "unexpected field"
        elif e["type"] == "missing":
            msg = "required field missing"
        issues.append(Issue(file, line_for(lines, loc, line), format_loc(loc), msg))
