"""Fixtures for effective specs (builder in ``builder.py``)."""

from __future__ import annotations

import pytest

from effective.builder import World


@pytest.fixture
def world() -> World:
    return World()
