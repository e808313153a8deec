"""Every setting tenantctl reads from the environment, in one place (kopf's
``configuration.py`` style: one dataclass per group, a docstring per attribute).

``Settings.from_env()`` reads ``os.environ`` once; the rest of the code gets values from
here, never from ``os.environ`` itself. Bad values are ``InputError``-free here: each
group checks its own values where they are used and names the variable in the error.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from controller import errors

T = TypeVar("T", int, float)


def _env(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


@dataclass(frozen=True)
class Core:
    state_dir: Path = Path(".state")
    """``TENANTCTL_STATE_DIR``: the state store, secrets, keys, caches (default ``./.state``)."""
    now: dt.datetime | None = None
    """``TENANTCTL_NOW`` (ISO-8601): a fixed controller clock, for tests and demos."""
    drivers_off: bool = False
    """``TENANTCTL_DRIVERS=none``: planning mode, every concern ``not provisioned``."""


@dataclass(frozen=True)
class Guard:
    max_delete: int = 5
    """``TENANTCTL_MAX_DELETE``: more deletions than this in one pass are held."""
    max_delete_percent: float = 10.0
    """``TENANTCTL_MAX_DELETE_PERCENT``: more than this share of the live subscriptions
    deleted in one pass is held (a single deletion never is)."""


@dataclass(frozen=True)
class Dns:
    ns_suffix: str = ""
    """``TENANTCTL_DNS_NS_SUFFIX``: zones get NS records ``ns-<server>.<suffix>``."""
    hostmaster: str = ""
    """``TENANTCTL_DNS_HOSTMASTER``: the SOA's responsible mailbox, as a domain."""


@dataclass(frozen=True)
class Settings:
    core: Core = field(default_factory=Core)
    guard: Guard = field(default_factory=Guard)
    dns: Dns = field(default_factory=Dns)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        now = None
        if raw := _env(env, "TENANTCTL_NOW"):
            try:
                t = dt.datetime.fromisoformat(raw)
            except ValueError as exc:
                raise errors.TenantctlError(f"tenantctl: TENANTCTL_NOW: expected an ISO-8601 time, got {raw!r}") from exc
            now = t if t.tzinfo else t.replace(tzinfo=dt.UTC)
        return cls(
            core=Core(
                state_dir=Path(_env(env, "TENANTCTL_STATE_DIR") or ".state"),
                now=now,
                drivers_off=_env(env, "TENANTCTL_DRIVERS").lower() == "none",
            ),
            guard=Guard(
                max_delete=_number(env, "TENANTCTL_MAX_DELETE", 5, int),
                max_delete_percent=_number(env, "TENANTCTL_MAX_DELETE_PERCENT", 10.0, float),
            ),
            dns=Dns(ns_suffix=_env(env, "TENANTCTL_DNS_NS_SUFFIX"), hostmaster=_env(env, "TENANTCTL_DNS_HOSTMASTER")),
        )


def _number(env: Mapping[str, str], name: str, default: T, kind: type[T]) -> T:
    raw = _env(env, name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = kind(-1)
    if value < 0:
        raise errors.TenantctlError(f"tenantctl: {name}: expected a non-negative {kind.__name__}, got {raw!r}")
    return value


def current() -> Settings:
    """The settings of this process (read from the environment on every call: tests
    and the CLI change it between commands)."""
    return Settings.from_env()
