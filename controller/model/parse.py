"""YAML text to Python data, with the line of every value.

PyYAML's C parser (libyaml, ``CSafeLoader``) composes the nodes. A small constructor
turns the common shape (mappings with text keys, sequences, scalars of the core tags)
into data without the Python constructor's per-node overhead; anything else (anchors
and aliases, merge keys, explicit tags, a key given twice, a document over the limits)
goes through PyYAML's own constructor and the checks below, so what a user sees about
it stays exactly the same.

Lines are not collected while parsing: a document's ``Lines`` recomposes its file the
first time an error asks for one, which only error paths do.
"""

from __future__ import annotations

import contextlib
import functools
import io
import operator
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from controller.errors import Issue

Loc = tuple[str | int, ...]

#: Limits per document: YAML aliases can make a small file expand exponentially
#: ("billion laughs") or refer to themselves; nothing legitimate comes near these.
MAX_VALUES = 100_000
MAX_DEPTH = 50

try:
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Base = yaml.SafeLoader

_STR = yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG
_SEQ = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
_MAP = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
#: Tags memoised: the same keys and values recur thousands of times in a large file,
#: and resolving a plain scalar costs a few regular expressions.
_TAGS_MAX = 65_536
#: The safe loader's resolver: no path resolvers, so a tag depends on the node's kind,
#: value and implicitness alone.
_RESOLVER = yaml.resolver.Resolver()


@functools.lru_cache(maxsize=_TAGS_MAX)
def _tag(kind: Any, value: Any, implicit: Any) -> Any:
    if kind is yaml.ScalarNode and not implicit[0]:
        return _STR
    return _RESOLVER.resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """Safe loader; a timestamp-looking scalar that is no real date (2027-02-30) stays
    text, so the field's own grammar reports it with its line instead of a crash.

    The C composer asks ``resolve`` once per node, and ``descend_resolver`` and
    ``ascend_resolver`` around each (both do nothing without path resolvers; what they
    return is ignored): C callables answer, not Python methods (a tenth of the parse)."""

    resolve = staticmethod(_tag)
    descend_resolver = staticmethod(operator.is_)  # (parent, index): nothing to do
    ascend_resolver = staticmethod(tuple)  # (): nothing to do


def _timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except ValueError:
        return loader.construct_scalar(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)
_SCALARS = {f"tag:yaml.org,2002:{t}": _Loader.yaml_constructors[f"tag:yaml.org,2002:{t}"]
            for t in ("null", "bool", "int", "float", "timestamp")}


def decode(data: bytes) -> str:
    """A file's bytes as text, exactly as ``Path.read_text(encoding="utf-8")`` reads it."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class TooLarge(Exception):
    """A document over ``MAX_VALUES`` values or ``MAX_DEPTH`` levels."""


def walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], dups: list[tuple[int, str]],
         budget: list[int] | None = None) -> None:
    """Record the line of every value under ``node``, and every key given twice."""
    budget = budget if budget is not None else [MAX_VALUES]
    budget[0] -= 1
    if budget[0] < 0 or len(loc) > MAX_DEPTH:
        raise TooLarge
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            if key in seen:
                dups.append((key_node.start_mark.line + 1, format_loc((*loc, key))))
            seen.add(key)
            lines[(*loc, key)] = key_node.start_mark.line + 1
            walk(value_node, (*loc, key), lines, dups, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            walk(item, (*loc, i), lines, dups, budget)


class _Fallback(Exception):
    """This document needs PyYAML's own constructor."""


def _build(loader: _Loader, node: yaml.Node, depth: int, budget: list[int]) -> Any:
    """The data of a plain document, or ``_Fallback`` for anything else."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise _Fallback
    cls = node.__class__
    tag = node.tag
    if cls is yaml.ScalarNode:
        if tag == _STR:
            return node.value
        make = _SCALARS.get(tag)
        if make is None:
            raise _Fallback
        try:
            return make(loader, node)
        except Exception as exc:  # the complete constructor reports it
            raise _Fallback from exc
    if cls is yaml.MappingNode and tag == _MAP:
        out: dict[Any, Any] = {}
        for key, value in node.value:
            if key.__class__ is not yaml.ScalarNode or key.tag != _STR:
                raise _Fallback
            out[key.value] = _build(loader, value, depth + 1, budget)
        if len(out) != len(node.value):  # a key given twice
            raise _Fallback
        return out
    if cls is yaml.SequenceNode and tag == _SEQ:
        return [_build(loader, item, depth + 1, budget) for item in node.value]
    raise _Fallback


class Source:
    """A file's text, kept until an error needs the line of a value in it."""

    def __init__(self, text: str | bytes) -> None:
        self._text: str | bytes | None = text
        self._lines: list[dict[Loc, int]] = []

    def lines(self, index: int) -> dict[Loc, int]:
        """The lines of the values of the file's ``index``-th document."""
        raw = self._text
        if raw is not None:  # (two threads may both compose it: same result)
            self._lines = list(_all_lines(raw if isinstance(raw, str) else decode(raw)))
            self._text = None
        return self._lines[index] if index < len(self._lines) else {}


def _all_lines(text: str) -> Iterator[dict[Loc, int]]:
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[Loc, int] = {}
            with contextlib.suppress(TooLarge):  # such a document was refused: no lines asked
                walk(node, (), lines, [])
            yield lines
    except yaml.YAMLError:
        return
    finally:
        loader.dispose()


class Lines(Mapping[Loc, int]):
    """The lines of one document's values, found when first asked for."""

    __slots__ = ("_index", "_map", "_source")

    def __init__(self, source: Source, index: int) -> None:
        self._source = source
        self._index = index
        self._map: dict[Loc, int] | None = None

    def _get(self) -> dict[Loc, int]:
        if self._map is None:
            self._map = self._source.lines(self._index)
        return self._map

    def __getitem__(self, loc: Loc) -> int:
        return self._get()[loc]

    def __contains__(self, loc: object) -> bool:
        return loc in self._get()

    def __iter__(self) -> Iterator[Loc]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def documents(text: str, file: str, issues: list[Issue]) -> Iterator[tuple[int, Any, Mapping[Loc, int], int]]:
    """Each document of ``text``: its index in the file, its data, the lines of its
    values and its first line. YAML errors are added to ``issues``."""
    source = Source(text)
    # Without an anchor no node is shared, and the plain constructor applies.
    plain = "&" not in text
    loader = _Loader(text)
    index = -1
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            index += 1
            start = node.start_mark.line + 1
            if plain:
                try:
                    data = _build(loader, node, 0, [MAX_VALUES])
                except _Fallback:
                    pass
                else:
                    yield index, data, Lines(source, index), start
                    continue
            lines: dict[Loc, int] = {}
            dups: list[tuple[int, str]] = []
            try:
                walk(node, (), lines, dups)
            except TooLarge:
                issues.append(Issue(file, start, "",
                                    f"document refused: more than {MAX_VALUES} values or {MAX_DEPTH} levels "
                                    "(check YAML aliases)"))
                continue
            for dup_line, dup_path in dups:
                issues.append(Issue(file, dup_line, dup_path, "key given twice"))
            try:
                data = loader.construct_document(node)
            except (ValueError, TypeError, OverflowError) as exc:  # e.g. !!int "abc"
                issues.append(Issue(file, start, "", f"invalid YAML value: {exc}"))
                loader.constructed_objects, loader.recursive_objects, loader.state_generators = {}, {}, []
                continue
            yield index, data, lines, start
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        issues.append(Issue(file, line, "", f"invalid YAML: {exc.problem or exc}"))
    finally:
        loader.dispose()
