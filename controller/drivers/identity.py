"""Which machine answers at a server's address: its identity marker (issue 7 point 3).

Bootstrap (the Ansible role) writes ``/etc/tenantctl/generation``: a random id made once
and never rewritten. A server replaced by a fresh machine, or wiped, answers with another
id or none, so the engine knows that what it applied there is gone, without asking every
concern. One SSH round trip per server, all servers at once.

The same round trip reads the Debian release the server runs (``/etc/os-release``):
one other than its document's ``os`` says is a server tenantctl must not write to
(PHP, MariaDB and PostgreSQL versions differ: the role installs what the release ships),
reported like an unreachable server with what to do. tenantctl never changes a server's
release in place: a database engine's major version changes by a move of the
subscription to a server of the newer release (a verified dump and restore, in the
maintenance window: ``reconcile.move``).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller import errors
from controller.drivers import naming, transport
from controller.drivers.context import Context, Server
from controller.model import kinds

MARKER = "/etc/tenantctl/generation"
#: where the web driver puts one vhost per tenant
VHOSTS = naming.NGINX_DIR
#: what ``generations`` reports for a server that answers but has no marker
MISSING = ""


@dataclass(frozen=True)
class Probed:
    """``generations``: server -> marker (``MISSING`` if absent); ``unreachable``:
    server -> why it could not be asked."""

    generations: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    #: server -> tenant vhosts found there (``status`` warns when the store is empty)
    tenants: dict[str, int] = field(default_factory=dict)


class Probe:
    """Reads the identity markers of servers over SSH."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._pool = transport.Pool(ctx)

    def _one(self, server: str) -> tuple[str, int]:
        script = (f"cat {MARKER} 2>/dev/null || true; echo; "
                  ". /etc/os-release 2>/dev/null; echo \"release=${VERSION_CODENAME:-}\"; "
                  f"ls {VHOSTS} 2>/dev/null | wc -l")
        done = self._pool.get(server).run(["sh", "-c", script], timeout=20.0)
        lines = done.text.splitlines()
        gen = lines[0].strip() if lines and not lines[0].startswith("release=") else MISSING
        count = int(lines[-1]) if len(lines) > 1 and lines[-1].strip().isdigit() else 0
        runs = next((ln.removeprefix("release=").strip() for ln in lines if ln.startswith("release=")), "")
        wrong = release_mismatch(self.ctx.servers[server], runs)
        if wrong is not None:
            raise errors.DriverError(wrong)
        return gen, count

    def probe(self, servers: Iterable[str]) -> Probed:
        names = sorted({s for s in servers if s in self.ctx.servers})
        out = Probed()
        if not names:
            return out
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            futures = {s: pool.submit(self._one, s) for s in names}
            for server, fut in futures.items():
                try:
                    out.generations[server], out.tenants[server] = fut.result()
                except errors.DriverError as exc:  # the transport names the server and its address
                    out.unreachable[server] = str(exc)
        return out

    def close(self) -> None:
        self._pool.close()


def release_mismatch(server: Server, runs: str) -> str | None:
    """Why ``server`` must not be written to when it answers that it runs Debian ``runs``
    (a codename; empty: unknown, not judged), else None. Pure."""
    if not runs or server.suite is None or runs == server.suite:
        return None
    os_ = next((k for k, r in kinds.RELEASES.items() if r.suite == runs), None)
    return (f"server {server.name} ({server.address}) runs Debian {runs}, but its document says "
            f"{server.suite}: nothing is written there (its PHP, MariaDB and PostgreSQL versions differ); "
            + (f"set `os: {os_}` if it was upgraded on purpose, " if os_ else f"Debian {runs} is not supported; ")
            + "tenantctl never changes a server's release in place: move its subscriptions to a server of the "
            "release you want (`tenantctl move`)")
