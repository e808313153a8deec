"""The identity probe reads the Debian release a server runs and refuses a server whose
document names another one (issue 13: a database engine's major version never changes
in place). Parsing and the decision, with a FAKE transport that answers what a real
server's ``sh -c`` prints; the embedded servers' answers are checked by every live test
(each pass probes them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.drivers import context, identity, transport

BOOKWORM = context.Server("web-1", "eu-west", "docker", "127.0.250.7", ("web",), (), suite="bookworm")


class FakeServer:
    def __init__(self, out: str) -> None:
        self.out = out
        self.argv: list[str] = []

    def run(self, argv: list[str], timeout: float) -> transport.Completed:
        self.argv = argv
        return transport.Completed(0, self.out.encode(), b"")


class FakePool:
    def __init__(self, out: str) -> None:
        self.server = FakeServer(out)

    def get(self, name: str) -> FakeServer:
        return self.server

    def close(self) -> None:
        pass


def probe(out: str, server: context.Server = BOOKWORM) -> identity.Probed:
    p = identity.Probe(context.Context(Path("/nonexistent"), {server.name: server}))
    p._pool.close()
    fake: Any = FakePool(out)
    p._pool = fake
    return p.probe([server.name])


@pytest.mark.parametrize(("out", "gen", "tenants"), [
    pytest.param("4f2a\n\nrelease=bookworm\n3\n", "4f2a", 3, id="marker-with-newline"),
    pytest.param("4f2a\nrelease=bookworm\n0\n", "4f2a", 0, id="marker-without-newline"),
    pytest.param("\nrelease=bookworm\n0\n", identity.MISSING, 0, id="no-marker"),
    pytest.param("4f2a\n\nrelease=\n2\n", "4f2a", 2, id="release-unknown-not-judged"),
])
def test_the_marker_tenants_and_release_are_read_from_one_answer(out: str, gen: str, tenants: int) -> None:
    got = probe(out)
    assert (got.generations, got.tenants, got.unreachable) == ({"web-1": gen}, {"web-1": tenants}, {})


def test_a_server_running_another_release_than_its_document_says_is_not_written_to() -> None:
    got = probe("4f2a\n\nrelease=trixie\n3\n")
    assert got.generations == {}
    why = got.unreachable["web-1"]
    assert "runs Debian trixie, but its document says bookworm" in why
    assert "set `os: debian-13`" in why and "never changes a server's release in place" in why


def test_an_unsupported_release_is_named_as_such() -> None:
    why = identity.release_mismatch(BOOKWORM, "sid")
    assert why is not None and "Debian sid is not supported" in why


def test_a_server_whose_release_is_not_known_to_its_context_is_not_judged() -> None:
    loose = context.Server("web-1", "eu-west", "docker", "127.0.250.7", ("web",), ())
    assert identity.release_mismatch(loose, "trixie") is None
    assert identity.release_mismatch(BOOKWORM, "bookworm") is None
