"""Every broken document of ``corpus/`` is rejected by the real CLI, at the right line.

Each corpus file starts with ``# expect: <line>: <substring>`` lines and is validated
together with the valid ``corpus/_base`` (``tenantctl validate -f _base -f file``). Every
error reported for a file must be one of its expected lines, so a file cannot pass on
noise, and files cannot disturb each other.

To stay fast on a busy machine the CLI validates the files in a few batches
(``-f _base -f a.yaml -f b.yaml ...``) and each file's lines are picked out of stderr;
``TENANTCTL_CORPUS_ISOLATED=1`` runs one CLI process per file instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .cli_run import BASE, CORPUS, Result, run_cli

FILES = sorted(CORPUS.glob("*.yaml"))
ISOLATED = os.environ.get("TENANTCTL_CORPUS_ISOLATED") == "1"
BATCHES = 4
EXPECT = re.compile(r"^# expect: (\d+): (.+)$")
#: ``file:line: path: message``; the path is empty only for YAML and envelope errors.
ISSUE = re.compile(r"^(?P<file>[^:]+\.yaml):(?P<line>\d+): (?:(?P<path>[A-Za-z0-9_.\[\]-]+): )?(?P<msg>.+)$")
HEADER = re.compile(r"^tenantctl: (\d+) error\(s\) in the desired state$")


def expectations(path: Path) -> list[tuple[int, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = EXPECT.match(line)
        if m is None:
            break
        out.append((int(m.group(1)), m.group(2)))
    return out


@dataclass(frozen=True)
class Outcome:
    """What the CLI said about one corpus file."""

    code: int
    stdout: str
    #: the stderr lines that start with this file's name
    issues: list[str]
    #: the whole stderr of the run (for messages)
    stderr: str


def _split(files: list[Path], res: Result) -> dict[str, Outcome]:
    lines = res.stderr.splitlines()
    return {
        f.stem: Outcome(res.code, res.stdout, [i for i in lines if i.startswith(f"{f}:")], res.stderr)
        for f in files
    }


@pytest.fixture(scope="module")
def batch_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Outcome], list[Result]]]:
    state = tmp_path_factory.mktemp("state")
    groups = [[f] for f in FILES] if ISOLATED else [FILES[i::BATCHES] for i in range(BATCHES)]

    def one(i_files: tuple[int, list[Path]]) -> tuple[list[Path], Result]:
        i, files = i_files
        args = ["validate", "-f", str(BASE)]
        for f in files:
            args += ["-f", str(f)]
        return files, run_cli(args, state / str(i))

    out: dict[str, Outcome] = {}
    raw: list[Result] = []
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for files, res in pool.map(one, enumerate(groups)):
            out.update(_split(files, res))
            raw.append(res)
    yield out, raw


@pytest.fixture(scope="module")
def results(batch_results: tuple[dict[str, Outcome], list[Result]]) -> dict[str, Outcome]:
    return batch_results[0]


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= 70
    assert len([f for f in FILES if f.stem.startswith("inject-")]) >= 15


def test_base_alone_is_valid(cli: Callable[..., Result]) -> None:
    r = cli("validate", "-f", str(BASE))
    assert r.code == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.startswith("valid: ")


def test_every_run_fails_with_code_2_and_nothing_on_stdout(
    batch_results: tuple[dict[str, Outcome], list[Result]],
) -> None:
    for res in batch_results[1]:
        assert res.code == 2, res.stderr
        assert res.stdout == ""
        lines = res.stderr.splitlines()
        m = HEADER.match(lines[0])
        assert m is not None, lines[0]
        assert int(m.group(1)) == len(lines) - 1, "the count in the header matches the lines"


@pytest.mark.parametrize("path", [pytest.param(f, id=f.stem) for f in FILES])
def test_corpus_file_is_rejected(path: Path, results: dict[str, Outcome]) -> None:
    expects = expectations(path)
    assert expects, f"{path.name} has no '# expect: <line>: <substring>' header"
    r = results[path.stem]
    assert r.code == 2, f"exit {r.code}, stderr: {r.stderr}"
    assert r.stdout == "", "nothing may be printed on stdout on failure"
    assert not [i for i in r.stderr.splitlines() if i.startswith(f"{BASE}")], "the valid base must not be blamed"
    for line, needle in expects:
        hits = [i for i in r.issues if i.startswith(f"{path}:{line}:")]
        assert hits, f"no error at {path.name}:{line}; got:\n" + "\n".join(r.issues)
        assert any(needle in i for i in hits), f"{path.name}:{line}: no {needle!r} in:\n" + "\n".join(hits)
    wanted = {line for line, _ in expects}
    extra = [i for i in r.issues if int(i[len(str(path)) + 1 :].split(":", 1)[0]) not in wanted]
    assert not extra, "errors at lines no '# expect:' names:\n" + "\n".join(extra)


def test_all_independent_errors_are_reported(results: dict[str, Outcome]) -> None:
    path = CORPUS / "multi-three-errors.yaml"
    r = results[path.stem]
    assert len(r.issues) == 3, r.issues
    assert [int(i.split(":")[1]) for i in r.issues] == [line for line, _ in expectations(path)]


def test_error_lines_have_file_line_path_message(results: dict[str, Outcome]) -> None:
    without_path = []
    for stem, r in results.items():
        for issue in r.issues:
            m = ISSUE.match(issue)
            assert m is not None, f"{stem}: {issue!r} is not 'file:line: path: message'"
            assert int(m.group("line")) >= 1
            if m.group("path") is None:
                without_path.append(stem)
    # Only YAML syntax and document-level envelope errors have no field path.
    assert set(without_path) <= {
        "yaml-unclosed-flow", "yaml-tab-indent", "yaml-bad-tag", "yaml-alias-bomb", "yaml-recursive-alias",
        "envelope-not-mapping",
    }
    issue = results["ref-unknown-region"].issues[0]
    assert issue == (f"{CORPUS / 'ref-unknown-region.yaml'}:9: spec.region: unknown region 'ap-south' "
                     "(no Region document of that name)")


def test_an_address_of_two_servers_names_both_documents(results: dict[str, Outcome]) -> None:
    """A conflict between two documents gives file:line of both: the line is the later
    document's, the message names where the first one has the address."""
    twin = CORPUS / "server-address-of-other-server.yaml"
    assert results[twin.stem].issues == [
        f"{twin}:11: spec.address: address 127.0.20.1 already belongs to server 'base-eu-1' "
        f"(spec.address at {BASE / 'base.yaml'}:19)"
    ]
    both = CORPUS / "server-address-twice-in-file.yaml"
    assert results[both.stem].issues == [
        f"{both}:23: spec.address: address 127.0.60.1 already belongs to server 's-first' (spec.address at {both}:12)"
    ]
