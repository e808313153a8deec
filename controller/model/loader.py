"""Read desired-state YAML into validated documents, keeping every value's line.

``load(paths)`` reads files and directories (``*.yaml``/``*.yml``, sorted), checks each
document's envelope and schema, and returns the documents plus every ``Issue`` found:
it never stops at the first error. Cross-document rules are in ``validate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from controller import digest
from controller.errors import Issue
from controller.model import kinds, values

API_VERSION = "tenantctl.io/v1"

Loc = tuple[str | int, ...]

try:
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Base = yaml.SafeLoader


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """Safe loader; a timestamp-looking scalar that is no real date (2027-02-30) stays
    text, so the field's own grammar reports it with its line instead of a crash."""


def _timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except ValueError:
        return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


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
    lines: dict[Loc, int] = field(repr=False, compare=False)
    #: digest of the document's data: unchanged documents are recognised by it
    digest: str = field(default="", compare=False)

    def line_of(self, *loc: str | int) -> int:
        """Line of the value at ``spec.<loc>`` (or of its nearest present parent)."""
        return line_for(self.lines, ("spec", *loc), self.line)

    def issue(self, loc: Iterable[str | int], message: str) -> Issue:
        loc = tuple(loc)
        return Issue(self.file, self.line_of(*loc), format_loc(("spec", *loc)), message)


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_for(lines: dict[Loc, int], loc: Loc, default: int) -> int:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), default)


#: Limits per document: YAML aliases can make a small file expand exponentially
#: ("billion laughs") or refer to themselves; nothing legitimate comes near these.
MAX_VALUES = 100_000
MAX_DEPTH = 50


class _TooLarge(Exception):
    pass


def _walk(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], issues: list[tuple[int, str]], budget: list[int] | None = None
) -> None:
    budget = budget if budget is not None else [MAX_VALUES]
    budget[0] -= 1
    if budget[0] < 0 or len(loc) > MAX_DEPTH:
        raise _TooLarge
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key in seen:
                issues.append((key_node.start_mark.line + 1, format_loc((*loc, key))))
            seen.add(key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*loc, key), lines, issues, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines, issues, budget)


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            yield p


def _docs_of(text: str, file: str, issues: list[Issue]) -> Iterator[tuple[Any, dict[Loc, int], int]]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[Loc, int] = {}
            dups: list[tuple[int, str]] = []
            try:
                _walk(node, (), lines, dups)
            except _TooLarge:
                issues.append(Issue(file, node.start_mark.line + 1, "",
                                    f"document refused: more than {MAX_VALUES} values or {MAX_DEPTH} levels "
                                    "(check YAML aliases)"))
                continue
            for dup_line, dup_path in dups:
                issues.append(Issue(file, dup_line, dup_path, "key given twice"))
            try:
                data = loader.construct_document(node)
            except (ValueError, TypeError, OverflowError) as exc:  # e.g. !!int "abc"
                issues.append(Issue(file, node.start_mark.line + 1, "", f"invalid YAML value: {exc}"))
                loader.constructed_objects, loader.recursive_objects, loader.state_generators = {}, {}, []
                continue
            yield data, lines, node.start_mark.line + 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        issues.append(Issue(file, line, "", f"invalid YAML: {exc.problem or exc}"))
    finally:
        loader.dispose()


def _name_for(kind: str, raw: Any) -> str:
    if kind == "Subscription":
        return values.domain_name(raw)
    return values.dns_label(raw)


def load(paths: Iterable[str | Path]) -> tuple[list[Document], list[Issue]]:
    """Parse and schema-check every document under ``paths``."""
    docs: list[Document] = []
    issues: list[Issue] = []
    files = list(iter_files(paths))
    for path in files:
        file = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(Issue(file, 0, "", f"cannot read: {exc}"))
            continue
        for data, lines, line in _docs_of(text, file, issues):
            if data is None:
                continue
            doc = _document(data, lines, line, file, issues)
            if doc is not None:
                docs.append(doc)
    if not files:
        issues.append(Issue(",".join(map(str, paths)) or "-", 0, "", "no YAML documents found"))
    return docs, issues


def _document(data: Any, lines: dict[Loc, int], line: int, file: str, issues: list[Issue]) -> Document | None:
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
    meta: kinds.Metadata | None = None
    try:
        meta = kinds.Metadata.model_validate(meta_raw)
    except pydantic.ValidationError as exc:
        _pydantic_issues(exc, ("metadata",), lines, line, file, issues)
        ok = False
    if meta is not None:
        try:
            name = _name_for(kind, meta.name)
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
    return Document(kind, name, spec, dict(meta.labels), dict(meta.annotations), file, line, lines,
                    digest.of(data))


def _pydantic_issues(
    exc: pydantic.ValidationError, prefix: Loc, lines: dict[Loc, int], line: int, file: str, issues: list[Issue]
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
