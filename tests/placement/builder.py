"""Helpers for placement tests: desired states holding only regions and servers."""

from __future__ import annotations

from typing import Any

from controller.model import kinds
from controller.model.desired import DesiredState
from controller.placement import Needs


def desired(servers: dict[str, dict[str, Any]], regions: tuple[str, ...] = ("eu-west", "us-east")) -> DesiredState:
    """Regions and servers validated by their model classes (placement reads nothing else)."""
    return DesiredState(
        regions={r: kinds.RegionSpec.model_validate({}) for r in regions},
        servers={n: kinds.ServerSpec.model_validate(s) for n, s in servers.items()},
    )


def needs(name: str, **over: Any) -> Needs:
    """A web subscription of customer ``mermoz`` in ``eu-west`` wanting PHP 8.2 / fpm."""
    base: dict[str, Any] = {
        "name": name, "customer": "mermoz", "region": "eu-west", "web": True, "php_version": "8.2",
        "php_handler": "fpm", "hard_quota": False, "ip_type": "shared",
    }
    base.update(over)
    return Needs(**base)
