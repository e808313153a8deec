"""Reading YAML (controller.model.parse): the C parser with a plain constructor must give
exactly what PyYAML's own safe constructor gives, and the lines found afterwards must
be those a full walk of the nodes finds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import Issue
from controller.model import parse

from .cli_run import CORPUS, EXAMPLES


def reference(text: str) -> list[Any]:
    """PyYAML's own constructor over the same loader (same timestamp rule)."""
    return list(yaml.load_all(text, Loader=parse._Loader))


def eager_lines(text: str) -> list[dict[parse.Loc, int]]:
    loader = parse._Loader(text)
    out = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                lines: dict[parse.Loc, int] = {}
                parse.walk(node, (), lines, [])
                out.append(lines)
    finally:
        loader.dispose()
    return out


def read(text: str) -> tuple[list[Any], list[Any], list[Issue]]:
    issues: list[Issue] = []
    got = list(parse.documents(text, "f.yaml", issues))
    return [data for _, data, _, _ in got], [lines for _, _, lines, _ in got], issues


PLAIN = {
    "scalars": "a: 1\nb: 1.5\nc: true\nd: ~\ne: text\nf: '8.2'\ng: 8.2\nh: 2027-02-01\ni: 0x1f\nj: 1_000\n",
    "yaml11-booleans": "a: yes\nb: 'yes'\nc: off\nd: 'off'\ne: On\n",
    "not-a-date": "expires: 2027-02-30\n",
    "special-floats": "a: .inf\nb: -.Inf\nc: 1e3\nd: 6.8523015e+5\n",
    "sexagesimal": "a: 190:20:30\nb: 1:30\n",
    "nested": "spec:\n  sites:\n    - {name: a, php: {settings: {memory_limit: 64M}}}\n    - name: b\n  x: [1, [2, [3]]]\n",
    "explicit-str": "a: !!str 123\nb: !!str yes\n",
    "several-documents": "a: 1\n---\n- x\n- y\n---\n---\nlast: true\n",
    "empty": "",
}
FALLBACK = {
    "anchor-alias": "base: &b {x: 1}\nuse: *b\n",
    "merge-key": "base: &b {x: 1}\nuse: {<<: *b, y: 2}\n",
    "duplicate-key": "a: 1\na: 2\n",
    "explicit-int": "a: !!int '7'\n",
    "set": "a: !!set {x, y}\n",
    "binary": "a: !!binary aGVsbG8=\n",
    "null-key": "~: x\n",
    "int-key": "1: one\n'1': quoted\n",
}


@pytest.mark.parametrize("text", [pytest.param(t, id=k) for k, t in {**PLAIN, **FALLBACK}.items()])
def test_data_is_what_pyyaml_constructs(text: str) -> None:
    data, lines, _ = read(text)
    assert data == reference(text)
    assert [dict(x) for x in lines] == eager_lines(text)


@pytest.mark.parametrize("text", [pytest.param(t, id=k) for k, t in PLAIN.items() if t])
def test_plain_documents_take_the_plain_constructor(text: str) -> None:
    _, lines, _ = read(text)
    assert lines and all(isinstance(x, parse.Lines) for x in lines), "lines are found only when asked for"


def test_what_pyyaml_refuses_is_an_issue_at_its_line() -> None:
    data, _, issues = read("ok: 1\n---\n? [a, b]\n: c\n")
    assert data == [{"ok": 1}]
    assert issues == [Issue("f.yaml", 3, "", "invalid YAML: found unhashable key")]


def test_a_key_given_twice_is_reported_with_its_line() -> None:
    data, _, issues = read("spec:\n  a: 1\n  b: 2\n  a: 3\n")
    assert data == [{"spec": {"a": 3, "b": 2}}]
    assert issues == [Issue("f.yaml", 4, "spec.a", "key given twice")]


def test_a_tag_never_leaks_from_a_plain_scalar_to_a_quoted_one() -> None:
    data, _, _ = read("a: 'true'\nb: true\nc: 'true'\nd: '1'\ne: 1\n")
    assert data == [{"a": "true", "b": True, "c": "true", "d": "1", "e": 1}]


@pytest.mark.parametrize("depth", [parse.MAX_DEPTH - 1, parse.MAX_DEPTH + 1])
def test_a_document_over_the_depth_limit_is_refused(depth: int) -> None:
    text = "x: " + "[" * depth + "]" * depth + "\n"
    data, _, issues = read(text)
    if depth < parse.MAX_DEPTH:
        assert (data, issues) == (reference(text), [])
    else:
        assert data == []
        assert [i.message.split(":")[0] for i in issues] == ["document refused"]


def test_a_document_over_the_size_limit_is_refused() -> None:
    text = "x: [" + ", ".join(["1"] * parse.MAX_VALUES) + "]\n"
    data, _, issues = read(text)
    assert data == []
    assert [i.message.split(":")[0] for i in issues] == ["document refused"]


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in sorted(EXAMPLES.glob("*.yaml"))]
                         + [pytest.param(CORPUS / "_base" / "base.yaml", id="corpus-base")])
def test_real_files_read_the_same(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    data, lines, issues = read(text)
    assert issues == []
    assert data == reference(text)
    assert [dict(x) for x in lines] == eager_lines(text)


scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=False, allow_infinity=True)
           | st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
           | st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4), max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(doc=st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=5),
       flow=st.sampled_from([None, True, False]))
def test_any_dumped_document_reads_back_as_pyyaml_reads_it(doc: dict[str, Any], flow: bool | None) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    data, lines, issues = read(text)
    assert issues == []
    assert data == reference(text)  # not always [doc]: PyYAML reads some characters back otherwise
    assert [dict(x) for x in lines] == eager_lines(text)
