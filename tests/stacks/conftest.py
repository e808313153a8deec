"""MOCK fixtures of the stack tests: Pulumi's own ``pulumi.runtime.set_mocks`` stands in
for the Pulumi engine and the cloud (no Pulumi CLI or cloud account exists here). The
mocks only record what a program asks for and answer with the outputs the provider
would compute (addresses, ids); every assertion is on the program's own requests and
exports."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

STACKS = Path(__file__).resolve().parents[2] / "stacks"
for _name in ("servers", "dns", "buckets"):
    if str(STACKS / _name) not in sys.path:
        sys.path.insert(0, str(STACKS / _name))


@dataclass
class Created:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """MOCK engine: records every resource; computed outputs like the provider's."""

    stack_outputs: dict[str, Any] = field(default_factory=dict)
    created: list[Created] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        self.created.append(Created(args.typ, args.name, dict(args.inputs), args.provider))
        n = next(self._ids)
        state = dict(args.inputs)
        if args.typ == "hcloud:index/server:Server":
            state.update(ipv4Address=f"203.0.113.{n % 250}", ipv6Address=f"2001:db8::{n:x}")
        elif args.typ == "hcloud:index/floatingIp:FloatingIp":
            state.update(ipAddress=f"198.51.100.{n % 250}")
        elif args.typ == "hcloud:index/zone:Zone":
            state.update(authoritativeNameservers={"assigneds": ["hydrogen.ns.hetzner.com.",
                                                                 "oxygen.ns.hetzner.com."]})
        elif args.typ == "pulumi:pulumi:StackReference":
            state.update(outputs=self.stack_outputs)
        return str(n), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, typ: str) -> list[Created]:
        return [c for c in self.created if c.type == typ]


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    # Pulumi's runtime uses the main thread's current loop, the one the stack modules'
    # Outputs were made in at collection; an async test run before (pytest-asyncio: the
    # operator's tests) leaves none set. That loop is set again before each stack test.
    asyncio.set_event_loop(_loop())
    m = RecordingMocks()
    pulumi.runtime.set_mocks(m, project="tenantctl-test", stack="test", preview=False)
    yield m


def _current() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop


#: the loop current when the stack modules are collected (their Outputs belong to it)
_LOOP = _current()


def _loop() -> asyncio.AbstractEventLoop:
    return _LOOP if not _LOOP.is_closed() else _current()
